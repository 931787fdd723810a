// A byte-exact SMTP client for transcript tests: every octet the server sends is kept, so a
// test can tell `421 …\r\n` from qpsmtpd's `421 …\n` and see exactly when the server closed.
import type net from 'node:net';
import { open_socket } from '../../lib/daemon.js';
import { StreamClient } from '../../lib/session.js';

export interface WireReply {
  /** The reply exactly as received (line endings included). */
  raw: string;
  /** Reply lines without their line endings (`250-PIPELINING`, `250 OK`, …). */
  lines: string[];
  /** Lines that ended in a bare LF instead of CRLF (indexes into `lines`). */
  bare_lf: number[];
}

/** What a transcript records for one exchange. */
export type Outcome = WireReply | 'closed' | 'silent';

export class WireClient extends StreamClient<net.Socket> {
  static async connect(port: number, host = '127.0.0.1'): Promise<WireClient> {
    return new WireClient(await open_socket(port, { host }));
  }

  /** Takes one complete reply off the buffer (a final `NNN ` line or a line that is no continuation). */
  private take(): WireReply | undefined {
    let pos = 0;
    const lines: string[] = [];
    const bare_lf: number[] = [];
    for (;;) {
      const nl = this.buf.indexOf('\n', pos);
      if (nl < 0) return undefined;
      const cr = nl > pos && this.buf[nl - 1] === '\r';
      const line = this.buf.slice(pos, cr ? nl - 1 : nl);
      if (!cr) bare_lf.push(lines.length);
      lines.push(line);
      pos = nl + 1;
      if (!/^\d{3}-/.test(line)) {
        const raw = this.buf.slice(0, pos);
        this.buf = this.buf.slice(pos);
        return { raw, lines, bare_lf };
      }
    }
  }

  /** The next reply; `'closed'` if the server closed first, `'silent'` if nothing came in `ms`. */
  reply(ms = 5000): Promise<Outcome> {
    return this.next(() => this.take(), ms);
  }

  /** Sends `line` + CRLF and returns the reply. */
  async cmd(line: string, ms?: number): Promise<Outcome> {
    this.send(line + '\r\n');
    return this.reply(ms);
  }

  /** Waits until the server has closed the connection (true) or `ms` passed (false). */
  override wait_closed(ms = 3000): Promise<boolean> {
    return super.wait_closed(ms);
  }
}

/** A reply as one string, lines joined by `\n`, a bare-LF line marked ` [bare LF]`. */
export function show(o: Outcome): string {
  if (o === 'closed') return '(connection closed)';
  if (o === 'silent') return '(no reply)';
  return o.lines.map((l, i) => (o.bare_lf.includes(i) ? `${l} [bare LF]` : l)).join('\n');
}
