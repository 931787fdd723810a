#!/usr/bin/env node
// Loopback-only DNS responder for the benchmarks: every peer's resolver points here, so no
// SMTP server started by bench/run ever sends a query to the machine's resolver.
//
//   node bench/lib/dns-stub.mjs PORT [PIDFILE]
//
// - UDP 127.0.0.1:PORT only; answers loopback clients only.
// - PTR for 127.x.x.x and ::1 -> "localhost."; A for "localhost" -> 127.0.0.1;
//   everything else -> NXDOMAIN at once (no recursion, no upstream).
// - SIGTERM/SIGINT: prints the number of queries answered (by type) to stderr and exits.
import dgram from 'node:dgram';
import fs from 'node:fs';

const port = Number(process.argv[2] || 10053);
const pidfile = process.argv[3];
const counts = Object.create(null);

function read_name(buf, off) {
  const labels = [];
  for (let guard = 0; guard < 128; guard++) {
    const len = buf[off];
    if (len === undefined) throw new Error('short');
    if (len === 0) return { name: labels.join('.'), end: off + 1 };
    if ((len & 0xc0) !== 0) throw new Error('compressed name in a question');
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  throw new Error('too many labels');
}

function encode_name(name) {
  const parts = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])), Buffer.from([0])]);
}

function loopback_ptr(qname) {
  const n = qname.toLowerCase();
  return /^\d+\.\d+\.\d+\.127\.in-addr\.arpa$/.test(n) || n === '1' + '.0'.repeat(31) + '.ip6.arpa';
}

function rr(type, rdata) {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0); // name: pointer to the question
  head.writeUInt16BE(type, 2);
  head.writeUInt16BE(1, 4); // IN
  head.writeUInt32BE(3600, 6);
  head.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([head, rdata]);
}

const sock = dgram.createSocket('udp4');
sock.on('message', (msg, rinfo) => {
  if (!rinfo.address.startsWith('127.')) return;
  try {
    if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return;
    const id = msg.readUInt16BE(0);
    const flags = msg.readUInt16BE(2);
    const { name, end } = read_name(msg, 12);
    const qtype = msg.readUInt16BE(end);
    const qclass = msg.readUInt16BE(end + 2);
    let answer = null;
    if (qclass === 1 && qtype === 12 && loopback_ptr(name)) answer = rr(12, encode_name('localhost'));
    else if (qclass === 1 && qtype === 1 && name.toLowerCase() === 'localhost') answer = rr(1, Buffer.from([127, 0, 0, 1]));
    const hdr = Buffer.alloc(12);
    hdr.writeUInt16BE(id, 0);
    // QR, opcode and RD copied, AA, RA; rcode 0 or NXDOMAIN
    hdr.writeUInt16BE(0x8000 | (flags & 0x7800) | 0x0400 | (flags & 0x0100) | 0x0080 | (answer ? 0 : 3), 2);
    hdr.writeUInt16BE(1, 4);
    hdr.writeUInt16BE(answer ? 1 : 0, 6);
    const parts = [hdr, msg.subarray(12, end + 4)];
    if (answer) parts.push(answer);
    sock.send(Buffer.concat(parts), rinfo.port, rinfo.address);
    const key = qtype === 12 ? 'PTR' : qtype === 1 ? 'A' : qtype === 28 ? 'AAAA' : `type${qtype}`;
    counts[key] = (counts[key] ?? 0) + 1;
  } catch {
    /* malformed: ignored */
  }
});
sock.on('error', (e) => {
  process.stderr.write(`dns-stub: ${e.message}\n`);
  process.exit(1);
});
sock.bind(port, '127.0.0.1', () => {
  if (pidfile) fs.writeFileSync(pidfile, `${process.pid}\n`);
  process.stderr.write(`dns-stub: udp 127.0.0.1:${port} pid ${process.pid}\n`);
});
const stop = () => {
  process.stderr.write(`dns-stub: answered ${JSON.stringify(counts)}\n`);
  if (pidfile) fs.rmSync(pidfile, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// a stub left behind by a killed bench/run must not linger forever
setTimeout(stop, Number(process.env.DNS_STUB_MAX_SECONDS || 3600) * 1000).unref();
