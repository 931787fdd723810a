// queue/exim-bsmtp: hand every accepted message to Exim as batched SMTP (`exim -bS`).
//
//   queue/exim-bsmtp [exim_path <path>] [loglevel N]
//
// exim_path   the Exim BSMTP receiver, default `/usr/sbin/rsmtp`; `-bS` is always added
//             (redundant for rsmtp, harmless). A path that is not executable is reported at
//             start-up (LOGERROR) and every message then gets a 451.
//
// The message is written as a BSMTP file into the spool directory (`exim-bsmtp.<pid>.XXXXXX`,
// mode 0600): `HELO <hostname>`, `MAIL FROM:<sender>`, one `RCPT TO:<rcpt>` per recipient,
// `DATA`, the header and body with every line that starts with `.` dot-stuffed, `.`, `QUIT`.
// Then `<exim_path> -bS < file` runs; the file is removed afterwards.
//
// Replies: success → `250 Queued!`. Exim prints nothing in BSMTP mode unless something is
// wrong; its last `NNN text` line decides: a 5xx → `552 <text>`, a 4xx → `452 <text>` (qpsmtpd
// answered 552 for both); any other output or a non-zero exit → `451 Internal error enqueuing
// mail`. No parsed header → `552 Mail unqueuable`. Exim's time is limited by the hook timeout.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as FS } from 'node:fs';
import fsp, { type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { DECLINED, DENY, DENYSOFT, LOGDEBUG, LOGERROR, LOGINFO, OK, Plugin, type Transaction } from '../../lib/index.js';
import { DotStuffer } from '../../lib/smtp/dot-stuff.js';

/** How much of exim's output is kept. */
const MAX_OUTPUT = 64 * 1024;

export default class extends Plugin {
  _exim_path = '/usr/sbin/rsmtp';

  override register(...args: string[]): void {
    const a = this.parse_args(args, { exim_path: undefined });
    this._exim_path = a.exim_path || '/usr/sbin/rsmtp';
    try {
      accessSync(this._exim_path, FS.X_OK);
    } catch {
      this.log(LOGERROR, `Could not find exim at ${this._exim_path}; please set exim_path in config/plugins`);
    }
  }

  async hook_queue(transaction: Transaction): Promise<number | [number, string]> {
    const signal = this.signal;
    const header = transaction.header();
    if (!header) {
      this.log(LOGERROR, "No header parsed for transaction; can't enqueue");
      return [DENY, 'Mail unqueuable'];
    }
    let tmpfn: string | undefined;
    try {
      try {
        tmpfn = await this.write_bsmtp(transaction, signal);
      } catch (e) {
        this.log(LOGERROR, `Couldn't write the BSMTP file: ${(e as Error).message}`);
        return [DECLINED, 'Internal error enqueueing mail'];
      }
      const cmd = `${this._exim_path} -bS < ${tmpfn}`;
      this.log(LOGDEBUG, `executing cmd ${cmd}`);
      const start = Date.now();
      const { output, code, sig, error } = await this.run_exim(tmpfn, signal);
      if (error) {
        this.log(LOGERROR, `Could not execute ${this._exim_path}: ${error.message}`);
        return [DECLINED, 'Internal error enqueuing mail'];
      }
      let bsmtp_error: number | undefined;
      let bsmtp_msg = '';
      for (const line of output.split('\n')) {
        const l = line.replace(/\r$/, '');
        if (!l) continue;
        this.log(LOGERROR, `exim: ${l}`);
        const m = /(\d\d\d)\s(\S.*)/.exec(l);
        if (m) [bsmtp_error, bsmtp_msg] = [Number(m[1]), m[2]!];
      }
      this.log(LOGDEBUG, `BSMTP finished (${Math.round((Date.now() - start) / 1000)} sec)`);
      this.log(LOGDEBUG, `Exitcode from exim: ${sig ?? code}`);
      if (bsmtp_error !== undefined && bsmtp_error >= 400 && bsmtp_error < 600) {
        this.log(LOGERROR, `BSMTP enqueue failed; response ${bsmtp_error} (${bsmtp_msg})`);
        return [bsmtp_error < 500 ? DENYSOFT : DENY, bsmtp_msg];
      }
      if (sig || code !== 0 || bsmtp_error !== undefined) {
        this.log(LOGERROR, `BSMTP enqueue failed; exitcode ${sig ?? code} from ${this._exim_path} -bS`);
        return [DECLINED, 'Internal error enqueuing mail'];
      }
      this.log(LOGINFO, 'Enqueued to exim via BSMTP');
      return [OK, 'Queued!'];
    } finally {
      if (tmpfn) {
        await fsp.unlink(tmpfn).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'ENOENT') this.log(LOGERROR, `unlink: ${tmpfn}: ${e.message}`);
        });
      }
    }
  }

  /** Writes the BSMTP batch into the spool dir; returns its name. */
  async write_bsmtp(transaction: Transaction, signal: AbortSignal | undefined): Promise<string> {
    const dir = this.spool_dir();
    let fh: FileHandle | undefined;
    let file = '';
    for (let i = 0; !fh; i++) {
      file = path.join(dir, `exim-bsmtp.${process.pid}.${randomBytes(4).toString('hex')}`);
      try {
        fh = await fsp.open(file, 'wx', 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i > 10) throw e;
      }
    }
    try {
      const sender = transaction.sender()?.address() || '';
      let head = `HELO ${hostname()}\nMAIL FROM:<${sender}>\n`;
      for (const r of transaction.recipients()) head += `RCPT TO:<${r.address() || ''}>\n`;
      head += 'DATA\n';
      await write_all(fh, Buffer.from(head, 'utf8'));
      const stuffer = new DotStuffer(false);
      for await (const chunk of transaction.message_stream()) {
        if (signal?.aborted) throw new Error('hook timed out');
        await write_all(fh, stuffer.encode(chunk as Buffer));
      }
      await write_all(fh, Buffer.concat([stuffer.finish(), Buffer.from('QUIT\n')]));
      await fh.close();
      fh = undefined;
      return file;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      await fsp.unlink(file).catch(() => undefined);
      throw e;
    }
  }

  /** `<exim_path> -bS` with the file on stdin; its stdout (stderr goes to the log at LOGDEBUG). */
  run_exim(file: string, signal: AbortSignal | undefined): Promise<{ output: string; code: number | null; sig: NodeJS.Signals | null; error?: Error }> {
    return new Promise((resolve) => {
      void fsp.open(file, 'r').then(
        (input) => {
          let output = '';
          let errors = '';
          const child = spawn(this._exim_path, ['-bS'], { stdio: [input.fd, 'pipe', 'pipe'] });
          void input.close();
          child.stdout!.on('data', (d: Buffer) => {
            if (output.length < MAX_OUTPUT) output += d.toString('latin1');
          });
          child.stderr!.on('data', (d: Buffer) => {
            if (errors.length < MAX_OUTPUT) errors += d.toString('latin1');
          });
          const on_abort = () => child.kill('SIGKILL');
          signal?.addEventListener('abort', on_abort, { once: true });
          let settled = false;
          const finish = (r: { output: string; code: number | null; sig: NodeJS.Signals | null; error?: Error }) => {
            if (settled) return;
            settled = true;
            signal?.removeEventListener('abort', on_abort);
            if (errors.trim()) this.log(LOGDEBUG, `exim stderr: ${errors.trim()}`);
            resolve(r);
          };
          child.once('error', (error) => finish({ output, code: null, sig: null, error }));
          child.once('close', (code, sig) => finish({ output, code, sig }));
        },
        (error: Error) => resolve({ output: '', code: null, sig: null, error }),
      );
    });
  }
}

/** Doubles a `.` at the start of every line (BSMTP uses LF line ends, as stored). */

async function write_all(fh: FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}
