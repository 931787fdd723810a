// Test harness in the spirit of qpsmtpd's Test::Qpsmtpd: a Runtime on a temp config dir,
// captured log lines, mock hooks that run before every loaded plugin, a listener on a random
// port, and captured stderr.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { vi } from 'vitest';
import { Plugin } from '../../lib/plugin.js';
import { Runtime, type RuntimeOptions } from '../../lib/runtime.js';
import { listen, type ListenOptions } from '../../lib/server/serve.js';

export const REPO = path.resolve(import.meta.dirname, '..', '..');
export const PLUGIN_DIR = path.join(REPO, 'plugins');

export interface TestRuntime {
  runtime: Runtime;
  dir: string;
  logged: string[];
}

/** A fresh directory under the system temp dir. */
export function tmp_dir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Writes `files` (name -> content; arrays become lines) into a fresh config dir. */
export function write_config(files: Record<string, string | string[]>, dir = tmp_dir('qpts-cfg-')): string {
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Array.isArray(content) ? content.join('\n') + '\n' : content);
  }
  return dir;
}

/** A runtime whose config comes only from `files`; plugins are loaded when `load` is set. */
export async function make_runtime(
  files: Record<string, string | string[]> = {},
  opts: RuntimeOptions & { load?: boolean } = {},
): Promise<TestRuntime> {
  const spool = tmp_dir('qpts-spool-');
  // dns_servers: a loopback port where nothing listens, so no test ever asks the machine's
  // resolver; tests that need answers start their own DNS server and override it
  const dir = write_config({ spool_dir: spool, plugin_dirs: PLUGIN_DIR, dns_servers: '127.0.0.1:9', ...files });
  const logged: string[] = [];
  const runtime = new Runtime({
    config_dir: dir,
    package_config_dir: null,
    env: {},
    log_writer: (line) => logged.push(line),
    config_revalidate_ms: 0,
    ...opts,
  });
  if (opts.load !== false) await runtime.load();
  return { runtime, dir, logged };
}

/** `listen()` on a random port of 127.0.0.1 (unless `opts` says otherwise): the server and its port. */
export async function listen_port(runtime: Runtime, opts: Partial<ListenOptions> = {}): Promise<{ server: net.Server; port: number }> {
  const server = await listen(runtime, { port: 0, ...opts });
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** The servers and client sockets a test opened, for close_all() after it. */
export class Opened {
  readonly servers: net.Server[] = [];
  readonly sockets: Duplex[] = [];
  /**
   * Destroys the sockets last first (TLS layers before the sockets under them: node 20 can crash
   * in the client's TLSWrap when the raw socket goes first while the server is still talking),
   * then closes the servers and waits for them.
   */
  async close_all(): Promise<void> {
    for (const s of this.sockets.splice(0).reverse()) s.destroy();
    await Promise.all(this.servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  }
}

/** The lines this process writes to stderr from now on (until vi.restoreAllMocks()) that `keep` accepts. */
export function stderr_lines(keep: (line: string) => boolean = (l) => l !== ''): string[] {
  const out: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: unknown) => {
    for (const l of String(chunk).split('\n')) if (keep(l)) out.push(l);
    return true;
  }) as typeof process.stderr.write);
  return out;
}

class MockHook extends Plugin {}

/** Prepends a pseudo plugin `___MockHook___` to `hook` (Test::Qpsmtpd::mock_hook). */
export function mock_hook(runtime: Runtime, hook: string, fn: (...args: any[]) => unknown, name = '___MockHook___'): Plugin {
  const p = new MockHook();
  p._plugin_name = name;
  p._qp = runtime.server_qp;
  runtime.hooks.register(hook, { plugin: p, method: fn, name }, true);
  return p;
}

export function unmock_hook(runtime: Runtime, hook: string, name = '___MockHook___'): void {
  runtime.hooks.unregister(hook, name);
}
