// The STARTTLS transport switch (RFC 3207), as qpsmtpd's tls plugin does it: throw away whatever
// the client pipelined behind the command (CVE-2011-0411, R3), say `220 Go ahead with TLS`,
// hand the socket to a server-side TLS layer, handshake under a deadline, then continue the
// same SmtpSession on the TLS socket with a cloned Connection and a fresh transaction.
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { LOGDEBUG, LOGINFO, LOGNOTICE, LOGWARN } from '../constants.js';
import { tls_facts } from './facts.js';
import type { SmtpSession } from './session.js';

export interface StartTlsOptions {
  /** The server certificate and settings (built once, at plugin load). */
  context: tls.SecureContext;
  /** From the `220` until the handshake is complete (STL-07). */
  timeout_ms: number;
  /** Aborts the handshake (the hook's own timeout). */
  signal?: AbortSignal;
  /** Chooses another certificate by the name the client asks for (SNI). */
  SNICallback?: tls.TLSSocketOptions['SNICallback'];
}

/**
 * Switches `session` to TLS. Resolves true when the session now runs on the TLS socket, false
 * when the handshake failed, stalled or the client went away; the session is then closed
 * (nothing more can be said to the client) and only its end-of-session hooks remain.
 */
export async function starttls(session: SmtpSession, opts: StartTlsOptions): Promise<boolean> {
  const plain = session.detach();
  // R3: nothing the client sent before it saw our 220 may be read as a command inside TLS.
  const discarded = session.reader.discard() + drain_readable(plain);
  if (discarded) {
    session.log(LOGNOTICE, `STARTTLS: discarded ${discarded} byte${discarded === 1 ? '' : 's'} sent after the command (pipelining into TLS is not allowed)`);
  }
  if (!session.respond(220, 'Go ahead with TLS')) return failed(session, plain, 'cannot send 220');
  const deadline = Date.now() + opts.timeout_ms;
  if (!(await flushed(plain, opts.timeout_ms))) return failed(session, plain, 'the 220 reply could not be delivered');
  const outcome = await handshake(plain, opts.context, Math.max(0, deadline - Date.now()), opts.signal, opts.SNICallback);
  if ('error' in outcome) return failed(session, plain, outcome.error);

  const secure = outcome.socket;
  session.reattach(secure, secure);
  // qpsmtpd: a new Connection without what the client told us in clear (hello, hello_host),
  // the notes shared; then a new transaction.
  session.connection = session.connection.clone();
  await session.reset_transaction();
  // RFC 3207 4.2: what the clear-text EHLO enabled is gone until the client greets again
  session.commands.delete('auth');
  const protocol = secure.getProtocol() ?? '';
  const cipher = secure.getCipher()?.name ?? '';
  const c = session.connection;
  c.tls(tls_facts(secure));
  c.notes('tls_enabled', 1);
  c.notes('tls_socket', secure);
  c.notes('tls_protocol', protocol);
  c.notes('tls_cipher', cipher);
  session.log(LOGINFO, `TLS established: ${protocol} ${cipher}`);
  return true;
}

/** Reads out (and counts) whatever the plain stream already buffered on the JS side. */
function drain_readable(stream: Duplex): number {
  let n = 0;
  if (stream.destroyed || !stream.readable) return 0;
  for (let chunk = stream.read() as Buffer | string | null; chunk !== null; chunk = stream.read() as Buffer | string | null) {
    n += chunk.length;
  }
  return n;
}

/** Resolves true once everything written to `stream` so far has left it (false on error/timeout). */
function flushed(stream: Duplex, timeout_ms: number): Promise<boolean> {
  if (stream.destroyed || !stream.writable) return Promise.resolve(false);
  if (stream.writableLength === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeout_ms);
    // an empty write completes after every write queued before it
    stream.write(Buffer.alloc(0), (err) => {
      clearTimeout(timer);
      resolve(!err);
    });
  });
}

type Outcome = { socket: tls.TLSSocket } | { error: string };

/** Server-side handshake on `plain`; on any failure both sockets are destroyed. */
function handshake(
  plain: Duplex,
  context: tls.SecureContext,
  timeout_ms: number,
  signal?: AbortSignal,
  SNICallback?: tls.TLSSocketOptions['SNICallback'],
): Promise<Outcome> {
  return new Promise((resolve) => {
    let secure: tls.TLSSocket;
    try {
      secure = new tls.TLSSocket(plain as net.Socket, { isServer: true, secureContext: context, ...(SNICallback ? { SNICallback } : {}) });
    } catch (err) {
      plain.destroy();
      resolve({ error: err instanceof Error ? err.message : String(err) });
      return;
    }
    let settled = false;
    const finish = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', on_abort);
      secure.off('secure', on_secure);
      secure.off('error', on_error);
      secure.off('close', on_close);
      secure.off('end', on_close);
      plain.off('close', on_close);
      // errors after this point are the session's business (or nobody's, once it failed)
      secure.on('error', () => {});
      if ('error' in outcome) {
        secure.destroy();
        plain.destroy();
      }
      resolve(outcome);
    };
    const on_secure = () => finish({ socket: secure });
    const on_error = (err: Error) => finish({ error: err.message });
    const on_close = () => finish({ error: 'connection closed during the TLS handshake' });
    const on_abort = () => finish({ error: 'aborted' });
    const timer = setTimeout(() => finish({ error: `no TLS handshake within ${timeout_ms / 1000} s` }), timeout_ms);
    secure.once('secure', on_secure);
    secure.once('error', on_error);
    secure.once('close', on_close);
    secure.once('end', on_close);
    plain.once('close', on_close);
    if (signal?.aborted) on_abort();
    else signal?.addEventListener('abort', on_abort, { once: true });
  });
}

function failed(session: SmtpSession, plain: Duplex, why: string): false {
  session.log(LOGWARN, `TLS failed: ${why}`);
  if (!plain.destroyed) plain.destroy();
  session.close();
  session.log(LOGDEBUG, 'session closed after a failed STARTTLS');
  return false;
}
