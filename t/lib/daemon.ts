// Runs the real daemon (bin/qpsmtpd-ts from dist/) as a child process for end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { REPO } from './harness.js';
import { TestClient } from './session.js';

export const BIN = path.join(REPO, 'bin', 'qpsmtpd-ts');

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

/** A raw TCP client, optionally from a chosen 127.0.0.x source address. */
export async function connect(port: number, local?: string): Promise<TestClient> {
  const socket = net.connect({ host: '127.0.0.1', port, ...(local ? { localAddress: local } : {}) });
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  return new TestClient(socket);
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
