// HAProxy's PROXY protocol, versions 1 (text) and 2 (binary), as received by a listener marked
// `/proxy`: the header is the first thing on the connection, before our greeting, and names the
// real client. Only the header's bytes are consumed; anything the client sent behind it is
// handed back (`rest`), so it stays the first input of the SMTP session.
import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { normalize_ip } from '../connection.js';

/** What a valid header says. `LOCAL`/`UNKNOWN` headers (health checks) carry no addresses. */
export interface ProxyHeader {
  version: 1 | 2;
  /** The real client and the address it connected to (on the proxy); absent for LOCAL/UNKNOWN. */
  src_ip?: string;
  src_port?: number;
  dst_ip?: string;
  dst_port?: number;
}

export type ProxyRead = { ok: true; header: ProxyHeader; rest: Buffer } | { ok: false; error: string; timeout?: boolean };

/** The 12-byte signature that opens a v2 header. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** A v1 line is at most 107 bytes including CRLF. */
const V1_MAX = 107;
/** v2: 16 fixed bytes, then at most 65535 of addresses and TLVs; we accept up to 4 KiB in all. */
const V2_MAX = 4096;

type Parse = { need: true } | { error: string } | { header: ProxyHeader; length: number };

function port_of(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parse_v1(buf: Buffer): Parse {
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { error: 'PROXY v1 header too long' } : { need: true };
  if (end + 2 > V1_MAX) return { error: 'PROXY v1 header too long' };
  const line = buf.subarray(0, end).toString('latin1');
  const f = line.split(' ');
  if (f[0] !== 'PROXY') return { error: 'not a PROXY header' };
  if (f[1] === 'UNKNOWN') return { header: { version: 1 }, length: end + 2 };
  if (f.length !== 6 || (f[1] !== 'TCP4' && f[1] !== 'TCP6')) return { error: 'malformed PROXY v1 header' };
  const [, proto, src, dst, sport, dport] = f as [string, string, string, string, string, string];
  const family = proto === 'TCP4' ? 4 : 6;
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return { error: 'malformed address in PROXY v1 header' };
  const src_port = port_of(sport);
  const dst_port = port_of(dport);
  if (src_port === undefined || dst_port === undefined) return { error: 'malformed port in PROXY v1 header' };
  return { header: { version: 1, src_ip: normalize_ip(src), src_port, dst_ip: normalize_ip(dst), dst_port }, length: end + 2 };
}

function ipv6_text(b: Buffer): string {
  return normalize_ip(ipaddr.fromByteArray([...b]).toString());
}

function parse_v2(buf: Buffer): Parse {
  if (buf.length < 16) return { need: true };
  const ver_cmd = buf[12]!;
  if (ver_cmd >> 4 !== 2) return { error: 'unsupported PROXY v2 version' };
  const cmd = ver_cmd & 0x0f;
  const fam = buf[13]!;
  const len = buf.readUInt16BE(14);
  if (16 + len > V2_MAX) return { error: 'PROXY v2 header too long' };
  if (buf.length < 16 + len) return { need: true };
  const body = buf.subarray(16, 16 + len);
  if (cmd === 0x0) return { header: { version: 2 }, length: 16 + len }; // LOCAL: the proxy itself
  if (cmd !== 0x1) return { error: 'unknown PROXY v2 command' };
  const family = fam >> 4;
  const transport = fam & 0x0f;
  if (family === 0 || transport !== 1) return { header: { version: 2 }, length: 16 + len }; // UNSPEC or not TCP: no addresses
  if (family === 1) {
    if (body.length < 12) return { error: 'short PROXY v2 address block' };
    const ip = (o: number) => `${body[o]}.${body[o + 1]}.${body[o + 2]}.${body[o + 3]}`;
    return {
      header: { version: 2, src_ip: ip(0), dst_ip: ip(4), src_port: body.readUInt16BE(8), dst_port: body.readUInt16BE(10) },
      length: 16 + len,
    };
  }
  if (family === 2) {
    if (body.length < 36) return { error: 'short PROXY v2 address block' };
    return {
      header: {
        version: 2,
        src_ip: ipv6_text(body.subarray(0, 16)),
        dst_ip: ipv6_text(body.subarray(16, 32)),
        src_port: body.readUInt16BE(32),
        dst_port: body.readUInt16BE(34),
      },
      length: 16 + len,
    };
  }
  return { error: 'unsupported PROXY v2 address family' };
}

/** Parses the start of a connection; `{need}` while more bytes are needed. */
export function parse_proxy_header(buf: Buffer): Parse {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return n < V2_SIGNATURE.length ? { need: true } : parse_v2(buf);
  const m = Math.min(buf.length, V1_PREFIX.length);
  if (buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m))) return m < V1_PREFIX.length ? { need: true } : parse_v1(buf);
  return { error: 'no PROXY header' };
}

/**
 * Reads a PROXY header from a fresh (paused) socket within `timeout_ms`. On success the socket is
 * paused again with its handle no longer reading, so it can be handed to another process with
 * nothing lost: bytes read past the header come back as `rest`.
 */
export function read_proxy_header(socket: net.Socket, timeout_ms: number): Promise<ProxyRead> {
  return new Promise((resolve) => {
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (r: ProxyRead) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', on_data);
      socket.off('end', on_end);
      socket.off('close', on_end);
      socket.pause();
      stop_reading(socket);
      resolve(r);
    };
    const on_data = (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      const p = parse_proxy_header(buf);
      if ('need' in p) return;
      if ('error' in p) return finish({ ok: false, error: p.error });
      finish({ ok: true, header: p.header, rest: Buffer.from(buf.subarray(p.length)) });
    };
    const on_end = () => finish({ ok: false, error: 'connection closed before the PROXY header' });
    const timer = setTimeout(() => finish({ ok: false, error: `no PROXY header within ${timeout_ms / 1000} s`, timeout: true }), timeout_ms);
    socket.on('data', on_data);
    socket.once('end', on_end);
    socket.once('close', on_end);
    socket.resume();
  });
}

/**
 * Stops the kernel-to-JS reading of a paused socket (pause() alone lets libuv keep filling the
 * stream's buffer); a later resume() starts it again.
 */
function stop_reading(socket: net.Socket): void {
  const handle = (socket as unknown as { _handle?: { reading?: boolean; readStop?: () => number } })._handle;
  if (handle?.reading && typeof handle.readStop === 'function') {
    handle.reading = false;
    handle.readStop();
  }
}

/** A v1 header line (tests and tools). */
export function proxy_v1(src_ip: string, dst_ip: string, src_port: number, dst_port: number): string {
  return `PROXY ${net.isIPv6(src_ip) ? 'TCP6' : 'TCP4'} ${src_ip} ${dst_ip} ${src_port} ${dst_port}\r\n`;
}

/** A v2 PROXY (or LOCAL, without addresses) header, optionally with TLV bytes (tests and tools). */
export function proxy_v2(addr?: { src_ip: string; dst_ip: string; src_port: number; dst_port: number }, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  if (!addr) {
    const h = Buffer.alloc(16);
    V2_SIGNATURE.copy(h);
    h[12] = 0x20;
    h[13] = 0x00;
    h.writeUInt16BE(tlvs.length, 14);
    return Buffer.concat([h, tlvs]);
  }
  const v6 = net.isIPv6(addr.src_ip);
  const ip_bytes = (ip: string): Buffer => Buffer.from(ipaddr.parse(ip).toByteArray());
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(addr.src_port, 0);
  ports.writeUInt16BE(addr.dst_port, 2);
  const body = Buffer.concat([ip_bytes(addr.src_ip), ip_bytes(addr.dst_ip), ports, tlvs]);
  const h = Buffer.alloc(16);
  V2_SIGNATURE.copy(h);
  h[12] = 0x21;
  h[13] = v6 ? 0x21 : 0x11;
  h.writeUInt16BE(body.length, 14);
  return Buffer.concat([h, body]);
}
