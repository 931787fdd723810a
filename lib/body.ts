// The message spool of a Transaction (qpsmtpd's body_* methods): lines in memory until
// data_size() reaches size_threshold(), then a 0600 temp file written through a small buffer.

import { constants as FS, readSync, writeSync } from 'node:fs';
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { LOGDEBUG, LOGERROR, LOGINFO, LOGWARN } from './constants.js';

export interface SpoolHost {
  temp_file(): string;
  size_threshold(): number;
  log(level: number, ...msg: unknown[]): void;
}

const CHUNK = 64 * 1024;

export class MessageBody {
  // Memory mode: "\n"-terminated lines (the last may be a fragment) and a line index.
  private lines: string[] | undefined;
  private lineIdx = 0;
  // Spooled mode. Writes are positional: the `staged` bytes of `stage` follow the `onDisk`
  // bytes of the file. One reused buffer, so a big message costs no garbage per write.
  private filename: string | undefined;
  private fh: FileHandle | undefined;
  private stage: Buffer | undefined;
  private staged = 0;
  private onDisk = 0;
  /** Perl's _body_file_writing: the last operation was a write, so reads restart at body_start. */
  private writing = false;
  private readPos = 0;
  private rbuf: Buffer | undefined;
  private rbufStart = 0;
  private rbufLen = 0;

  private size = 0;
  private start: number | undefined;
  private headerSize: number | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private busy = 0;
  private failed: unknown;

  constructor(protected readonly host: SpoolHost) {}

  /** Appends data (a binary string or bytes); resolves once it is buffered or written. */
  body_write(data: string | Buffer): Promise<void> {
    return this.serialized(() => this.write(data));
  }

  /** Moves the body to the spool file now (qpsmtpd calls this itself at size_threshold). */
  body_spool(): Promise<void> {
    return this.serialized(() => this.spool());
  }

  /** Forces spooling, writes out everything buffered, returns the spool file's path. */
  body_filename(): Promise<string> {
    return this.serialized(async () => {
      if (!this.fh) await this.spool();
      await this.flush();
      return this.filename!;
    });
  }

  /** Called by core at the end of the headers: the body starts at the current position. */
  set_body_start(): void {
    this.start = this.body_current_pos();
    this.headerSize = this.fh ? this.start : (this.lines ?? []).reduce((n, l) => n + l.length, 0);
  }

  /** Line index in memory mode, byte offset once spooled. */
  body_start(): number {
    return this.start ?? 0;
  }

  body_current_pos(): number {
    if (!this.fh) return this.lineIdx;
    return this.writing ? this.onDisk + this.staged : this.readPos;
  }

  body_resetpos(): true {
    if (this.fh) {
      this.readPos = this.start ?? 0;
      this.writing = false;
    } else {
      this.lineIdx = this.start ?? 0;
    }
    return true;
  }

  /**
   * Next body line or undefined at the end. As in qpsmtpd, memory mode reads on from the
   * current index (call body_resetpos first); spooled, reading right after a write restarts
   * at body_start.
   */
  body_getline(): string | undefined {
    if (!this.fh) return this.lines?.[this.lineIdx++];
    this.flushSync();
    if (this.writing) {
      this.readPos = this.start ?? 0;
      this.writing = false;
    }
    return this.readLine();
  }

  body_as_string(): string {
    this.body_resetpos();
    const parts: string[] = [];
    for (let l = this.body_getline(); l !== undefined; l = this.body_getline()) parts.push(l);
    return parts.join('');
  }

  /** The spool file's descriptor (all written data flushed to it), undefined before spooling. */
  body_fh(): number | undefined {
    if (!this.fh) return undefined;
    this.flushSync();
    return this.fh.fd;
  }

  /** Bytes written, header lines included. */
  data_size(): number {
    return this.size;
  }

  body_size(): number {
    this.host.log(LOGWARN, 'WARNING: body_size() is deprecated, use data_size() instead');
    return this.size;
  }

  /** data_size() minus the header lines (so it counts the blank separator); 0 before set_body_start. */
  body_length(): number {
    if (!this.size || !this.headerSize) return 0;
    return this.size - this.headerSize;
  }

  /** Bytes from body_start to the end, streamed from the spool file. */
  body_stream(): Readable {
    return Readable.from(this.bodyChunks(), { objectMode: false });
  }

  protected async *bodyChunks(): AsyncGenerator<Buffer> {
    await this.serialized(() => this.flush());
    if (!this.fh) {
      const s = (this.lines ?? []).slice(this.start ?? 0).join('');
      if (s) yield Buffer.from(s, 'latin1');
      return;
    }
    const fh = this.fh;
    const end = this.onDisk;
    for (let p = this.start ?? 0; p < end; ) {
      const n = Math.min(CHUNK, end - p);
      const { bytesRead, buffer } = await fh.read(Buffer.allocUnsafe(n), 0, n, p);
      if (!bytesRead) break;
      yield buffer.subarray(0, bytesRead);
      p += bytesRead;
    }
  }

  /** Closes and unlinks the spool file; the body is empty afterwards. Never throws. */
  protected async discardBody(): Promise<void> {
    await this.queue;
    const { fh, filename } = this;
    this.fh = this.filename = this.lines = this.rbuf = this.stage = undefined;
    this.staged = this.onDisk = this.size = this.lineIdx = this.rbufLen = 0;
    this.start = this.headerSize = undefined;
    if (fh) await fh.close().catch((e: unknown) => this.host.log(LOGERROR, 'Could not close spool file: ', errText(e)));
    if (!filename) return;
    try {
      await unlink(filename);
      this.host.log(LOGDEBUG, 'unlinked ', filename);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.host.log(LOGERROR, 'Could not unlink ', filename, ': ', errText(e));
      }
    }
  }

  /** Runs body operations one at a time, in call order, even when callers do not await. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    const p = this.queue.then(fn).finally(() => this.busy--);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async write(data: string | Buffer): Promise<void> {
    if (this.failed) throw this.failed;
    if (this.fh) {
      this.writing = true;
      this.size += await this.stageWrite(data);
      return;
    }
    const s = typeof data === 'string' ? data : data.toString('latin1');
    const lines = (this.lines ??= []);
    let from = 0;
    const last = lines.length - 1;
    // Continue a trailing fragment, so memory and spooled reads give the same lines.
    if (s && last >= 0 && !lines[last]!.endsWith('\n')) {
      from = lineEnd(s, 0);
      lines[last] += s.slice(0, from);
    }
    while (from < s.length) {
      const end = lineEnd(s, from);
      lines.push(s.slice(from, end));
      this.lineIdx++;
      from = end;
    }
    this.size += s.length;
    if (this.size >= this.host.size_threshold()) await this.spool();
  }

  private async spool(): Promise<void> {
    if (this.fh) return;
    this.host.log(LOGINFO, 'spooling message to disk');
    const filename = this.host.temp_file();
    // O_EXCL: never write into a file (or symlink) that is already there.
    this.fh = await open(filename, FS.O_RDWR | FS.O_CREAT | FS.O_EXCL, 0o600);
    this.filename = filename;
    this.rbufLen = 0;
    this.stage = Buffer.allocUnsafe(CHUNK);
    if (this.lines) {
      await this.stageWrite(this.lines.join(''));
      this.start = this.headerSize;
    } else {
      this.host.log(LOGERROR, 'no message body');
    }
    this.lines = undefined;
    this.readPos = this.onDisk + this.staged;
    this.writing = false;
    await this.flush();
  }

  /** Copies data into the stage, writing it out each time it fills; returns the byte count. */
  private async stageWrite(data: string | Buffer): Promise<number> {
    const stage = this.stage!;
    for (let from = 0; from < data.length; ) {
      const room = stage.length - this.staged;
      const n =
        typeof data === 'string'
          ? stage.write(data.substring(from, from + room), this.staged, 'latin1')
          : data.copy(stage, this.staged, from, from + room);
      this.staged += n;
      from += n;
      if (this.staged === stage.length) await this.flush();
    }
    return data.length;
  }

  private async flush(): Promise<void> {
    if (this.failed) throw this.failed;
    if (!this.fh || !this.staged) return;
    try {
      for (let off = 0; off < this.staged; ) {
        off += (await this.fh.write(this.stage!, off, this.staged - off, this.onDisk + off)).bytesWritten;
      }
    } catch (e) {
      this.failed = e;
      throw e;
    }
    this.onDisk += this.staged;
    this.staged = 0;
  }

  /** For the synchronous readers; a write still in progress would race with them. */
  private flushSync(): void {
    if (this.busy) throw new Error('body read while a body write is still in progress');
    if (this.failed) throw this.failed;
    if (!this.fh || !this.staged) return;
    for (let off = 0; off < this.staged; ) {
      off += writeSync(this.fh.fd, this.stage!, off, this.staged - off, this.onDisk + off);
    }
    this.onDisk += this.staged;
    this.staged = 0;
  }

  private readLine(): string | undefined {
    const fd = this.fh!.fd;
    const rbuf = (this.rbuf ??= Buffer.allocUnsafe(CHUNK));
    let line: string | undefined;
    for (;;) {
      let off = this.readPos - this.rbufStart;
      if (off < 0 || off >= this.rbufLen) {
        this.rbufStart = this.readPos;
        this.rbufLen = readSync(fd, rbuf, 0, rbuf.length, this.readPos);
        off = 0;
        if (!this.rbufLen) return line;
      }
      const nl = rbuf.subarray(0, this.rbufLen).indexOf(10, off);
      const end = nl < 0 ? this.rbufLen : nl + 1;
      line = (line ?? '') + rbuf.toString('latin1', off, end);
      this.readPos = this.rbufStart + end;
      if (nl >= 0) return line;
    }
  }
}

function lineEnd(s: string, from: number): number {
  const nl = s.indexOf('\n', from);
  return nl < 0 ? s.length : nl + 1;
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
