// Dot-stuffing of stored message bytes (LF line ends) for sending as SMTP DATA or BSMTP.

const DOT = Buffer.from('.');
const LF = Buffer.from('\n');
const CRLF = Buffer.from('\r\n');

/**
 * A line that starts with `.` gets one more (RFC 5321 4.5.2). With `crlf`, every LF not
 * already preceded by CR becomes CRLF (what goes on the wire); without, line ends stay LF (a
 * BSMTP file). Chunk boundaries may fall anywhere.
 */
export class DotStuffer {
  private bol = true;
  private prev_cr = false;

  constructor(private readonly crlf: boolean) {}

  encode(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let from = 0;
    while (from < chunk.length) {
      if (this.bol && chunk[from] === 0x2e) out.push(DOT);
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) {
        out.push(chunk.subarray(from));
        this.prev_cr = chunk[chunk.length - 1] === 0x0d;
        this.bol = false;
        break;
      }
      if (this.crlf) {
        const before_cr = nl > from ? chunk[nl - 1] === 0x0d : this.prev_cr;
        out.push(chunk.subarray(from, nl), before_cr ? LF : CRLF);
      } else out.push(chunk.subarray(from, nl + 1));
      this.prev_cr = false;
      this.bol = true;
      from = nl + 1;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  at_line_start(): boolean {
    return this.bol;
  }

  /** The end of data: a line break if the message did not end with one, then `.`. */
  finish(): Buffer {
    const eol = this.crlf ? '\r\n' : '\n';
    return Buffer.from(this.bol ? `.${eol}` : `${eol}.${eol}`);
  }
}
