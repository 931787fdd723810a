// greylist_lite: a small greylisting plugin for qpsmtpd-ts, written as a third-party plugin
// (it lives outside the package and imports only 'qpsmtpd-ts' and node built-ins).
//
//   greylist_lite [black_timeout S] [grey_timeout S] [white_timeout S] [db_dir DIR]
//                 [reject 0|1] [reject_type temp|perm|disconnect|temp_disconnect] [loglevel N]
//
// Greylisting defers the first delivery attempt of every new (client IP, sender, recipient)
// triplet with a temporary error. Real mail servers retry; most spam software does not.
//
//   black_timeout  seconds a new triplet is deferred (default 300)
//   grey_timeout   seconds after the first attempt within which the retry must come; a later
//                  retry starts over (default 14400, 4 hours)
//   white_timeout  seconds a triplet stays accepted after its last delivery (default 3110400,
//                  36 days)
//   db_dir         where the triplets are kept, one small file each (default
//                  `<spool_dir>/greylist_lite`). The file's mtime is the time of the event,
//                  so the worker processes of one server (and several servers on a shared
//                  directory) see the same state.
//   reject 0       log what would be deferred but defer nothing (a trial run)
//   reject_type    how to defer (default `temp`: 450)
//
// Config file `greylist_lite_whitelist`: one entry per line, never greylisted:
//   192.0.2.7       a client IP address
//   192.0.2.        a client IP prefix (ends with `.` or `:`)
//   @example.org    every sender of that domain
//   a@example.org   one sender
// Anything after the first word of a line is a comment. The file is read on use, so edits
// take effect without a restart.
//
// Relay clients (AUTH, relayclients) and hosts/senders whitelisted by the `whitelist` plugin
// are never greylisted. The plugin only defers or declines at RCPT: load it BEFORE the plugin
// that accepts recipients (rcpt_ok). A message whose sender was delayed gets an `X-Greylist`
// header (at data_post).
//
// Notes it sets: connection note `greylist_lite` (why the client is exempt), transaction note
// `greylist_lite` ({ delayed: seconds }).
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  DECLINED,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  Plugin,
  PluginArgumentError,
  type Address,
  type Transaction,
} from 'qpsmtpd-ts';

type State = 'grey' | 'white';

interface Entry {
  state: State;
  /** Seconds since the file was last written. */
  age: number;
}

export default class GreylistLite extends Plugin {
  // Set in register (load time): shared, read-only, by every session.
  black_timeout = 300;
  grey_timeout = 4 * 3600;
  white_timeout = 36 * 86400;
  db_dir = '';

  override register(...args: string[]): void {
    const a = this.parse_args(args, {
      black_timeout: 300,
      grey_timeout: 4 * 3600,
      white_timeout: 36 * 86400,
      db_dir: undefined,
      reject: 1,
      reject_type: 'temp',
    });
    this.black_timeout = this.seconds(a.black_timeout, 'black_timeout');
    this.grey_timeout = this.seconds(a.grey_timeout, 'grey_timeout');
    this.white_timeout = this.seconds(a.white_timeout, 'white_timeout');
    if (this.grey_timeout < this.black_timeout) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: grey_timeout must not be shorter than black_timeout`);
    }
    this.db_dir = path.resolve(String(a.db_dir ?? path.join(this.spool_dir(), 'greylist_lite')));
    mkdirSync(this.db_dir, { recursive: true, mode: 0o700 });
    this.log(LOGDEBUG, `db_dir ${this.db_dir}`);
  }

  private seconds(value: unknown, name: string): number {
    const s = String(value);
    if (!/^\d{1,10}$/.test(s)) throw new PluginArgumentError(`plugin ${this.plugin_name()}: ${name} must be a number of seconds, not '${s}'`);
    return Number(s);
  }

  /** First word of each `greylist_lite_whitelist` line. */
  whitelist(): string[] {
    return this.config_list('greylist_lite_whitelist').map((l) => l.split(/\s+/)[0]!.toLowerCase());
  }

  hook_connect(): number {
    const ip = this.connection.remote_ip() ?? '';
    const hit = this.whitelist().find((e) => !e.includes('@') && (e === ip || (/[.:]$/.test(e) && ip.startsWith(e))));
    if (hit !== undefined) {
      this.connection.notes('greylist_lite', `client whitelisted (${hit})`);
      this.log(LOGINFO, `skip, client ${ip} whitelisted (${hit})`);
    }
    return DECLINED;
  }

  async hook_rcpt(transaction: Transaction, recipient: Address): Promise<number | [number, string]> {
    // Keep the signal: the runner clears `this.signal` when the hook's time is up.
    const signal = this.signal;
    const exempt = this.connection.notes('greylist_lite');
    if (exempt) {
      this.log(LOGDEBUG, `skip, ${exempt}`);
      return DECLINED;
    }
    if (this.is_immune()) return DECLINED;

    const from = (transaction.sender()?.address() ?? '').toLowerCase();
    const domain = from.includes('@') ? from.slice(from.lastIndexOf('@')) : '';
    const list = this.whitelist();
    if (from && (list.includes(from) || (domain && list.includes(domain)))) {
      this.log(LOGINFO, `skip, sender ${from} whitelisted`);
      return DECLINED;
    }

    const ip = this.connection.remote_ip() ?? '';
    const to = recipient.address().toLowerCase();
    const file = path.join(this.db_dir, createHash('sha256').update(`${ip}\0${from}\0${to}`).digest('hex'));
    const triplet = `${ip} <${from}> <${to}>`;
    try {
      const entry = await this.lookup(file, signal);
      if (entry?.state === 'white' && entry.age <= this.white_timeout) {
        await this.store(file, 'white', signal);
        this.log(LOGINFO, `pass, known triplet ${triplet}`);
        return DECLINED;
      }
      if (entry?.state === 'grey' && entry.age >= this.black_timeout && entry.age <= this.grey_timeout) {
        await this.store(file, 'white', signal);
        const note = (transaction.notes('greylist_lite') as { delayed: number } | undefined) ?? { delayed: 0 };
        transaction.notes('greylist_lite', { delayed: Math.max(note.delayed, entry.age) });
        this.log(LOGINFO, `pass, ${triplet} retried after ${entry.age} s`);
        return DECLINED;
      }
      if (entry?.state === 'grey' && entry.age < this.black_timeout) {
        return this.get_reject('greylisted, please try again later', `${triplet} retried after ${entry.age} s`);
      }
      // new, or expired: start (again)
      await this.store(file, 'grey', signal);
      return this.get_reject('greylisted, please try again later', `new triplet ${triplet}`);
    } catch (err) {
      if (signal?.aborted) throw err;
      // fail open: a broken database must not stop mail
      this.log(LOGERROR, `error, ${file}: ${err instanceof Error ? err.message : String(err)}`);
      return DECLINED;
    }
  }

  hook_data_post(transaction: Transaction): number {
    const note = transaction.notes('greylist_lite') as { delayed: number } | undefined;
    if (note) {
      transaction.header()?.add('X-Greylist', `delayed ${note.delayed} seconds by greylist_lite at ${this.config('me') ?? 'localhost'}`, 0);
    }
    return DECLINED;
  }

  /** The triplet's state and age, or undefined when it was never seen. */
  async lookup(file: string, signal?: AbortSignal): Promise<Entry | undefined> {
    try {
      const [text, st] = await Promise.all([readFile(file, { encoding: 'utf8', signal }), stat(file)]);
      const state: State = text.trim() === 'white' ? 'white' : 'grey';
      return { state, age: Math.max(0, Math.floor((Date.now() - st.mtimeMs) / 1000)) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async store(file: string, state: State, signal?: AbortSignal): Promise<void> {
    await writeFile(file, `${state}\n`, { mode: 0o600, signal });
  }
}
