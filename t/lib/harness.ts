// Test harness in the spirit of qpsmtpd's Test::Qpsmtpd: a Runtime on a temp config dir,
// captured log lines, and mock hooks that run before every loaded plugin.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Plugin } from '../../lib/plugin.js';
import { Runtime, type RuntimeOptions } from '../../lib/runtime.js';

export const REPO = path.resolve(import.meta.dirname, '..', '..');
export const PLUGIN_DIR = path.join(REPO, 'plugins');

export interface TestRuntime {
  runtime: Runtime;
  dir: string;
  logged: string[];
}

/** Writes `files` (name -> content; arrays become lines) into a fresh config dir. */
export function write_config(files: Record<string, string | string[]>, dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-cfg-'))): string {
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
  const spool = mkdtempSync(path.join(os.tmpdir(), 'qpts-spool-'));
  const dir = write_config({ spool_dir: spool, plugin_dirs: PLUGIN_DIR, ...files });
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
