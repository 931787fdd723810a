// logging/file: qpsmtpd's log-to-file (or to a command's stdin) logging plugin.
//
//   logging/file [loglevel L] [nosplit] [reopen] [tsformat FMT] <path or |command>
//
// The path (or command) may hold strftime escapes and `%i` (the session id set at connect, or
// `parent` outside a session); the output is reopened whenever the expanded name changes.
// Lines are `<tsformat> <hostname>[<pid>]: <message>`; in an SMTP session the message starts
// with the connection's uuid (`<uuid> <message>`).
//
// One process serves many sessions, each through its own view of this plugin: outputs are
// therefore shared by name (and reference-counted) across the views, and every write goes
// through a non-blocking stream. `close()` flushes and closes everything (shutdown, plugin
// dropped); `reopen()` closes the outputs so the next line opens them afresh (HUP, logrotate).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, openSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { DECLINED, LOGWARN, Plugin, PluginArgumentError, format_log_line, parse_log_level } from '../../lib/index.js';
import { strftime } from '../../lib/strftime.js';

/** Bytes a slow output may have queued before further lines are dropped (and counted). */
const MAX_BACKLOG = 8 * 1024 * 1024;
/** After an output could not be opened, or broke, it is not retried for this long. */
const RETRY_MS = 1000;
/** How long `close()` waits for a log command to exit after its stdin was closed. */
const COMMAND_EXIT_MS = 5000;

type Reporter = (msg: string) => void;

interface Notes {
  notes(key: string, value?: unknown): any;
}

/** One open log file or log command, shared by every session whose expanded name matches. */
class Output {
  refs = 0;
  closed = false;
  private ending?: Promise<void>;
  private dropped = 0;
  private readonly exited?: Promise<void>;

  constructor(
    readonly name: string,
    private readonly stream: Writable,
    private readonly child: ChildProcess | undefined,
    private readonly report: Reporter,
    private readonly on_fail: (o: Output) => void,
  ) {
    stream.on('error', (err: Error) => this.fail(`error writing log output ${this.describe()}: ${err.message}`));
    if (child) {
      this.exited = new Promise((resolve) => {
        child.once('close', () => resolve());
        child.once('error', () => resolve());
      });
      child.on('error', (err: Error) => this.fail(`error running log command ${name}: ${err.message}`));
      child.once('exit', (code, signal) => {
        if (!this.ending) this.fail(`log command ${name} exited (${signal ?? `status ${code}`})`);
      });
    }
  }

  describe(): string {
    return this.child ? `to command ${this.name}` : `to path ${this.name}`;
  }

  write(line: string): void {
    if (this.closed) return;
    if (this.stream.writableLength > MAX_BACKLOG) {
      if (this.dropped++ === 0) this.report(`log output ${this.describe()} is not keeping up; dropping lines`);
      return;
    }
    if (this.dropped) {
      this.report(`log output ${this.describe()}: ${this.dropped} lines were dropped`);
      this.dropped = 0;
    }
    this.stream.write(line);
  }

  private fail(msg: string): void {
    if (this.closed) return;
    this.closed = true;
    this.report(msg);
    this.stream.destroy();
    this.on_fail(this);
  }

  /** Flushes and closes; for a command, waits (a while) for it to exit. */
  end(): Promise<void> {
    if (this.ending) return this.ending;
    this.closed = true;
    this.ending = (async () => {
      if (!this.stream.destroyed) this.stream.end();
      await finished(this.stream).catch(() => undefined);
      if (this.exited) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.exited, new Promise<void>((r) => (timer = setTimeout(r, COMMAND_EXIT_MS)))]);
        clearTimeout(timer);
      }
    })();
    return this.ending;
  }
}

function open_file(path: string): Writable {
  // Opened synchronously (once per file, not per line) so a bad path is reported at once.
  const fd = openSync(path, 'a', 0o666);
  return createWriteStream(path, { fd });
}

function open_command(command: string): { stream: Writable; child: ChildProcess } {
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['pipe', 'inherit', 'inherit'] });
  // Neither keeps the process alive by itself; pending writes still do.
  child.unref();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  return { stream: child.stdin!, child };
}

/** What every session's view of one plugin instance shares. */
class SharedOutputs {
  readonly outputs = new Map<string, Output>();
  readonly live = new Set<Output>();
  readonly ending = new Set<Promise<void>>();
  readonly failed = new Map<string, number>();
  latest?: Output;
  counter = 0;
  closed = false;

  constructor(
    private readonly pipe: boolean,
    private readonly report: Reporter,
  ) {}

  acquire(name: string, fresh: boolean): Output | undefined {
    if (!fresh) {
      const o = this.outputs.get(name);
      if (o && !o.closed) {
        o.refs++;
        return o;
      }
    }
    const now = Date.now();
    const failed = this.failed.get(name);
    if (failed !== undefined && now - failed < RETRY_MS && now >= failed) return undefined;
    let o: Output;
    try {
      const on_fail = (x: Output) => this.broken(x);
      if (this.pipe) {
        const { stream, child } = open_command(name);
        o = new Output(name, stream, child, this.report, on_fail);
      } else {
        o = new Output(name, open_file(name), undefined, this.report, on_fail);
      }
    } catch (err) {
      this.failed.set(name, now);
      this.prune_failed(now);
      this.report(`Error opening log output ${this.pipe ? 'to command' : 'to path'} ${name}: ${(err as Error).message}`);
      return undefined;
    }
    this.failed.delete(name);
    o.refs = 1;
    this.outputs.set(name, o);
    this.live.add(o);
    const prev = this.latest;
    this.latest = o;
    if (prev && prev !== o && prev.refs <= 0) this.retire(prev);
    return o;
  }

  /** A session stops using `o`; an unused output closes unless it is the newest one (or `eager`). */
  release(o: Output, eager: boolean): void {
    o.refs--;
    if (o.refs <= 0 && (eager || o.closed || o !== this.latest)) this.retire(o);
  }

  private broken(o: Output): void {
    this.failed.set(o.name, Date.now());
    if (this.outputs.get(o.name) === o) this.outputs.delete(o.name);
  }

  private prune_failed(now: number): void {
    if (this.failed.size < 100) return;
    for (const [k, t] of this.failed) if (now - t >= RETRY_MS) this.failed.delete(k);
  }

  retire(o: Output): void {
    if (this.outputs.get(o.name) === o) this.outputs.delete(o.name);
    if (this.latest === o) this.latest = undefined;
    if (!this.live.delete(o)) return;
    const p = o.end();
    this.ending.add(p);
    void p.finally(() => this.ending.delete(p));
  }

  async close_all(): Promise<void> {
    for (const o of [...this.live]) this.retire(o);
    await Promise.all([...this.ending]);
  }
}

/** Per-session holder of the output in use, released when the session's view is collected. */
interface Slot {
  out?: Output;
}

const abandoned = new FinalizationRegistry<{ shared: SharedOutputs; slot: Slot }>(({ shared, slot }) => {
  if (slot.out) shared.release(slot.out, false);
  slot.out = undefined;
});

export default class extends Plugin {
  _loglevel = LOGWARN;
  _tsformat = '%a %b %d %T %Y'; // qpsmtpd's default, close to Perl's scalar localtime
  _nosplit = false;
  _reopen = false;
  _log_pipe = false;
  _log_format = '';
  _hostname = hostname();
  _shared!: SharedOutputs;
  _slot?: Slot;

  override register(...args: string[]): void {
    const bad = (what: string) =>
      new PluginArgumentError(`plugin ${this.plugin_name()}: ${what} (arguments: '${args.join(' ')}')`);
    const rest = [...args];
    while (rest.length) {
      const key = rest[0]!.toLowerCase();
      if (key === 'loglevel') {
        rest.shift();
        const v = rest.shift();
        if (v === undefined) throw bad("argument 'loglevel' needs a value");
        const level = parse_log_level(v);
        if (level === undefined) throw bad(`invalid loglevel '${v}' (0-7 or a LOG* name)`);
        this._loglevel = level;
      } else if (key === 'nosplit') {
        rest.shift();
        this._nosplit = true;
      } else if (key === 'reopen') {
        rest.shift();
        this._reopen = true;
      } else if (key === 'tsformat') {
        rest.shift();
        const v = rest.shift();
        if (v === undefined) throw bad("argument 'tsformat' needs a value");
        this._tsformat = v;
      } else {
        break;
      }
    }
    if (!rest.length || !rest[0]) throw bad('missing the log file path or |command');
    const output = rest.join(' ');
    const m = /^\s*\|(.*)$/s.exec(output);
    if (m) {
      if (!m[1]!.trim()) throw bad(`empty log command '${output}'`);
      this._log_pipe = true;
      this._log_format = m[1]!;
    } else {
      this._log_format = output;
    }
    const runtime = this.qp.runtime;
    const name = this.plugin_name();
    const report: Reporter = (msg) => runtime.write_log(format_log_line(process.pid, undefined, name, msg));
    this._shared = new SharedOutputs(this._log_pipe, report);
  }

  /** Flushes and closes every output; the plugin logs nothing afterwards. */
  async close(): Promise<void> {
    this._shared.closed = true;
    await this._shared.close_all();
  }

  /** Closes every output (flushed); the next line opens its file or command anew (HUP). */
  async reopen(): Promise<void> {
    await this._shared.close_all();
  }

  hook_connect(transaction: Notes): number {
    const id = `${String(Math.floor(Date.now() / 1000)).padStart(8, '0')}-${String(process.pid).padStart(4, '0')}-${++this._shared.counter}`;
    this.set_note(transaction, 'file-logged-this-session', 0);
    this.set_note(transaction, 'file-reopened-this-session', 0);
    this.set_note(transaction, 'logging-session-id', id);
    return DECLINED;
  }

  /** The session is over: let go of its output (an unused one is closed, see SharedOutputs). */
  hook_post_connection(): number {
    const slot = this._slot;
    if (slot && Object.hasOwn(this, '_slot') && slot.out) {
      this._shared.release(slot.out, this._reopen);
      slot.out = undefined;
    }
    return DECLINED;
  }

  hook_logging(transaction: Notes | undefined, level: number, _hook?: string, plugin?: string, text = ''): number {
    if (level > this._loglevel) return DECLINED;
    if (plugin !== undefined && plugin === this.plugin_name()) return DECLINED;
    if (this._shared.closed) return DECLINED;
    const slot = this.slot();
    const session = this.in_session();
    // Look for a new output name unless nosplit holds this session to the one it started with.
    if (!slot.out || slot.out.closed || !this._nosplit || !session || !this.note(transaction, 'file-logged-this-session')) {
      if (!this.maybe_reopen(slot, transaction, session)) return DECLINED;
      if (session) this.set_note(transaction, 'file-logged-this-session', 1);
    }
    // lines of an SMTP session carry its uuid, as the built-in logger's do
    const uuid = this.qp.log_uuid();
    slot.out!.write(`${strftime(this._tsformat)} ${this._hostname}[${process.pid}]: ${uuid ? `${uuid} ` : ''}${text}\n`);
    return DECLINED;
  }

  /** The output name now: strftime escapes and `%i` expanded. */
  log_output(transaction?: Notes): string {
    const id = this.note(transaction, 'logging-session-id') || 'parent';
    return strftime(this._log_format, new Date(), { extra: { i: String(id) } });
  }

  /** Switches the session to the output named now; false if it cannot be opened. */
  private maybe_reopen(slot: Slot, transaction: Notes | undefined, session: boolean): boolean {
    const name = this.log_output(transaction);
    const cur = slot.out;
    const force = this._reopen && session && !this.note(transaction, 'file-reopened-this-session');
    if (cur && !cur.closed && cur.name === name && !force) return true;
    const next = this._shared.acquire(name, force);
    if (cur) this._shared.release(cur, this._reopen);
    slot.out = next;
    if (!next) return false;
    if (session) this.set_note(transaction, 'file-reopened-this-session', 1);
    return true;
  }

  /** This session's holder of its current output (created on the session's own view). */
  private slot(): Slot {
    if (!this._slot || !Object.hasOwn(this, '_slot')) {
      const slot: Slot = {};
      this._slot = slot;
      abandoned.register(this, { shared: this._shared, slot });
    }
    return this._slot;
  }

  /** Inside an SMTP session: hook_connect gave it an id. */
  private in_session(): boolean {
    return this.connection?.notes('logging-session-id') !== undefined;
  }

  // qpsmtpd keeps these notes in the transaction, which MAIL and RSET replace; the connection
  // keeps them for the whole session, so they are read from there first.
  private note(transaction: Notes | undefined, key: string): any {
    const v = this.connection?.notes(key);
    return v !== undefined ? v : transaction?.notes?.(key);
  }

  private set_note(transaction: Notes | undefined, key: string, value: unknown): void {
    transaction?.notes?.(key, value);
    this.connection?.notes(key, value);
  }
}
