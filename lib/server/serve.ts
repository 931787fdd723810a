// Turning an accepted socket into a session: connection facts (addresses, rDNS), then the
// SMTP conversation. Used by the listener and by pool workers that receive sockets.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { LOGDEBUG } from '../constants.js';
import { Connection, normalize_ip } from '../connection.js';
import type { Runtime } from '../runtime.js';
import { SmtpSession } from '../smtp/session.js';
import { ident_lookup } from './ident.js';

export interface ServeOptions {
  /** `-H/--no-rdns`: skip the PTR lookup; remote_host is `[ip]`. */
  no_rdns?: boolean;
  /** Implicit TLS (SMTPS): the socket is wrapped before the greeting. */
  tls_context?: tls.SecureContext;
  tls_handshake_timeout_ms?: number;
  /** Connection notes set before the session (by pre-connection hooks in the master). */
  notes?: Record<string, unknown>;
  /** Told about each session as it starts (the worker keeps them for shutdown). */
  on_session?: (session: SmtpSession) => void;
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
  const remote_ip = normalize_ip(socket.remoteAddress ?? '');
  const local_ip = normalize_ip(socket.localAddress ?? '');
  const qp = runtime.server_qp;
  const ident_on = !!qp.config('ident') && qp.config('ident') !== '0';
  // rDNS and ident run side by side, each under its own deadline
  const [remote_host, ident] = await Promise.all([
    opts.no_rdns ? `[${remote_ip}]` : remote_host_for(runtime, remote_ip),
    ident_on
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
  return new Connection().start({
    remote_ip,
    remote_port: socket.remotePort,
    remote_host,
    remote_info: ident ? `${ident}@${remote_host}` : remote_host,
    local_ip,
    local_port: socket.localPort,
  });
}

/** Serves one accepted socket to the end of its session. Never throws. */
export async function serve_socket(runtime: Runtime, socket: net.Socket, opts: ServeOptions = {}): Promise<void> {
  socket.pause();
  socket.setNoDelay(true);
  socket.on('error', () => {});
  try {
    const connection = await connection_for(runtime, socket, opts);
    for (const [k, v] of Object.entries(opts.notes ?? {})) connection.notes(k, v);
    let stream: Duplex = socket;
    if (opts.tls_context) {
      const secure = await implicit_tls(socket, opts.tls_context, opts.tls_handshake_timeout_ms ?? 10000);
      if (!secure) return;
      stream = secure;
    }
    const session = new SmtpSession(runtime, stream, connection, { implicit_tls: !!opts.tls_context });
    opts.on_session?.(session);
    await session.run();
  } catch (err) {
    runtime.server_qp.log(LOGDEBUG, `session ended with error: ${err instanceof Error ? err.message : String(err)}`);
    socket.destroy();
  }
}

/** Server-side TLS handshake on a fresh socket; undefined (socket destroyed) on failure/timeout. */
export function implicit_tls(socket: net.Socket, context: tls.SecureContext, timeout_ms: number): Promise<tls.TLSSocket | undefined> {
  return new Promise((resolve) => {
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: context });
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
}

/** A plain listener serving sessions in this process (tests, single-process mode). */
export function listen(runtime: Runtime, opts: ListenOptions): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true }, (socket) => void serve_socket(runtime, socket, opts));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
