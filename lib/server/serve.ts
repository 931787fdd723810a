// Turning an accepted socket into a session: connection facts (addresses, rDNS), then the
// SMTP conversation. Used by the listener and by pool workers that receive sockets.
import net from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { LOGDEBUG, LOGINFO } from '../constants.js';
import { Connection, normalize_ip } from '../connection.js';
import { Qpsmtpd } from '../qpsmtpd.js';
import type { Runtime } from '../runtime.js';
import { load_listener_parameters, type ListenerInfo } from '../smtp/listener.js';
import { is_trusted_proxy } from '../smtp/xclient.js';
import { read_proxy_header, type ProxyHeader } from './proxy-protocol.js';
import { context_for, sni_callback, tls_base_for, type TlsBase } from './tls-context.js';
import { tls_facts } from '../smtp/facts.js';
import { SmtpSession } from '../smtp/session.js';
import { ident_lookup } from './ident.js';

export interface ServeOptions {
  /** `-H/--no-rdns`: skip the PTR lookup; remote_host is `[ip]`. */
  no_rdns?: boolean;
  /** Implicit TLS (SMTPS): the socket is wrapped before the greeting. */
  tls_context?: tls.SecureContext;
  tls_handshake_timeout_ms?: number;
  /** Connection notes set before the session (by pre-connection hooks). */
  notes?: Record<string, unknown>;
  /** Told about each session as it starts (the worker keeps them for shutdown). */
  on_session?: (session: SmtpSession) => void;
  /** Implicit TLS with per-listener and SNI certificates (wins over tls_context). */
  tls_base?: TlsBase;
  /** The listener's address and flags (`/tls`, `/proxy`, `/lmtp`): docs/listeners.md. */
  listener?: ListenerInfo;
  /**
   * A PROXY header already read (by the daemon's worker, before admission) from `peer_ip`, a trusted proxy. On a
   * `/proxy` listener without it, the header is read here.
   */
  proxied?: ProxyHeader & { peer_ip: string };
  /** Bytes read past the PROXY header (they are the client's first input). */
  head?: Buffer;
  /** How long a `/proxy` listener waits for the header (default 10 s). */
  proxy_timeout_ms?: number;
  /** XCLIENT names a new client address: may it have one more session (per-IP limit)? */
  readdress?: (ip: string) => Promise<boolean>;
}

export type ProxyOutcome = { header: ProxyHeader & { peer_ip: string }; rest: Buffer } | { refusal: string };

/**
 * The start of a connection on a `/proxy` listener: the peer must be in `trusted_proxies` (for
 * its local address) and send a valid PROXY header in time; otherwise the refusal to send
 * before closing. Nothing the untrusted peer sends is read.
 */
export async function accept_proxy(runtime: Runtime, socket: net.Socket, timeout_ms = 10000): Promise<ProxyOutcome> {
  const peer_ip = normalize_ip(socket.remoteAddress ?? '');
  const qp = new Qpsmtpd(runtime, new Connection().start({ remote_ip: peer_ip, local_ip: normalize_ip(socket.localAddress ?? '') }));
  if (!is_trusted_proxy(qp, peer_ip)) {
    runtime.server_qp.log(LOGINFO, `refusing ${peer_ip} on a PROXY listener: not in trusted_proxies`);
    return { refusal: '554 5.7.1 This port takes connections only through a trusted proxy' };
  }
  const r = await read_proxy_header(socket, timeout_ms);
  if (!r.ok) {
    runtime.server_qp.log(LOGINFO, `PROXY header from ${peer_ip}: ${r.error}`);
    return { refusal: r.timeout ? '421 4.4.2 No PROXY header in time, closing connection' : '554 5.5.0 Malformed PROXY header, closing connection' };
  }
  return { header: { ...r.header, peer_ip }, rest: r.rest };
}

/** Sends a last reply and closes (before any session exists). */
export function refuse_socket(socket: net.Socket, text: string): void {
  socket.on('error', () => {});
  socket.end(`${text}\r\n`);
  setTimeout(() => socket.destroy(), 2000).unref();
}

/** qpsmtpd keeps only `[a-zA-Z.\-0-9\[\]]` of the PTR name it puts in headers and replies. */
export function sanitize_host(name: string): string {
  return name.replace(/[^a-zA-Z.\-0-9[\]]/g, '');
}

/** First PTR name of `ip`, or `Unknown` (qpsmtpd forkserver), within the resolver's deadline. */
export async function remote_host_for(runtime: Runtime, ip: string): Promise<string> {
  const names = await runtime.dns.resolve_ptr(ip).catch(() => [] as string[]);
  const name = names[0] ? sanitize_host(names[0].replace(/\.$/, '')) : '';
  return name || 'Unknown';
}

export async function connection_for(runtime: Runtime, socket: net.Socket, opts: ServeOptions = {}): Promise<Connection> {
  // behind a PROXY header the real client drives everything (the proxy is only recorded)
  const px = opts.proxied?.src_ip ? opts.proxied : undefined;
  const remote_ip = px ? px.src_ip! : normalize_ip(socket.remoteAddress ?? '');
  const local_ip = px?.dst_ip ?? normalize_ip(socket.localAddress ?? '');
  const remote_port = px ? px.src_port : socket.remotePort;
  const local_port = px ? px.dst_port : socket.localPort;
  const qp = runtime.server_qp;
  const ident_on = !!qp.config('ident') && qp.config('ident') !== '0';
  // rDNS and ident run side by side, each under its own deadline
  const [remote_host, ident] = await Promise.all([
    opts.no_rdns ? `[${remote_ip}]` : remote_host_for(runtime, remote_ip),
    ident_on && !px
      ? ident_lookup({
          remote_ip,
          remote_port: socket.remotePort ?? 0,
          local_ip,
          local_port: socket.localPort ?? 0,
          port: Number(qp.config('ident_port')) || 113,
          timeout_ms: (Number(qp.config('ident_timeout')) || 2) * 1000,
        })
      : undefined,
  ]);
  const connection = new Connection().start({
    remote_ip,
    remote_port,
    remote_host,
    remote_info: ident ? `${ident}@${remote_host}` : remote_host,
    local_ip,
    local_port,
  });
  if (px) connection.proxy({ allowed: false, ip: px.peer_ip, type: px.version === 2 ? 'proxy-v2' : 'proxy-v1' });
  connection.local_host(qp.config('me') ?? os.hostname());
  return connection;
}

/** Serves one accepted socket to the end of its session. Never throws. */
export async function serve_socket(runtime: Runtime, socket: net.Socket, opts: ServeOptions = {}): Promise<void> {
  socket.pause();
  socket.setNoDelay(true);
  socket.on('error', () => {});
  try {
    if (opts.listener?.proxy && !opts.proxied) {
      // in-process listener: read the PROXY header here (the daemon's worker reads it before admission)
      const r = await accept_proxy(runtime, socket, opts.proxy_timeout_ms);
      if ('refusal' in r) return refuse_socket(socket, r.refusal);
      opts = { ...opts, proxied: r.header, head: r.rest };
    }
    if (opts.head?.length) socket.unshift(opts.head);
    const connection = await connection_for(runtime, socket, opts);
    for (const [k, v] of Object.entries(opts.notes ?? {})) connection.notes(k, v);
    let stream: Duplex = socket;
    let listener_params: Record<string, string[]> | undefined;
    const base = opts.tls_base ?? (opts.tls_context ? { context: opts.tls_context, options: {} } : undefined);
    if (base) {
      // the certificate may depend on the listener (via overlay, listener_parameters) and on SNI
      const pre = new Qpsmtpd(runtime, connection);
      await load_listener_parameters(pre, opts.listener);
      listener_params = pre.listener_params;
      const secure = await implicit_tls(socket, context_for(pre, base), opts.tls_handshake_timeout_ms ?? 10000, sni_callback(pre, base));
      if (!secure) return;
      stream = secure;
      connection.tls(tls_facts(secure));
    }
    const session = new SmtpSession(runtime, stream, connection, {
      implicit_tls: !!base,
      ...(opts.listener ? { listener: opts.listener } : {}),
      ...(opts.listener?.lmtp ? { lmtp: true } : {}),
      ...(opts.no_rdns ? { no_rdns: true } : {}),
      ...(opts.readdress ? { readdress: opts.readdress } : {}),
      ...(listener_params ? { listener_params } : {}),
    });
    opts.on_session?.(session);
    await session.run();
  } catch (err) {
    runtime.server_qp.log(LOGDEBUG, `session ended with error: ${err instanceof Error ? err.message : String(err)}`);
    socket.destroy();
  }
}

/** Server-side TLS handshake on a fresh socket; undefined (socket destroyed) on failure/timeout. */
export function implicit_tls(
  socket: net.Socket,
  context: tls.SecureContext,
  timeout_ms: number,
  SNICallback?: tls.TLSSocketOptions['SNICallback'],
): Promise<tls.TLSSocket | undefined> {
  return new Promise((resolve) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context, ...(SNICallback ? { SNICallback } : {}) });
    const timer = setTimeout(() => fail(), timeout_ms);
    const fail = () => {
      clearTimeout(timer);
      secure.destroy();
      socket.destroy();
      resolve(undefined);
    };
    secure.once('secure', () => {
      clearTimeout(timer);
      secure.off('error', fail);
      secure.on('error', () => {});
      resolve(secure);
    });
    secure.once('error', fail);
  });
}

export interface ListenOptions extends ServeOptions {
  host?: string;
  port: number;
  /** `/tls`: implicit TLS with the configured certificates (the tls plugin's, else tls_cert/tls_key). */
  tls?: boolean;
  /** `/proxy`: each connection opens with a PROXY header from a peer in `trusted_proxies`. */
  proxy?: boolean;
  /** `/lmtp`: LMTP (RFC 2033) instead of SMTP. */
  lmtp?: boolean;
}

/**
 * A listener serving sessions in this process (tests, single-process mode), with the daemon's
 * listener flags: `tls`, `proxy`, `lmtp` (docs/listeners.md).
 */
export function listen(runtime: Runtime, opts: ListenOptions): Promise<net.Server> {
  const tls_base = opts.tls_base ?? (opts.tls && !opts.tls_context ? tls_base_for(runtime) : undefined);
  if (opts.tls && !tls_base && !opts.tls_context) {
    return Promise.reject(new Error('implicit TLS listener but no certificate: set tls_cert and tls_key (or load plugins/tls)'));
  }
  const host = opts.host ?? '127.0.0.1';
  const listener: ListenerInfo = opts.listener ?? {
    host,
    port: opts.port,
    ...(opts.tls || opts.tls_context || opts.tls_base ? { tls: true } : {}),
    ...(opts.proxy ? { proxy: true } : {}),
    ...(opts.lmtp ? { lmtp: true } : {}),
  };
  const serve_opts: ServeOptions = { ...opts, listener, ...(tls_base ? { tls_base } : {}) };
  const server = net.createServer({ pauseOnConnect: true }, (socket) => void serve_socket(runtime, socket, serve_opts));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      if (!opts.listener) listener.port = (server.address() as net.AddressInfo).port;
      resolve(server);
    });
  });
}
