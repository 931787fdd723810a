// queue/maildir: deliver accepted mail into a maildir, durably.
//
//   queue/maildir <maildir> [<sub-dir pattern>] [<mode>] [meta]
//
// <maildir>      the maildir (`tmp/`, `new/`, `cur/` are created when missing)
// <sub-dir>      optional; with `%l` (local part), `%d` (domain), `%u` (whole address) it names
//                a maildir below <maildir> per recipient, and one copy is written per
//                recipient. In the substituted values every character outside
//                `-A-Za-z0-9+_.,@=` becomes `_`.
// <mode>         three octal digits (default 700) for created directories; files get the
//                same mode without execute bits (770 gives 0660 files).
// meta           the word `meta` (anywhere after <maildir>): also write the transaction's meta
//                (KumoMTA-style metadata: connection meta copied at DATA plus what plugins set,
//                docs/connection.md) as one JSON object to `<maildir>/meta/<file name>.json`,
//                fsync'd before the message is linked into `new/`.
//
// File names are `<time>.P<pid>M<usec>Q<counter>.<hostname>`; the content is
// `Return-Path: <sender>`, `Delivered-To: <recipient>` lines (prepended to the header, so in
// reverse recipient order; one line per copy in per-recipient mode), the header and the body.
//
// Durability (reliability.md 4.4): each copy is written to `tmp/<name>` and fsync'd, every copy
// is then linked into `new/`, each `new/` directory is fsync'd, the `tmp/` names are removed,
// and only then does the plugin return OK (`250 Queued! <Message-Id>`). Messages in flight at
// the same time share the fsync of `new/` (each waits for one that began after its link). Any failure (full
// disk, I/O error, permissions, the hook's time running out) removes what was written,
// including copies already linked into `new/`, and answers `452 queue error (<step>)`.
import fsp, { type FileHandle } from 'node:fs/promises';
import { mkdirSync, chmodSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import {
  DENYSOFT,
  LOGERROR,
  LOGINFO,
  LOGWARN,
  MailHeader,
  OK,
  Plugin,
  PluginArgumentError,
  sync_dir,
  type Address,
  type Transaction,
} from '../../lib/index.js';

/** Process-wide, like qpsmtpd's `$maildir_counter`: with pid and µs it makes names unique. */
let maildir_counter = 0;

/** A failed step: `what` goes into the reply, `file` and `cause` into the log. */
class QueueError extends Error {
  constructor(
    readonly what: string,
    readonly file: string,
    readonly cause_: unknown,
  ) {
    super(`${what}: ${file}: ${describe(cause_)}`);
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

interface Copy {
  tmp: string;
  new: string;
  new_dir: string;
  linked: boolean;
  /** The meta sidecar, once written (`meta` option). */
  meta?: string;
}

const SAFE_CHARS = /[^-A-Za-z0-9+_.,@=]/g;
/** Bytes gathered before a write(2) of the message file. */
const WRITE_BATCH = 256 * 1024;

export default class extends Plugin {
  _maildir = '';
  _subdirs: string | undefined;
  _perms = 0o700;
  _hostname = 'localhost';
  /** `meta` option: write each message's meta to `meta/<name>.json`. */
  _write_meta = false;
  /** Maildirs found complete, and when (shared by the sessions of this plugin). */
  _known_maildirs = new Map<string, number>();

  override register(...all: string[]): void {
    const name = this.plugin_name();
    // `meta` is a flag anywhere after the maildir (a pattern holds %l/%d/%u, a mode is octal)
    const args = all.filter((a, i) => i === 0 || a !== 'meta');
    if (args.length < all.length - 1) {
      throw new PluginArgumentError(`plugin ${name}: 'meta' is given more than once; got '${all.join(' ')}'`);
    }
    this._write_meta = args.length < all.length;
    if (args.length > 3) {
      throw new PluginArgumentError(`plugin ${name}: takes at most 3 arguments (maildir, sub-dir pattern, mode) and the word meta; got '${all.join(' ')}'`);
    }
    const [dir, subdirs, mode] = args;
    if (!dir) throw new PluginArgumentError(`plugin ${name}: maildir directory not specified`);
    if (!/^[-/\w.]+$/.test(dir)) {
      throw new PluginArgumentError(`plugin ${name}: maildir '${dir}' may only contain letters, digits, '_', '-', '.' and '/'`);
    }
    this._maildir = path.resolve(dir);
    if (subdirs !== undefined) {
      if (!/%[ldu]/.test(subdirs)) {
        throw new PluginArgumentError(`plugin ${name}: sub directory '${subdirs}' does not contain a substitution parameter (%l, %d or %u)`);
      }
      this._subdirs = subdirs;
    }
    if (mode !== undefined) {
      if (!/^[0-7]{3}$/.test(mode)) throw new PluginArgumentError(`plugin ${name}: mode '${mode}' is not an octal number (like 700)`);
      this._perms = parseInt(mode, 8) || 0o700; // qpsmtpd: `||= 0700`, so 000 means the default
    }
    this._hostname = /[\w.-]+/.exec(hostname())?.[0] ?? 'localhost';
    if (!this._subdirs) {
      for (const sub of this.subdirs()) {
        const d = path.join(this._maildir, sub);
        const first = mkdirSync(d, { recursive: true, mode: this._perms });
        if (first !== undefined) for (const c of chain(first, d)) chmodSync(c, this._perms);
      }
    }
  }

  /** Mode of message files: the directory mode without execute bits. */
  file_mode(): number {
    return this._perms & 0o666;
  }

  async hook_queue(transaction: Transaction): Promise<number | [number, string]> {
    // The runner resets `this.signal` when the hook times out; keep ours.
    const signal = this.signal;
    const header = transaction.header() ?? transaction.header(new MailHeader())!;
    const recipients = transaction.recipients();
    const jobs: Array<{ maildir: string; addr?: Address }> = this._subdirs
      ? recipients.map((addr) => ({ maildir: this.user_maildir(addr), addr }))
      : [{ maildir: this._maildir }];
    if (!this._subdirs) for (const r of recipients) header.add('Delivered-To', r.address(), 0);

    const attempt = async (): Promise<{ copies: Copy[]; error?: QueueError }> => {
      const copies: Copy[] = [];
      try {
        for (const job of jobs) {
          await this.ensure_maildir(job.maildir, signal);
          copies.push(await this.write_file(transaction, job.maildir, job.addr, signal));
        }
        if (this._write_meta) {
          const meta = `${JSON.stringify(transaction.all_meta())}\n`;
          for (const c of copies) await this.write_meta(c, meta, signal);
          for (const dir of new Set(copies.map((c) => path.dirname(c.meta!)))) {
            check(signal, dir);
            await this.sync_dir(dir, 'fsync meta');
          }
        }
        for (const c of copies) {
          check(signal, c.tmp);
          await this.link_file(c);
        }
        for (const dir of new Set(copies.map((c) => c.new_dir))) {
          check(signal, dir);
          await this.sync_dir(dir, 'fsync new');
        }
        check(signal, this._maildir);
        return { copies };
      } catch (err) {
        return { copies, error: err instanceof QueueError ? err : new QueueError('internal', this._maildir, err) };
      }
    };
    let r = await attempt();
    // A maildir taken as complete (ensure_maildir's memo) may have been removed or broken since:
    // look at it again; if it can be made whole, deliver once more, else report that (mkdir).
    const stale = r.error ? jobs.filter((j) => this._known_maildirs.delete(j.maildir)) : [];
    if (stale.length) {
      let remade = false;
      let broken: QueueError | undefined;
      for (const j of stale) {
        try {
          remade = (await this.ensure_maildir(j.maildir, signal)) || remade;
        } catch (e) {
          broken = e instanceof QueueError ? e : new QueueError('mkdir', j.maildir, e);
          break;
        }
      }
      if (broken || remade) await this.roll_back(r.copies);
      // only a maildir that had to be made again earns a second attempt; other failures stand
      if (broken) r = { copies: [], error: broken };
      else if (remade) r = await attempt();
    }
    const { copies, error: e } = r;
    if (e) {
      this.log(LOGERROR, `queue error (${e.what}): ${e.file}: ${describe(e.cause_)}`);
      await this.roll_back(copies);
      return [DENYSOFT, `queue error (${e.what})`];
    }
    for (const c of copies) {
      await fsp.unlink(c.tmp).catch((e: unknown) => this.log(LOGWARN, `could not unlink ${c.tmp}: ${describe(e)}`));
      this.log(LOGINFO, `queued ${c.new}`);
    }
    const msg_id = (header.get('Message-Id') ?? '').replace(/[\r\n][\s\S]*$/, '');
    return [OK, `Queued! ${msg_id}`];
  }

  /** The per-recipient maildir: the sub-dir pattern with %l, %d, %u substituted. */
  user_maildir(addr: Address): string {
    const user = (addr.user() ?? '').replace(SAFE_CHARS, '_');
    const host = (addr.host() ?? '').replace(SAFE_CHARS, '_');
    const values: Record<string, string> = { l: user, d: host, u: `${user}@${host}` };
    const segments = this._subdirs!.split('/').map((seg) => {
      if (!/%[ldu]/.test(seg)) return seg;
      const s = seg.replace(/%([ldu])/g, (_m, k: string) => values[k]!);
      // a recipient must not name `.`/`..` (or nothing) and so climb out of its directory
      return /^\.*$/.test(s) ? s.replace(/\./g, '_') || '_' : s;
    });
    return path.join(this._maildir, ...segments);
  }

  /** The directories a maildir needs: `cur`, `tmp`, `new`, and `meta` with the meta option. */
  subdirs(): string[] {
    return this._write_meta ? ['cur', 'tmp', 'new', 'meta'] : ['cur', 'tmp', 'new'];
  }

  /** `tmp/`, `new/`, `cur/` (and `meta/`) of `maildir`, created (with `_perms`) and made durable when missing. */
  /** Resolves true when it had to create a directory (false: all there, or known to be). */
  async ensure_maildir(maildir: string, signal: AbortSignal | undefined): Promise<boolean> {
    check(signal, maildir);
    // three mkdir calls (and stats) per message otherwise; checked again after a second, and at
    // once after a failed delivery (hook_queue)
    const known = this._known_maildirs;
    const now = Date.now();
    if (now - (known.get(maildir) ?? -Infinity) < 1000) return false;
    const dirty = new Set<string>();
    for (const sub of this.subdirs()) {
      const d = path.join(maildir, sub);
      let first: string | undefined;
      try {
        first = await fsp.mkdir(d, { recursive: true, mode: this._perms });
        if (first === undefined) continue;
        const created = chain(first, d);
        for (const c of created) await fsp.chmod(c, this._perms);
        dirty.add(path.dirname(first));
        for (const c of created.slice(0, -1)) dirty.add(c);
      } catch (e) {
        throw new QueueError('mkdir', d, e);
      }
    }
    for (const d of dirty) await this.sync_dir(d, 'mkdir');
    if (known.size >= 10000) known.clear(); // per-recipient maildirs: keep the memo small
    known.set(maildir, now);
    return dirty.size > 0;
  }

  /** Writes one copy to `<maildir>/tmp/<unique>`, fsync'd and closed. */
  async write_file(
    transaction: Transaction,
    maildir: string,
    addr: Address | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Copy> {
    const now = performance.timeOrigin + performance.now();
    const time = Math.floor(now / 1000);
    const usec = Math.floor((now % 1000) * 1000);
    const file = `${time}.P${process.pid}M${usec}Q${maildir_counter++}.${this._hostname}`;
    const copy: Copy = {
      tmp: path.join(maildir, 'tmp', file),
      new: path.join(maildir, 'new', file),
      new_dir: path.join(maildir, 'new'),
      linked: false,
    };
    let fh: FileHandle | undefined;
    let created = false;
    let step = 'open';
    try {
      // O_EXCL: never write into a file (or through a symlink) that is already there
      fh = await fsp.open(copy.tmp, 'wx', this.file_mode());
      created = true;
      await fh.chmod(this.file_mode());
      step = 'write';
      let prefix = `Return-Path: ${transaction.sender()?.format() ?? '<>'}\n`;
      if (addr) prefix += `Delivered-To: ${addr.address()}\n`;
      // one write per WRITE_BATCH bytes, not one per chunk: each write is a thread-pool round trip
      const batch: Buffer[] = [Buffer.from(prefix, 'latin1')];
      let batched = batch[0]!.length;
      const out = fh;
      const flush = async (): Promise<void> => {
        if (batched) await write_all(out, batch.length === 1 ? batch[0]! : Buffer.concat(batch, batched));
        batch.length = 0;
        batched = 0;
      };
      for await (const chunk of transaction.message_stream()) {
        check(signal, copy.tmp);
        batch.push(chunk as Buffer);
        batched += (chunk as Buffer).length;
        if (batched >= WRITE_BATCH) await flush();
      }
      check(signal, copy.tmp);
      await flush();
      step = 'fsync';
      await fh.sync();
      step = 'close';
      const h = fh;
      fh = undefined;
      await h.close();
    } catch (e) {
      if (fh) await fh.close().catch(() => undefined);
      if (created) await unlink_quietly(copy.tmp, (m) => this.log(LOGERROR, m));
      if (e instanceof QueueError) throw e;
      throw new QueueError(step, copy.tmp, e);
    }
    return copy;
  }

  /** Writes `<maildir>/meta/<name>.json` (O_EXCL, fsync'd, closed) for the copy `c`. */
  async write_meta(c: Copy, json: string, signal: AbortSignal | undefined): Promise<void> {
    const file = path.join(path.dirname(c.new_dir), 'meta', `${path.basename(c.tmp)}.json`);
    check(signal, file);
    let fh: FileHandle | undefined;
    let step = 'open meta';
    try {
      fh = await fsp.open(file, 'wx', this.file_mode());
      c.meta = file;
      await fh.chmod(this.file_mode());
      step = 'write meta';
      await write_all(fh, Buffer.from(json, 'utf8'));
      step = 'fsync meta';
      await fh.sync();
      step = 'close meta';
      const h = fh;
      fh = undefined;
      await h.close();
    } catch (e) {
      if (fh) await fh.close().catch(() => undefined);
      throw new QueueError(step, file, e);
    }
  }

  /** `tmp/<name>` → `new/<name>`: a hard link (never replaces a file); rename where links fail. */
  async link_file(c: Copy): Promise<void> {
    try {
      await fsp.link(c.tmp, c.new);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw new QueueError('link', c.new, e);
      try {
        await fsp.rename(c.tmp, c.new);
      } catch (e2) {
        throw new QueueError('link', c.new, e2);
      }
    }
    c.linked = true;
  }

  /**
   * fsync of a directory, so the names created in it survive a crash. Messages queued at the
   * same time share the fsync (lib/dir-sync.ts): each still waits for one begun after its link.
   */
  async sync_dir(dir: string, what: string): Promise<void> {
    try {
      await sync_dir(dir);
    } catch (e) {
      throw new QueueError(what, dir, e);
    }
  }

  /** Removes every trace of a failed delivery: linked copies in `new/` and the `tmp/` files. */
  async roll_back(copies: Copy[]): Promise<void> {
    for (const c of copies) {
      if (c.linked) await unlink_quietly(c.new, (m) => this.log(LOGERROR, m));
      await unlink_quietly(c.tmp, (m) => this.log(LOGERROR, m));
      if (c.meta) await unlink_quietly(c.meta, (m) => this.log(LOGERROR, m));
    }
  }
}

/** The directories from `first` (the top one created) down to `last`. */
function chain(first: string, last: string): string[] {
  const out: string[] = [];
  for (let p = last; ; p = path.dirname(p)) {
    out.unshift(p);
    if (p === first || p === path.dirname(p)) break;
  }
  return out;
}

function check(signal: AbortSignal | undefined, file: string): void {
  if (signal?.aborted) throw new QueueError('timeout', file, signal.reason ?? 'hook timed out');
}

async function write_all(fh: FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

async function unlink_quietly(file: string, report: (msg: string) => void): Promise<void> {
  try {
    await fsp.unlink(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') report(`could not remove ${file}: ${describe(e)}`);
  }
}
