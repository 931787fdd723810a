// Connection facts the engine fills in as the conversation goes (docs/connection.md): TLS facts
// from the socket, the message counter and the meta snapshot when DATA starts.
import type { TlsFacts } from '../connection.js';
import type { SmtpSession } from './session.js';

/** What a server-side TLS socket tells about itself (node's tls.TLSSocket is one). */
export interface TlsSocketLike {
  getProtocol?(): string | null;
  getCipher?(): { name?: string } | null;
  servername?: string | false | null;
}

/** `{secure: true, protocol, cipher, servername}` of an established server-side TLS socket. */
export function tls_facts(socket: TlsSocketLike): TlsFacts {
  const servername = socket.servername;
  return {
    secure: true,
    protocol: socket.getProtocol?.() ?? '',
    cipher: socket.getCipher?.()?.name ?? '',
    servername: typeof servername === 'string' ? servername : '',
  };
}

/**
 * The message phase starts (DATA is about to answer 354): the connection counts one more
 * message, and the transaction gets the connection's meta (its own values win), so data and
 * queue plugins see it.
 */
export function start_message(s: SmtpSession): void {
  const c = s.connection;
  c.transaction_count(c.transaction_count() + 1);
  s.transaction.copy_meta_from(c.all_meta());
}
