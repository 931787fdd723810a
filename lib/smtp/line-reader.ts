// Byte-level SMTP input: the session pushes socket bytes and pulls one event at a
// time, changing `mode` between pulls. Nothing is parsed before it is pulled, so bytes
// pipelined behind a command are read in whatever mode the session chose for them.

export type ReaderMode = 'command' | 'auth' | 'data';

export type ReaderEvent =
  | { type: 'line'; line: Buffer }
  | { type: 'too_long'; mode: 'command' | 'auth' }
  | { type: 'data'; chunk: Buffer }
  | { type: 'end' }
  | { type: 'bad_line_ending'; offset: number };

export interface LineReaderOptions {
  /** Longest command line in octets, CRLF included (default 512). */
  commandMax?: number;
  /** Longest AUTH continuation line in octets, CRLF included (default 12290). */
  authMax?: number;
}

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);

export class LineReader {
  readonly commandMax: number;
  readonly authMax: number;

  private chunks: Buffer[] = [];
  private pos = 0; // read offset into chunks[0]
  private size = 0; // unread bytes in chunks
  private _mode: ReaderMode = 'command';
  private skipping = false; // inside an over-long line, dropping its bytes
  private dead = false; // bad line ending seen: nothing more is ever parsed
  // DATA phase state
  private lineStart = true;
  private endPending = false;
  private _dataBytes = 0;
  private rawBytes = 0;

  constructor(opts: LineReaderOptions = {}) {
    this.commandMax = opts.commandMax ?? 512;
    // RFC 4954 §4 / LEN-07: a 12288-octet response must fit, so its CRLF comes on top.
    this.authMax = opts.authMax ?? 12288 + 2;
  }

  get mode(): ReaderMode {
    return this._mode;
  }

  set mode(m: ReaderMode) {
    if (m === 'data' && this._mode !== 'data') {
      this.lineStart = true;
      this.endPending = false;
      this._dataBytes = 0;
      this.rawBytes = 0;
    }
    this._mode = m;
  }

  /** Content octets (after CRLF→LF and dot-unstuffing) delivered in the current or last DATA. */
  get dataBytes(): number {
    return this._dataBytes;
  }

  push(chunk: Buffer): void {
    if (this.dead || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  buffered(): number {
    return this.size;
  }

  discard(): number {
    const n = this.size;
    this.chunks = [];
    this.pos = 0;
    this.size = 0;
    this.skipping = false;
    return n;
  }

  next(): ReaderEvent | undefined {
    if (this.dead) return undefined;
    if (this._mode === 'data') return this.nextData();
    return this.nextLine(this._mode === 'auth' ? this.authMax : this.commandMax);
  }

  // One contiguous buffer holding every unread byte; copies only when input is split.
  private take(): Buffer {
    if (this.chunks.length === 0) return EMPTY;
    if (this.chunks.length > 1) {
      this.chunks[0] = this.chunks[0]!.subarray(this.pos);
      this.chunks = [Buffer.concat(this.chunks, this.size)];
      this.pos = 0;
    }
    return this.chunks[0]!;
  }

  private consumeTo(buf: Buffer, p: number): void {
    this.size -= p - this.pos;
    if (p >= buf.length) {
      this.chunks = [];
      this.pos = 0;
    } else {
      this.pos = p;
    }
  }

  private nextLine(max: number): ReaderEvent | undefined {
    const buf = this.take();
    const start = this.pos;
    const end = buf.length;
    const crlf = buf.indexOf(CRLF, start);
    if (crlf >= 0) {
      this.consumeTo(buf, crlf + 2);
      if (this.skipping || crlf + 2 - start > max) {
        this.skipping = false;
        return { type: 'too_long', mode: this._mode === 'auth' ? 'auth' : 'command' };
      }
      return { type: 'line', line: buf.subarray(start, crlf) };
    }
    // No CRLF yet. Once the line cannot fit any more, drop its bytes as they come,
    // keeping only a final CR that may pair with the next chunk's LF.
    if (this.skipping || end - start >= max) {
      this.skipping = true;
      this.consumeTo(buf, buf[end - 1] === CR ? end - 1 : end);
    }
    return undefined;
  }

  private nextData(): ReaderEvent | undefined {
    if (this.endPending) return this.finishData();
    const buf = this.take();
    const start = this.pos;
    const n = buf.length;
    // Output is the input minus each CR of a CRLF and each stuffed dot: a list of
    // input ranges. A range starts at the previous line's LF, so lines chain up.
    const ranges: number[] = [];
    let runStart = start;
    let p = start;
    let bad = -1;
    for (;;) {
      if (this.lineStart) {
        if (p >= n) break;
        if (buf[p] === DOT) {
          if (p + 1 >= n) break;
          const c = buf[p + 1];
          if (c === CR) {
            if (p + 2 >= n) break;
            if (buf[p + 2] === LF) {
              ranges.push(runStart, p);
              p += 3;
              this.endPending = true;
              break;
            }
            bad = p + 1;
            break;
          }
          if (c === LF) {
            bad = p + 1;
            break;
          }
          ranges.push(runStart, p);
          runStart = ++p;
        }
        this.lineStart = false;
      }
      const lf = buf.indexOf(LF, p);
      const cr = buf.indexOf(CR, p);
      if (lf < 0) {
        if (cr < 0) {
          p = n;
        } else if (cr === n - 1) {
          p = cr; // a final CR waits for its LF
        } else {
          bad = cr;
        }
        break;
      }
      if (cr < 0 || cr !== lf - 1) {
        bad = cr >= 0 && cr < lf ? cr : lf;
        break;
      }
      ranges.push(runStart, cr);
      runStart = lf;
      p = lf + 1;
      this.lineStart = true;
    }
    if (bad >= 0) {
      this.dead = true;
      const offset = this.rawBytes + (bad - start);
      this.discard();
      return { type: 'bad_line_ending', offset };
    }
    if (!this.endPending) ranges.push(runStart, p);
    this.rawBytes += p - start;
    this.consumeTo(buf, p);

    let total = 0;
    let pieces = 0;
    let first = 0;
    for (let i = 0; i < ranges.length; i += 2) {
      const len = ranges[i + 1]! - ranges[i]!;
      if (len > 0 && pieces++ === 0) first = ranges[i]!;
      total += len;
    }
    if (total === 0) return this.endPending ? this.finishData() : undefined;
    this._dataBytes += total;
    if (pieces === 1) return { type: 'data', chunk: buf.subarray(first, first + total) };
    const chunk = Buffer.allocUnsafe(total);
    let w = 0;
    for (let i = 0; i < ranges.length; i += 2) w += buf.copy(chunk, w, ranges[i]!, ranges[i + 1]!);
    return { type: 'data', chunk };
  }

  private finishData(): ReaderEvent {
    this.endPending = false;
    this._mode = 'command';
    return { type: 'end' };
  }
}
