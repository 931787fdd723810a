// reliability.md 2.3 PIP-07 (burst and backpressure) and PIP-08 (async hook reentrancy), over
// real TCP to `listen()` on 127.0.0.1. The server runs in this process, so its memory is this
// process's RSS.
import { mkdtempSync, rmSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { open_socket } from '../lib/daemon.js';
import { PLUGIN_DIR, REPO, listen_port, make_runtime } from '../lib/harness.js';
import { TestClient } from '../lib/session.js';

const FIXTURES = path.join(REPO, 't', 'fixtures', 'plugins');
const MiB = 1024 * 1024;
const cleanup: Array<() => void> = [];

afterAll(() => {
  for (const f of cleanup) f();
});

async function server(files: Record<string, string | string[]> = {}, on_listen?: (srv: net.Server) => void): Promise<number> {
  const queue = mkdtempSync(path.join(os.tmpdir(), 'qpts-queue-'));
  const { runtime } = await make_runtime({
    me: 'mx.local.test',
    plugin_dirs: [FIXTURES, PLUGIN_DIR],
    plugins: ['test_rcpt_local', 'test_queue'],
    test_queue_dir: queue,
    ...files,
  }, { config_revalidate_ms: 1000 });
  const { server: srv, port } = await listen_port(runtime, { no_rdns: true });
  on_listen?.(srv);
  cleanup.push(() => {
    srv.close();
    rmSync(queue, { recursive: true, force: true });
  });
  return port;
}

/** A raw client that also counts the lines it received since `nlines` was last cleared. */
class Raw extends TestClient<net.Socket> {
  nlines = 0;
  constructor(sock: net.Socket) {
    super(sock);
    sock.on('data', (d: Buffer) => (this.nlines += count(d.toString('latin1'), '\n')));
  }
  static async connect(port: number): Promise<Raw> {
    return new Raw(await open_socket(port));
  }
  /** The CRLF-terminated lines received (and not cleared). */
  lines(): string[] {
    return this.buf.split('\r\n').slice(0, -1);
  }
}

const count = (s: string, needle: string) => s.split(needle).length - 1;

/** PIP-07: 100000 NOOPs in one write, not read for 2 s; returns the reply lines and peak RSS growth. */
async function burst(port: number): Promise<{ lines: string[]; growth: number; client: Raw }> {
  const c = await Raw.connect(port);
  await c.until((t) => t.includes('\r\n'));
  c.send('EHLO client.example.test\r\n');
  await c.until((t) => /\r\n250 [^\r\n]*\r\n$/.test(t));
  c.buf = '';
  c.nlines = 0;
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 25);
  try {
    c.stream.pause(); // do not read: the kernel buffers fill, then the server must stop reading
    c.send('NOOP\r\n'.repeat(100000));
    await new Promise((r) => setTimeout(r, 2000));
    c.stream.resume();
    await c.until((t) => c.nlines >= 100000 || t.endsWith('closing connection\r\n'), 30000);
    if (!c.closed) {
      c.send('QUIT\r\n');
      await c.until((t) => t.endsWith('\r\n221 mx.local.test closing connection. Have a wonderful day.\r\n'), 10000);
    }
  } finally {
    clearInterval(sample);
  }
  peak = Math.max(peak, process.memoryUsage().rss);
  return { lines: c.lines(), growth: peak - baseline, client: c };
}

describe('2.3 PIP-07 burst and backpressure', () => {
  it('default limits: NOOPs answered in order until the junk limit, then 421 4.7.0 and close; RSS bounded', async () => {
    const port = await server({ loglevel: '4' });
    const { lines, growth, client } = await burst(port);
    // max_junk_commands 100: the 101st NOOP is still answered, then the session ends
    expect(lines.slice(0, 101)).toEqual(Array(101).fill('250 OK'));
    expect(lines.slice(101)).toEqual(['421 4.7.0 Too many commands without mail, closing connection']);
    await client.until(() => false, 6000).catch(() => undefined);
    expect(client.closed).toBe(true);
    expect(growth).toBeLessThan(64 * MiB);
  });

  it('no junk limit: all 100000 replies arrive in order, RSS bounded', async () => {
    const port = await server({ loglevel: '4', max_junk_commands: '0' });
    const { lines, growth } = await burst(port);
    expect(lines).toHaveLength(100001);
    expect(lines.slice(0, 100000).every((l) => l === '250 OK')).toBe(true);
    expect(lines[100000]).toBe('221 mx.local.test closing connection. Have a wonderful day.');
    expect(growth).toBeLessThan(64 * MiB);
  });
});

describe('2.3 PIP-07 backpressure, proven', () => {
  // 100000 replies (800 kB) fit into loopback socket buffers, so the test above never blocks the
  // server. Ten times as many do: the server must then stop reading (its socket's bytesRead stays
  // below what the client sent) and keep at most one high-water mark of replies in memory.
  it('1000000 NOOPs unread for 2 s: the server stops reading, buffers <= 64 KiB, then answers all in order', async () => {
    const N = 1_000_000;
    const sockets: net.Socket[] = [];
    const port = await server({ loglevel: '4', max_junk_commands: '0' }, (srv) => srv.on('connection', (s) => sockets.push(s)));
    const c = await Raw.connect(port);
    await c.until((t) => t.includes('\r\n'));
    c.buf = '';
    c.nlines = 0;
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    let max_buffered = 0;
    const sample = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
      max_buffered = Math.max(max_buffered, sockets[0]?.writableLength ?? 0);
    }, 10);
    try {
      c.stream.pause();
      c.send('NOOP\r\n'.repeat(N));
      await new Promise((r) => setTimeout(r, 2000));
      const read_while_blocked = sockets[0]!.bytesRead;
      expect(read_while_blocked).toBeLessThan(N * 6);
      c.stream.resume();
      await c.until(() => c.nlines >= N, 110000);
    } finally {
      clearInterval(sample);
    }
    // every reply is "250 OK", in order, nothing else
    expect(c.buf.length).toBe(N * 8);
    expect(count(c.buf, '250 OK\r\n')).toBe(N);
    expect(max_buffered).toBeLessThanOrEqual(64 * 1024);
    expect(peak - baseline).toBeLessThan(128 * MiB);
    c.buf = '';
    c.send('QUIT\r\n');
    await c.until((t) => t.startsWith('221 '));
  }, 120000); // a million commands take a while on a busy 2-core machine
});

describe('2.3 PIP-08 async-hook reentrancy', () => {
  it('a 300 ms delay plugin at rcpt: pipelined RCPT, RCPT, NOOP answered 250, 250, 250 in order', async () => {
    const port = await server({ plugins: ['test_delay rcpt 300', 'test_rcpt_local', 'test_queue'] });
    const c = await Raw.connect(port);
    await c.until((t) => t.includes('\r\n'));
    c.send('EHLO client.example.test\r\n');
    await c.until((t) => /\r\n250 [^\r\n]*\r\n$/.test(t));
    c.send('MAIL FROM:<s@example.test>\r\n');
    await c.until((t) => t.endsWith('sender OK - how exciting to get mail from you!\r\n'));
    c.buf = '';
    const t0 = Date.now();
    c.send('RCPT TO:<r@local.test>\r\nRCPT TO:<r2@local.test>\r\nNOOP\r\n');
    await c.until((t) => count(t, '\r\n') >= 3, 5000);
    const took = Date.now() - t0;
    expect(c.lines()).toEqual(['250 <r@local.test>, recipient ok', '250 <r2@local.test>, recipient ok', '250 OK']);
    expect(took).toBeGreaterThanOrEqual(550);
    expect(took).toBeLessThan(2000);
    c.send('QUIT\r\n');
    await c.until((t) => t.includes('221 '));
  });

  it('concurrent sessions with the delay plugin keep their own order', async () => {
    const port = await server({ plugins: ['test_delay rcpt 300', 'test_rcpt_local', 'test_queue'] });
    const run = async (n: number) => {
      const c = await Raw.connect(port);
      await c.until((t) => t.includes('\r\n'));
      c.buf = '';
      c.send('EHLO c.test\r\n');
      await c.until((t) => /(^|\r\n)250 [^\r\n]*\r\n$/.test(t));
      c.buf = '';
      c.send(`MAIL FROM:<s${n}@example.test>\r\nRCPT TO:<a${n}@local.test>\r\nRCPT TO:<x${n}@elsewhere.test>\r\nRCPT TO:<b${n}@local.test>\r\nNOOP\r\nQUIT\r\n`);
      await c.until((t) => t.includes('221 '), 5000);
      return c.lines();
    };
    const all = await Promise.all([1, 2, 3, 4, 5].map(run));
    all.forEach((lines, i) => {
      const n = i + 1;
      expect(lines).toEqual([
        `250 <s${n}@example.test>, sender OK - how exciting to get mail from you!`,
        `250 <a${n}@local.test>, recipient ok`,
        '550 relaying denied',
        `250 <b${n}@local.test>, recipient ok`,
        '250 OK',
        '221 mx.local.test closing connection. Have a wonderful day.',
      ]);
    });
  });
});
