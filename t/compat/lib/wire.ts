// A byte-exact SMTP client for transcript tests: every octet the server sends is kept, so a
// test can tell `421 …\r\n` from qpsmtpd's `421 …\n` and see exactly when the server closed.
import net from 'node:net';

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

export class WireClient {
  /** Every byte received, in order (latin1: one char per byte). */
  received = '';
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      const s = d.toString('latin1');
      this.received += s;
      this.buf += s;
      this.notify();
    });
    const gone = () => {
      this.closed = true;
      this.notify();
    };
    socket.on('end', gone);
    socket.on('close', gone);
    socket.on('error', gone);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new WireClient(socket));
      });
      socket.once('error', reject);
    });
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
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
  async reply(ms = 5000): Promise<Outcome> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = this.take();
      if (r) return r;
      if (this.closed) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) return 'silent';
      await this.wait(left);
    }
  }

  send(data: string): void {
    if (!this.closed) this.socket.write(Buffer.from(data, 'latin1'));
  }

  /** Sends `line` + CRLF and returns the reply. */
  async cmd(line: string, ms?: number): Promise<Outcome> {
    this.send(line + '\r\n');
    return this.reply(ms);
  }

  /** Waits until the server has closed the connection (true) or `ms` passed (false). */
  async wait_closed(ms = 3000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.wait(left);
    }
    return true;
  }

  /** Unconsumed bytes (anything the server sent that was not taken as a reply). */
  pending(): string {
    return this.buf;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A reply as one string, lines joined by `\n`, a bare-LF line marked ` [bare LF]`. */
export function show(o: Outcome): string {
  if (o === 'closed') return '(connection closed)';
  if (o === 'silent') return '(no reply)';
  return o.lines.map((l, i) => (o.bare_lf.includes(i) ? `${l} [bare LF]` : l)).join('\n');
}
