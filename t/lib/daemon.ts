// Runs the real daemon (bin/qpsmtpd-ts from dist/) as a child process for end-to-end tests, and
// raw TCP clients for any listener.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { REPO, tmp_dir, write_config } from './harness.js';
import { TestClient } from './session.js';

export const BIN = path.join(REPO, 'bin', 'qpsmtpd-ts');
const DAEMON_FIXTURES = path.join(REPO, 't', 'fixtures', 'daemon');
export const BUILT_PLUGINS = path.join(REPO, 'dist', 'plugins');

/** A config dir for the daemon: the fixture plugins, accept_all, a maildir queue, DNS that fails fast; `files` on top. */
export function daemon_config(files: Record<string, string | string[]> = {}): { dir: string; maildir: string } {
  const maildir = tmp_dir('qpts-md-');
  const dir = write_config({
    me: 'mx.local.test',
    plugin_dirs: [DAEMON_FIXTURES, BUILT_PLUGINS],
    plugins: ['accept_all', `queue/maildir ${maildir}`],
    spool_dir: tmp_dir('qpts-spool-'),
    loglevel: '2',
    dns_servers: '127.0.0.1:9', // nothing listens: lookups fail fast, never the host's resolver
    ...files,
  });
  return { dir, maildir };
}

export interface Daemon {
  proc: ChildProcess;
  port: number;
  pid: number;
  output: () => string;
  exit: Promise<number | null>;
  workers(): number[];
  stop(): Promise<number | null>;
}

/** Starts `qpsmtpd-ts start` with `args`; resolves once it listens. */
export async function start_daemon(args: string[], env: Record<string, string> = {}): Promise<Daemon> {
  const proc = spawn(process.execPath, [BIN, 'start', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start:\n${out}`)), 20000);
    const check = () => {
      const m = /listening on [^\s]+:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stderr!.on('data', check);
    proc.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`daemon exited:\n${out}`));
    });
  });
  const d: Daemon = {
    proc,
    port,
    pid: proc.pid!,
    output: () => out,
    exit,
    workers: () => children_of(proc.pid!),
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exit;
    },
  };
  await wait_for(() => d.workers().length > 0, 15000, 'workers');
  return d;
}

/** Kills every daemon in `list` (SIGKILL) and waits for each to exit; empties the list. */
export async function kill_all(list: Daemon[]): Promise<void> {
  for (const d of list.splice(0)) {
    d.proc.kill('SIGKILL');
    await d.exit;
  }
}

export function children_of(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function wait_for(cond: () => boolean, timeout_ms: number, what: string): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Target {
  /** Where to connect (another loopback address); 127.0.0.1 by default. */
  host?: string;
  /** The source address (127.0.0.x). */
  local?: string;
}

/** A TCP connection to `port`, Nagle off; its errors are ignored. */
export async function open_socket(port: number, { host = '127.0.0.1', local }: Target = {}): Promise<net.Socket> {
  const socket = net.connect({ host, port, ...(local ? { localAddress: local } : {}) });
  socket.setNoDelay(true);
  await once(socket, 'connect');
  socket.on('error', () => {});
  return socket;
}

/** A raw SMTP client over TCP. */
export async function connect(port: number, target: Target = {}): Promise<TestClient<net.Socket>> {
  return new TestClient(await open_socket(port, target));
}

/** Runs the CLI to completion. */
export function run_cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => resolve({ code, out }));
  });
}
