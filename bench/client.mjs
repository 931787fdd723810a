#!/usr/bin/env node
// bench/client.mjs: a small SMTP load generator on raw net.Socket, pipelining off (one command,
// then its whole reply, then the next command). Bounded in count and time; prints one JSON
// object on stdout.
//
//   node bench/client.mjs --port 2525 [options]
//
//   --host H            server address (127.0.0.1); only loopback addresses are accepted
//   --mode conn|reuse   conn: a new connection per message (connect, EHLO, MAIL, RCPT, DATA, QUIT);
//                       reuse: each client keeps its connection and sends message after message
//   --concurrency N     clients at once (20)
//   --warmup S          seconds of load before measuring (1)
//   --duration S        seconds measured (3)
//   --max-messages N    stop measuring after N messages (100000)
//   --size B            body bytes (1024)
//   --from A --rcpt A   envelope (bench@example.org, user@example.test)
//   --source A,B,...    local addresses to connect from, in turn (127.0.0.1); 127.0.0.x spreads
//                       the ephemeral ports of many short connections
//   --timeout S         a reply slower than this ends the connection as an error (10)
//   --grace S           after the window, in-flight messages get this long to finish (5)
//
// Latency of a message: conn mode, from connect() to the 250 after the final dot; reuse mode,
// from MAIL FROM to that 250. The rate is the messages whose 250 came inside the measured
// window / the window's length (the warm-up fills the pipeline first); latencies are those
// messages' own.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    mode: { type: 'string', default: 'conn' },
    concurrency: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '1' },
    duration: { type: 'string', default: '3' },
    'max-messages': { type: 'string', default: '100000' },
    size: { type: 'string', default: '1024' },
    from: { type: 'string', default: 'bench@example.org' },
    rcpt: { type: 'string', default: 'user@example.test' },
    source: { type: 'string', default: '127.0.0.1' },
    timeout: { type: 'string', default: '10' },
    grace: { type: 'string', default: '5' },
    ehlo: { type: 'string', default: 'client.bench.test' },
  },
});

const host = o.host;
const port = Number(o.port);
const mode = o.mode;
const concurrency = Math.max(1, Number(o.concurrency));
const warmup_ms = Number(o.warmup) * 1000;
const duration_ms = Number(o.duration) * 1000;
const max_messages = Number(o['max-messages']);
const timeout_ms = Number(o.timeout) * 1000;
const grace_ms = Number(o.grace) * 1000;
const sources = o.source.split(',').filter(Boolean);
if (!port || !['conn', 'reuse'].includes(mode)) throw new Error('usage: client.mjs --port P [--mode conn|reuse] ...');
if (!/^127\.|^::1$|^localhost$/.test(host) || !sources.every((s) => /^127\./.test(s))) throw new Error('loopback addresses only');
if (!(duration_ms > 0 && duration_ms <= 600000 && warmup_ms <= 600000 && max_messages > 0)) throw new Error('bad bounds');

// One message, built once: a small header and `size` bytes of body in 76-character lines.
function build_message(size) {
  const head =
    `From: <${o.from}>\r\nTo: <${o.rcpt}>\r\nSubject: bench\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Message-ID: <bench.${process.pid}@client.bench.test>\r\n\r\n`;
  let body = '';
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd';
  while (body.length < size) body += line.slice(0, Math.min(76, size - body.length)) + '\r\n';
  return Buffer.from(head + body + '.\r\n', 'latin1');
}
const MESSAGE = build_message(Number(o.size));
const MAIL = `MAIL FROM:<${o.from}>\r\n`;
const RCPT = `RCPT TO:<${o.rcpt}>\r\n`;
const EHLO = `EHLO ${o.ehlo}\r\n`;

const t_begin = performance.now();
const t_start = t_begin + warmup_ms; // measured window
let t_end = t_start + duration_ms;
let stopping = false; // no new messages
let counted = 0;
let attempted = 0;
const latencies = new Float64Array(Math.min(max_messages, 2_000_000));
let nlat = 0;
let connections = 0;
const errors = Object.create(null);
const samples = [];

function error(kind, detail) {
  errors[kind] = (errors[kind] ?? 0) + 1;
  if (samples.length < 5) samples.push(`${kind}: ${detail}`);
}

class SmtpError extends Error {
  constructor(kind, detail) {
    super(detail);
    this.kind = kind;
  }
}

let src_i = 0;
const all_sockets = new Set();

/** A connection that hands out whole replies in order. */
class Conn {
  constructor() {
    this.buf = '';
    this.lines = [];
    this.replies = [];
    this.waiter = null;
    this.failure = null;
    const localAddress = sources[src_i++ % sources.length];
    this.socket = net.connect({ host, port, localAddress, noDelay: true });
    connections++;
    all_sockets.add(this.socket);
    this.socket.setEncoding('latin1');
    this.socket.setTimeout(timeout_ms, () => this.fail(new SmtpError('timeout', `no reply within ${timeout_ms} ms`)));
    this.socket.on('data', (d) => this.on_data(d));
    this.socket.on('error', (e) => this.fail(new SmtpError('socket', e.code || e.message)));
    this.socket.on('close', () => {
      all_sockets.delete(this.socket);
      this.fail(new SmtpError('closed', 'connection closed by the server'));
    });
  }
  on_data(d) {
    this.buf += d;
    let i;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.lines.push(line);
      if (line[3] !== '-') {
        const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
        this.lines = [];
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = null;
          w.resolve(reply);
        } else this.replies.push(reply);
      }
    }
  }
  fail(err) {
    if (this.failure) return;
    this.failure = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
    this.socket.destroy();
  }
  reply() {
    if (this.replies.length) return Promise.resolve(this.replies.shift());
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }
  async expect(code, what) {
    const r = await this.reply();
    if (r.code !== code) throw new SmtpError(`reply_${what}_${r.code}`, r.text.slice(0, 200));
    return r;
  }
  async command(line, code, what) {
    this.socket.write(line);
    return this.expect(code, what);
  }
  async greet() {
    await this.expect(220, 'greeting');
    await this.command(EHLO, 250, 'ehlo');
  }
  /** MAIL, RCPT, DATA, body; resolves at the 250. */
  async message() {
    await this.command(MAIL, 250, 'mail');
    await this.command(RCPT, 250, 'rcpt');
    await this.command('DATA\r\n', 354, 'data');
    this.socket.write(MESSAGE);
    await this.expect(250, 'dot');
  }
  async quit() {
    try {
      this.socket.write('QUIT\r\n');
      await this.expect(221, 'quit');
    } catch {
      /* the message is already done; a missing 221 is not counted */
    }
    this.failure ??= new SmtpError('done', 'done');
    this.socket.end();
    this.socket.destroy();
  }
}

let completed = 0; // every 250 after the dot, warm-up and drain included (for CPU per message)
function record(t0, t1) {
  completed++;
  if (t1 >= t_start && t1 <= t_end) {
    counted++;
    if (nlat < latencies.length) latencies[nlat++] = t1 - t0;
    if (counted >= max_messages && !stopping) {
      t_end = t1;
      stopping = true;
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function client_conn_mode() {
  while (!stopping) {
    const t0 = performance.now();
    const c = new Conn();
    attempted++;
    try {
      await c.greet();
      await c.message();
      record(t0, performance.now());
      await c.quit();
    } catch (e) {
      await failed(c, e);
    }
  }
}

/** A connection broke: count the error, drop the connection, pause before the next one. */
async function failed(c, e) {
  error(e.kind || 'error', e.message);
  c.fail(e);
  await sleep(20);
}

async function client_reuse_mode() {
  while (!stopping) {
    const c = new Conn();
    try {
      await c.greet();
      while (!stopping) {
        const t0 = performance.now();
        attempted++;
        await c.message();
        record(t0, performance.now());
      }
      await c.quit();
    } catch (e) {
      await failed(c, e);
    }
  }
}

const end_timer = setInterval(() => {
  if (performance.now() >= t_end) stopping = true;
}, 10);

const hard_stop = setTimeout(
  () => {
    error('grace_exceeded', `${all_sockets.size} connections still open`);
    for (const s of all_sockets) s.destroy();
  },
  warmup_ms + duration_ms + grace_ms,
);

const run = mode === 'conn' ? client_conn_mode : client_reuse_mode;
await Promise.all(Array.from({ length: concurrency }, () => run()));
clearInterval(end_timer);
clearTimeout(hard_stop);

const window_s = (Math.min(t_end, performance.now()) - t_start) / 1000;
const lat = Array.from(latencies.subarray(0, nlat)).sort((a, b) => a - b);
const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : null);
const round = (x, d = 3) => (x === null ? null : Number(x.toFixed(d)));
const out = {
  mode,
  concurrency,
  messages: counted,
  window_s: round(window_s),
  msgs_per_s: round(window_s > 0 ? counted / window_s : 0, 1),
  latency_ms: { p50: round(pct(50)), p90: round(pct(90)), p99: round(pct(99)), max: round(lat.length ? lat[lat.length - 1] : null) },
  attempted,
  completed,
  connections,
  errors,
  error_samples: samples,
  client_cpu_s: round((process.cpuUsage().user + process.cpuUsage().system) / 1e6),
};
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
