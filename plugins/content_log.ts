// content_log: append every message (header + body) to a file, for debugging or archiving.
//
//   content_log [loglevel N]
//
// Config:
//   content_log_enabled  `true`, `1` or `yes` (any case, trailing blanks allowed) enables; anything
//                        else disables; absent = enabled. Read at start-up (the hook is only
//                        registered when enabled) and again for every message, so switching it
//                        off takes effect without a restart.
//   content_log_file     strftime(3) pattern of the file, in local time; default `mail/%Y%m%d`
//                        (relative to the server's working directory). The directory must exist.
//
// data_post hook; it never rejects: DECLINED with `successfully saved message.. continuing`,
// `Could not open log file.. continuing anyway` or `excluded from content logging`.
// Subclasses may override `exclude()` to skip messages.
//
// Messages from concurrent sessions of this process never interleave in the file: appends to
// one file are serialized. The file is created with mode 0600. A failure (or the hook running
// past its time limit) is logged and never rejects the message (continue_on_error).
import fsp, { type FileHandle } from 'node:fs/promises';
import { DECLINED, LOGDEBUG, LOGERROR, LOGINFO, Plugin, type Transaction } from '../lib/index.js';
import { strftime } from '../lib/strftime.js';

export default class extends Plugin {
  /** Per file name: the tail of the chain of appends (shared by all session views). */
  _queues!: Map<string, Promise<unknown>>;
  /** Archiving must never cost a message: a throw or a timeout is logged and mail goes on. */
  override continue_on_error = true;

  override register(...args: string[]): void {
    this.parse_args(args, {});
    this._queues = new Map();
    if (!this.content_log_enabled()) {
      this.log(LOGINFO, 'content logging is disabled (content_log_enabled)');
      return;
    }
    this.register_hook('data_post', 'data_post_handler');
  }

  async data_post_handler(transaction: Transaction): Promise<[number, string]> {
    if (!this.content_log_enabled()) return [DECLINED, 'content logging disabled'];
    if (this.exclude()) return [DECLINED, 'excluded from content logging'];
    const file = this.content_log_file();
    const signal = this.signal;
    return this.serialized(file, async () => {
      let fh: FileHandle;
      try {
        fh = await fsp.open(file, 'a', 0o600);
      } catch (e) {
        this.log(LOGERROR, `could not open ${file}: ${(e as Error).message}`);
        return [DECLINED, 'Could not open log file.. continuing anyway'];
      }
      try {
        for await (const chunk of transaction.message_stream()) {
          if (signal?.aborted) throw new Error('hook timed out');
          await write_all(fh, chunk as Buffer);
        }
      } catch (e) {
        this.log(LOGERROR, `could not write ${file}: ${(e as Error).message}`);
        return [DECLINED, 'Could not write log file.. continuing anyway'];
      } finally {
        await fh.close().catch(() => undefined);
      }
      this.log(LOGDEBUG, `message appended to ${file}`);
      return [DECLINED, 'successfully saved message.. continuing'];
    });
  }

  /** The file for now: `content_log_file` (default `mail/%Y%m%d`) through strftime. */
  content_log_file(): string {
    const path = this.qp.config('content_log_file') || 'mail/%Y%m%d';
    return strftime(path, new Date());
  }

  /** `content_log_enabled`: absent, `true`, `1` or `yes` (case-insensitive, trailing blanks) → true. */
  content_log_enabled(): boolean {
    const enabled = this.qp.config('content_log_enabled') ?? 'true';
    return /^(?:true|1|yes)\s*$/i.test(enabled);
  }

  /** Override to exclude some messages from content logging. */
  exclude(): boolean {
    return false;
  }

  /** Runs appends to one file one after another, so messages never interleave. */
  private serialized<T>(file: string, fn: () => Promise<T>): Promise<T> {
    const prev = this._queues.get(file) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this._queues.set(file, tail);
    void tail.then(() => {
      if (this._queues.get(file) === tail) this._queues.delete(file);
    });
    return p;
  }
}

async function write_all(fh: FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}
