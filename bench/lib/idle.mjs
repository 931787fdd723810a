#!/usr/bin/env node
// Holds N idle SMTP connections (each greeted with 220, then silent) for bench/run's memory
// test, and times fresh greetings while they are held. Driven by lines on stdin:
//
//   node bench/lib/idle.mjs --port P --n 10000 [--source 127.0.0.1,127.0.0.2] [--parallel 300]
//                           [--max-seconds 180]
//   -> {"opened":N,"failed":F,"ms":T,...}       once all are open (or have failed)
//   <- probe  -> {"probe_ms":[...]}              5 fresh connections, one after another, ms to 220
//   <- close  -> {"still_open":K}                closes everything and exits
//
// Exits by itself after --max-seconds whatever happens.
import net from 'node:net';
import readline from 'node:readline';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    port: { type: 'string' },
    n: { type: 'string', default: '10000' },
    source: { type: 'string', default: '127.0.0.1' },
    parallel: { type: 'string', default: '300' },
    'max-seconds': { type: 'string', default: '180' },
    timeout: { type: 'string', default: '30' },
  },
});
const port = Number(o.port);
const n = Math.min(Number(o.n), 60000);
const sources = o.source.split(',');
if (!port || !sources.every((s) => /^127\./.test(s))) throw new Error('usage: idle.mjs --port P --n N (loopback only)');
const timeout_ms = Number(o.timeout) * 1000;

setTimeout(() => {
  process.stderr.write('idle.mjs: --max-seconds reached, exiting\n');
  for (const s of held) s.destroy();
  process.exit(3);
}, Number(o['max-seconds']) * 1000).unref();

const held = new Set();
let closed_by_server = 0;
const fail_kinds = Object.create(null);

function open_one(i) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: sources[i % sources.length] });
    let buf = '';
    let done = false;
    const finish = (ok, why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (ok) {
        held.add(s);
        s.on('close', () => {
          if (held.delete(s)) closed_by_server++;
        });
      } else {
        fail_kinds[why] = (fail_kinds[why] ?? 0) + 1;
        s.destroy();
      }
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false, 'timeout'), timeout_ms);
    s.setEncoding('latin1');
    s.on('data', (d) => {
      if (done) return;
      buf += d;
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        if (buf.startsWith('220')) finish(true);
        else finish(false, `reply ${buf.slice(0, 3)}`);
      }
    });
    s.on('error', (e) => finish(false, e.code || e.message));
    s.on('close', () => finish(false, 'closed'));
  });
}

function probe_one() {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(null);
    }, 10000);
    s.setEncoding('latin1');
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\r\n')) {
        clearTimeout(timer);
        const ms = performance.now() - t0;
        s.end('QUIT\r\n');
        setTimeout(() => s.destroy(), 500).unref();
        resolve(buf.startsWith('220') ? Number(ms.toFixed(2)) : null);
      }
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}

const t0 = performance.now();
let next = 0;
let failed = 0;
async function lane() {
  while (next < n) {
    const i = next++;
    if (!(await open_one(i))) failed++;
  }
}
await Promise.all(Array.from({ length: Math.min(Number(o.parallel), n) }, lane));
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
say({ opened: held.size, failed, fail_kinds, ms: Math.round(performance.now() - t0) });

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', async (line) => {
  if (line === 'probe') {
    const probe_ms = [];
    for (let i = 0; i < 5; i++) probe_ms.push(await probe_one());
    say({ probe_ms, held: held.size, closed_by_server });
  } else if (line === 'close') {
    const still_open = held.size;
    for (const s of held) {
      held.delete(s);
      s.destroy();
    }
    say({ still_open, closed_by_server });
    setTimeout(() => process.exit(0), 200);
  }
});
rl.on('close', () => process.exit(0));
