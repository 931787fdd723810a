// One SMTP conversation: qpsmtpd's Qpsmtpd::SMTP state machine over a pull-based line reader.
// It works on any Duplex stream, so tests drive it in-process; TCP, TLS and PROXY wrap it.
import type { Duplex } from 'node:stream';
import {
  DECLINED,
  DENY,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  DONE,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  LOGNOTICE,
  OK,
} from '../constants.js';
import { Address } from '../address.js';
import type { Connection } from '../connection.js';
import { FAULT_MESSAGE, describe_error, type HookResult } from '../hooks.js';
import { Qpsmtpd } from '../qpsmtpd.js';
import type { Runtime } from '../runtime.js';
import { auth_command, auth_mechanisms } from './auth.js';
import { parse_command, params_object } from './command.js';
import { data_command } from './data.js';
import { LineReader, type ReaderEvent, type ReaderMode } from './line-reader.js';
import { load_listener_parameters, type ListenerInfo } from './listener.js';
import { is_trusted_proxy, proxy_capabilities, xclient_command, xclient_helo, xforward_begin, xforward_command, xforward_reset } from './xclient.js';
import { deny_table, format_reply, has_text, is_denial, message_or, reply_lines, type DenyTable } from './reply.js';

export type { DenyTable } from './reply.js';

const CONNECT_DENIED = deny_table([550, 'Connection from you denied, bye bye.'], [450, 'Connection from you temporarily denied, bye bye.']);
const HELLO_DENIED = deny_table([550, 'Access denied'], [450, 'Access temporarily denied']);
const RCPT_DENIED = deny_table([550, 'relaying denied'], [450, 'relaying denied'], [550, 'delivery denied'], [421, 'relaying denied']);

export interface SessionOptions {
  /** The stream is already TLS (SMTPS, port 465). */
  implicit_tls?: boolean;
  /** LMTP (RFC 2033): LHLO instead of HELO/EHLO, one reply per recipient after DATA. */
  lmtp?: boolean;
  /** The listener the connection came in on (for the listener_parameters hook). */
  listener?: ListenerInfo;
  /** Values of the listener_parameters hook, already run (implicit TLS needs them first). */
  listener_params?: Record<string, string[]>;
  /** `--no-rdns`: an XCLIENT address without NAME is not looked up. */
  no_rdns?: boolean;
  /** XCLIENT names a new client address: may it have one more session (per-IP limit)? */
  readdress?: (ip: string) => Promise<boolean>;
}

/** Non-ASCII in an address: only with SMTPUTF8 (RFC 6531 3.4). */
const NON_ASCII = /[^\x00-\x7f]/;

const KNOWN_COMMANDS = ['ehlo', 'helo', 'rset', 'mail', 'rcpt', 'data', 'help', 'vrfy', 'noop', 'quit', 'xclient', 'xforward'];
/** RFC 2920 3.1: these must end a pipelined group; input behind them is a synchronization error. */
const GROUP_ENDERS = new Set(['ehlo', 'helo', 'lhlo', 'data']);
const JUNK = new Set(['noop', 'rset', 'vrfy', 'help']);
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Unread input the reader may hold before the socket is paused (backpressure while hooks run). */
const READER_HIGH_WATER = 64 * 1024;

export class SessionClosed extends Error {}

export class SmtpSession extends Qpsmtpd {
  readonly reader = new LineReader();
  stream: Duplex;
  readonly opts: SessionOptions;
  /** Commands the session accepts; `auth` joins after an EHLO that offered AUTH. */
  readonly commands = new Set(KNOWN_COMMANDS);
  command_counter = 0;
  errors = 0;
  junk_commands = 0;
  auth_failures = 0;
  /** The last command line received and the last reply sent (for logs and plugins). */
  current_line = '';
  last_response = '';
  /** PLAIN's authorization identity of the last AUTH. */
  _authz_id?: string;
  closed = false;
  /** LMTP: the recipients the next reply is sent for, one copy each (set by DATA after its 354). */
  lmtp_fanout?: Address[];
  private prepared = false;
  private eof = false;
  private wake?: () => void;
  private interrupt?: (err: Error) => void;
  private stop_requested = false;
  private waiting_for_command = false;
  private deadline = 0;
  /** Unread input when the running command sent its first reply (-1: no reply yet). */
  private buffered_at_reply = -1;
  private disconnected = false;
  private tls_socket?: { getCipher(): { name: string; version?: string } | null; getProtocol?(): string | null };

  constructor(runtime: Runtime, stream: Duplex, connection: Connection, opts: SessionOptions = {}) {
    super(runtime, connection);
    this.stream = stream;
    this.opts = opts;
    if (opts.lmtp) this.commands.add('lhlo');
    if (opts.implicit_tls) this.tls_socket = stream as never;
    this.attach(stream);
  }

  // -- transport -------------------------------------------------------------------------------

  // The socket keeps flowing into the reader (no pause/resume per command); only a client
  // that sends faster than hooks consume is paused, at READER_HIGH_WATER buffered bytes.
  private readonly on_data = (chunk: Buffer) => {
    this.reader.push(chunk);
    if (this.reader.buffered() >= READER_HIGH_WATER) this.stream.pause();
    this.wake?.();
  };
  private readonly on_end = () => {
    if (!this.closed) this.connection.remote_closed(true);
    this.eof = true;
    this.wake?.();
  };

  private attach(stream: Duplex): void {
    stream.pause();
    stream.on('data', this.on_data);
    stream.on('end', this.on_end);
    stream.on('close', this.on_end);
    stream.on('error', (err) => {
      this.log(LOGDEBUG, `connection error: ${err.message}`);
      this.on_end();
    });
  }

  /** Stops reading the current stream (STARTTLS hands it to the TLS layer). */
  detach(): Duplex {
    const s = this.stream;
    s.off('data', this.on_data);
    s.off('end', this.on_end);
    s.off('close', this.on_end);
    s.pause();
    return s;
  }

  /** Continues the conversation on a new stream (the TLS socket after STARTTLS). */
  reattach(stream: Duplex, tls_socket?: SmtpSession['tls_socket']): void {
    this.stream = stream;
    this.tls_socket = tls_socket;
    this.eof = false;
    this.attach(stream);
  }

  tls_active(): boolean {
    return this.tls_socket !== undefined;
  }

  tls_cipher(): string {
    return this.tls_socket?.getCipher()?.name ?? '';
  }

  /** A session's log lines carry its connection's uuid (log_id(): `<pid> <uuid>`). */
  override log_uuid(): string {
    return this.connection.uuid();
  }

  tls_protocol(): string {
    return this.tls_socket?.getProtocol?.() ?? '';
  }

  /** Seconds to wait for the client: `timeoutsmtpd`, `timeout`, 1200 (DATA uses `timeout`). */
  timeout_ms(in_data = false): number {
    const v = in_data ? this.config('timeout') : (this.config('timeoutsmtpd') ?? this.config('timeout'));
    return (Number(v) || 1200) * 1000;
  }

  // set before every command and DATA chunk: looked up at most once a second (as config files are checked)
  private timeouts = { at: -Infinity, command: 0, data: 0 };

  /** Starts the client's time budget for the next command (or the next DATA chunk). */
  set_deadline(in_data = false): void {
    const now = Date.now();
    const t = this.timeouts;
    if (now - t.at >= 1000) {
      t.command = this.timeout_ms(false);
      t.data = this.timeout_ms(true);
      t.at = now;
    }
    this.deadline = now + (in_data ? t.data : t.command);
  }

  /** The next input event in `mode`, waiting (within the deadline) for bytes; null at EOF. */
  async next_event(mode: ReaderMode): Promise<ReaderEvent | null> {
    this.reader.mode = mode;
    for (;;) {
      const ev = this.reader.next();
      if (ev) return ev;
      if (this.eof || this.closed) return null;
      await this.wait_for_input();
    }
  }

  private wait_for_input(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.wake = () => {
        this.wake = this.interrupt = undefined;
        resolve();
      };
      this.interrupt = (err) => {
        this.wake = this.interrupt = undefined;
        reject(err);
      };
      this.arm_deadline();
      if (this.stream.isPaused()) this.stream.resume();
    });
  }

  // One timer per session, not one per wait: it is moved only when the deadline comes earlier
  // than it is set for; when it fires early (the deadline moved on), it is set again.
  private deadline_timer?: NodeJS.Timeout;
  private deadline_timer_at = Infinity;

  private arm_deadline(): void {
    if (this.deadline_timer && this.deadline_timer_at <= this.deadline) return;
    clearTimeout(this.deadline_timer);
    this.deadline_timer_at = this.deadline;
    this.deadline_timer = setTimeout(this.on_deadline_timer, Math.max(0, this.deadline - Date.now()));
  }

  private readonly on_deadline_timer = () => {
    this.deadline_timer = undefined;
    this.deadline_timer_at = Infinity;
    if (!this.interrupt) return; // not waiting for the client: the next wait sets it again
    if (Date.now() < this.deadline) this.arm_deadline();
    else this.interrupt(new TimeoutSignal());
  };

  /**
   * True if the client sends anything within `wait_ms` without being asked (earlytalker).
   * Bytes that arrive stay buffered for the normal command reading.
   */
  async input_pending(wait_ms: number): Promise<boolean> {
    if (this.reader.buffered() > 0) return true;
    if (this.eof || this.closed) return false;
    const saved = this.deadline;
    this.deadline = Date.now() + wait_ms;
    try {
      await this.wait_for_input();
    } catch (err) {
      if (!(err instanceof TimeoutSignal)) throw err;
    } finally {
      this.deadline = saved;
      this.stream.pause();
    }
    return this.reader.buffered() > 0;
  }

  /** Writes a reply (qpsmtpd respond): lines after the first empty one are dropped. */
  respond(code: number, ...lines: unknown[]): boolean {
    const msgs = reply_lines(lines);
    if (!msgs.length) return true;
    const fan = this.lmtp_fanout;
    if (fan) {
      // LMTP: the reply that ends a message is one reply per accepted recipient (RFC 2033 4.2)
      this.lmtp_fanout = undefined;
      let sent = true;
      for (const rcpt of fan) sent = this.respond(code, `${rcpt.format()} ${msgs[0]}`, ...msgs.slice(1)) && sent;
      return sent;
    }
    if (this.closed || this.stream.destroyed || !this.stream.writable) {
      this.log(LOGERROR, 'Lost connection to client, cannot send response.');
      return false;
    }
    if (this.logs(LOGINFO)) for (const m of msgs) this.log(LOGINFO, `${code} ${m}`);
    if (code >= 400) this.errors++;
    if (this.buffered_at_reply < 0) this.buffered_at_reply = this.reader.buffered();
    this.last_response = `${code} ${msgs[msgs.length - 1]}`;
    this.connection.last_response(this.last_response);
    if (code >= 400) this.connection.last_error(this.last_response);
    this.stream.write(format_reply(code, msgs));
    return true;
  }

  /** Waits while the client is not reading our replies (bounded by its deadline). */
  private async drain(): Promise<void> {
    const s = this.stream as Duplex & { writableNeedDrain?: boolean };
    if (!s.writableNeedDrain || this.closed) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TimeoutSignal()), Math.max(0, this.deadline - Date.now()));
      const done = () => {
        clearTimeout(timer);
        s.off('drain', done);
        s.off('close', done);
        resolve();
      };
      s.on('drain', done);
      s.on('close', done);
    });
  }

  // -- the conversation --------------------------------------------------------------------------

  /** Runs the whole session: greeting, commands until QUIT/EOF/timeout, then the end hooks. */
  async run(): Promise<void> {
    try {
      await this.start_conversation();
      while (!this.closed) {
        this.set_deadline();
        if ((this.stream as { writableNeedDrain?: boolean }).writableNeedDrain) await this.drain();
        if (this.stop_requested) throw new ShutdownSignal();
        this.waiting_for_command = true;
        // a command already buffered is taken without a wait (most of a pipelined group)
        this.reader.mode = 'command';
        const ev = this.reader.next() ?? (await this.next_event('command'));
        this.waiting_for_command = false;
        if (!ev) break;
        await this.handle_event(ev);
      }
    } catch (err) {
      if (err instanceof ShutdownSignal) {
        this.respond(421, '4.3.2 Service shutting down, closing connection');
        await this.disconnect();
      } else if (err instanceof TimeoutSignal) {
        this.log(LOGINFO, 'client timed out');
        this.respond(421, '4.4.2 Connection Timed Out');
        await this.disconnect();
      } else if (!(err instanceof SessionClosed)) {
        this.log(LOGERROR, `session failed: ${describe_error(err)}`);
        this.respond(421, `4.3.0 ${FAULT_MESSAGE}`);
        await this.disconnect();
      }
    } finally {
      await this.finish();
    }
  }

  /**
   * Per-connection set-up before the greeting (and again after XCLIENT): the listener parameters
   * (docs/listeners.md); on the first call, whether the client may use XCLIENT/XFORWARD.
   */
  async prepare(): Promise<void> {
    const c = this.connection;
    if (!this.prepared && this.opts.listener_params) this.listener_params = this.opts.listener_params;
    else await load_listener_parameters(this, this.opts.listener);
    if (!this.prepared) c.proxy({ ...c.proxy(), allowed: is_trusted_proxy(this, c.remote_ip()) });
    this.prepared = true;
    // the name this server gives itself here may be the listener's own
    const me = this.config('me');
    if (me) c.local_host(me);
  }

  async start_conversation(): Promise<void> {
    if (!this.prepared) await this.prepare();
    const c = this.connection;
    if (c.local_host() === undefined) c.local_host(this.config('me'));
    if (this.logs(LOGNOTICE)) this.log(LOGNOTICE, `Connection from ${c.remote_info() ?? c.remote_host() ?? ''} [${c.remote_ip() ?? ''}]`);
    const r = await this.run_hooks('connect');
    if (r.fault) return this.fault_and_close(r);
    const deny = CONNECT_DENIED[r.rc];
    if (deny) {
      this.respond(deny[0], message_or(r.msg, deny[1]));
      return this.disconnect();
    }
    if (r.rc === DONE) return;
    this.respond(220, this.greeting());
  }

  greeting(): string {
    const custom = this.config('smtpgreeting');
    if (this.opts.lmtp) return custom || `${this.config('me')} LMTP qpsmtpd-ts ${this.version()} ready`;
    if (custom) return /(^|\W)ESMTP(\W|$)/.test(custom) ? custom : `${custom} ESMTP`;
    return `${this.config('me')} ESMTP qpsmtpd-ts ${this.version()} ready; send us your mail, but not your spam.`;
  }

  private async handle_event(ev: ReaderEvent): Promise<void> {
    if (ev.type === 'too_long') {
      this.respond(500, '5.5.2 Line too long');
      return this.after_command();
    }
    if (ev.type !== 'line') return; // data events cannot occur in command mode
    let line: string;
    try {
      line = utf8.decode(ev.line);
    } catch {
      this.respond(500, '5.5.2 Invalid UTF-8 in command');
      return this.after_command();
    }
    this.current_line = line;
    this.connection.current_line(line);
    await this.dispatch(line);
  }

  /** qpsmtpd's dispatch: the command word, then the rest of the line as one argument. */
  async dispatch(line: string): Promise<void> {
    if (this.logs(LOGINFO)) this.log(LOGINFO, `dispatching ${this.loggable(line)}`);
    this.connection.notes('original_string', line);
    const sp = line.indexOf(' ');
    const word = sp < 0 ? line : line.slice(0, sp);
    const rest = sp < 0 ? undefined : line.slice(sp).replace(/^ +/, '');
    const cmd = word.toLowerCase();
    this.command_counter++;
    if (cmd === '' || !/^\w{1,12}$/.test(cmd) || !this.commands.has(cmd)) {
      if (cmd === 'bdat') return this.bdat();
      await this.unrecognized(cmd, rest ?? '');
      return this.after_command();
    }
    // eslint-disable-next-line no-control-regex
    if (rest !== undefined && /[\x00-\x08\x0a-\x1f\x7f]/.test(rest)) {
      this.respond(501, '5.5.2 Syntax error: control characters in command');
      return this.after_command();
    }
    if (JUNK.has(cmd)) this.junk_commands++;
    this.buffered_at_reply = -1;
    const behind = this.reader.buffered();
    const entered_data = await this.run_command(cmd, rest);
    // RFC 2920 3.1: EHLO/HELO/DATA end a group; input that came before their reply is not
    // legitimate (an accepted DATA checks before its 354; a message may be followed by
    // pipelined commands). What the client sent after seeing the reply is fine; without a
    // reply (a plugin's DONE) only what came with the command itself counts.
    const early = this.buffered_at_reply < 0 ? behind : this.buffered_at_reply;
    if (GROUP_ENDERS.has(cmd) && !entered_data && !this.closed && early > 0) return this.sync_error();
    return this.after_command();
  }

  /** Runs one known command; resolves true when DATA went as far as its 354. */
  private async run_command(cmd: string, rest: string | undefined): Promise<boolean | void> {
    switch (cmd) {
      case 'ehlo':
      case 'helo':
      case 'lhlo':
        return this.hello_command(cmd, rest);
      case 'xclient':
        return xclient_command(this, rest);
      case 'xforward':
        return xforward_command(this, rest);
      case 'mail':
        return this.mail(rest);
      case 'rcpt':
        return this.rcpt(rest);
      case 'data':
        return data_command(this);
      case 'rset':
        return this.rset();
      case 'noop':
        return this.noop();
      case 'vrfy':
        return this.vrfy();
      case 'help':
        return this.help(rest);
      case 'quit':
        return this.quit();
      case 'auth':
        return auth_command(this, rest);
      default:
        return this.unrecognized(cmd, rest ?? '');
    }
  }

  /** AUTH PLAIN credentials are masked in logs unless loglevel is 7. */
  loggable(line: string): string {
    if (/^auth\s+plain\s+\S/i.test(line) && this.runtime.trace_level < 7) return line.replace(/^(auth\s+plain\s+).*/i, '$1<hidden credentials>');
    return line;
  }

  /** R8: error replies and junk commands are counted; over a limit the session ends with 421. */
  private async after_command(): Promise<void> {
    if (this.closed) return;
    const max_errors = this.errors > 0 ? this.limit('max_errors', 20) : 0;
    if (max_errors && this.errors >= max_errors) {
      this.respond(421, '4.7.0 Too many errors, closing connection');
      return this.disconnect();
    }
    const max_junk = this.junk_commands > 0 ? this.limit('max_junk_commands', 100) : 0;
    if (max_junk && this.junk_commands > max_junk) {
      this.respond(421, '4.7.0 Too many commands without mail, closing connection');
      return this.disconnect();
    }
  }

  /** A config file that holds a true value (not empty, not "0"), as Perl truth. */
  config_true(name: string): boolean {
    const v = this.config(name);
    return !!v && v !== '0';
  }

  limit(name: string, def: number): number {
    const v = this.config(name);
    return v === undefined ? def : Number(v) || 0;
  }

  /** A reply for a plugin fault (throw or hook timeout): 451 4.3.0. */
  fault_reply(r: HookResult): void {
    this.log(LOGERROR, `answering 451 after a failure in plugin ${r.plugin ?? '?'}`);
    this.respond(451, `4.3.0 ${FAULT_MESSAGE}`);
  }

  private async fault_and_close(r: HookResult): Promise<void> {
    this.fault_reply(r);
    await this.disconnect();
  }

  /**
   * Replies to a rejection from `table` (plugin text, else the default) and disconnects for the
   * *_DISCONNECT codes. Returns true if the result was a rejection (or a fault).
   */
  async deny_respond(r: HookResult, table: DenyTable): Promise<boolean> {
    if (r.fault) {
      this.fault_reply(r);
      return true;
    }
    const row = table[r.rc];
    if (!row) return false;
    this.respond(row[0], message_or(r.msg, row[1]));
    if (r.rc === DENY_DISCONNECT || r.rc === DENYSOFT_DISCONNECT) await this.disconnect();
    return true;
  }

  async sync_error(): Promise<void> {
    this.log(LOGINFO, `client pipelined input after ${this.current_line.split(' ')[0]}: synchronization error`);
    this.reader.discard();
    this.respond(554, '5.5.0 Error: SMTP protocol synchronization');
    await this.disconnect();
  }

  private async bdat(): Promise<void> {
    // Chunk bytes follow BDAT unframed; without CHUNKING they cannot be told from commands.
    this.reader.discard();
    this.respond(521, '5.5.1 BDAT not supported (CHUNKING is not offered), closing connection');
    await this.disconnect();
  }

  // -- commands ----------------------------------------------------------------------------------

  private async hello_command(greeting: 'ehlo' | 'helo' | 'lhlo', rest: string | undefined): Promise<void> {
    if (this.opts.lmtp && greeting !== 'lhlo') {
      this.respond(500, '5.5.1 This is an LMTP server: greet with LHLO');
      return;
    }
    // LHLO is EHLO under another name (RFC 2033 4.1): the ehlo hooks run for it
    const cmd = greeting === 'lhlo' ? 'ehlo' : greeting;
    const p = await this.run_hooks(`${cmd}_parse`);
    if (p.fault) return this.fault_reply(p);
    const [ok, host, ...extra] = parse_command(cmd, rest, p.parser, (l, m) => this.log(l, m));
    if (ok !== OK || !host) {
      this.respond(501, `${greeting} requires domain/address - see RFC-2821 4.1.1.1`);
      return;
    }
    if (this.connection.hello()) {
      // RFC 5321 4.1.4: a repeated greeting resets like RSET (qpsmtpd refused it with 503).
      await this.reset_transaction();
    }
    const r = await this.run_hooks(cmd, host, ...extra);
    if (r.rc === DONE) return;
    const denied = await this.deny_respond(r, HELLO_DENIED);
    if (denied) return;
    const c = this.connection;
    c.hello(greeting);
    // a HELO name given by XCLIENT stays (Postfix XCLIENT_README)
    c.hello_host(xclient_helo(this) ?? host);
    const hi = `${this.config('me')} Hi ${c.remote_info() ?? ''} [${c.remote_ip() ?? ''}]`;
    if (cmd === 'helo') {
      this.respond(250, `${hi}; I am so happy to meet you.`);
      return;
    }
    const caps: string[] = ['PIPELINING', '8BITMIME'];
    const databytes = this.config('databytes');
    if (databytes && Number(databytes)) caps.push(`SIZE ${databytes}`);
    caps.push('SMTPUTF8', ...proxy_capabilities(this));
    const extra_caps = this.transaction.notes('capabilities');
    if (Array.isArray(extra_caps)) caps.push(...extra_caps.map(String));
    const mechs = auth_mechanisms(this);
    const offer_auth = !(this.transaction.notes('tls_enabled') && this.config_true('tls_before_auth'));
    if (mechs.length && offer_auth) {
      caps.push(`AUTH ${mechs.join(' ')}`);
      this.commands.add('auth');
    }
    this.respond(250, hi, ...caps);
  }

  async mail(rest: string | undefined): Promise<void> {
    await this.reset_transaction();
    if (!this.connection.hello()) {
      this.respond(503, 'please say hello first ...');
      return;
    }
    xforward_begin(this);
    if (this.logs(LOGDEBUG)) this.log(LOGDEBUG, `full from_parameter: ${rest ?? ''}`);
    this.connection.notes('envelope_from', rest);
    const p = await this.run_hooks('mail_parse', rest);
    if (p.fault) return this.fault_reply(p);
    const [ok, from_raw, ...params] = parse_command('mail', rest, p.parser, (l, m) => this.log(l, m));
    if (ok !== OK) {
      this.respond(501, from_raw || 'Syntax error in command');
      return;
    }
    const param = params_object(params);
    const keys = params.map((k) => k.split('=')[0]!.toUpperCase());
    const twice = keys.find((k, i) => keys.indexOf(k) !== i);
    if (twice) {
      this.respond(501, `5.5.4 Syntax error in parameters (${twice.replace(/[^\w-]/g, '?')} given twice)`);
      return;
    }
    if (!this.check_size(param)) return;
    const utf8 = this.check_envelope_params(param);
    if (utf8 === undefined) return;
    let from = from_raw ?? '<>';
    const pre = await this.run_hooks('mail_pre', from, param);
    if (pre.fault) return this.fault_reply(pre);
    if (pre.rc === OK && pre.msg[0] !== undefined) from = pre.msg[0];
    if (!/^<.*>$/.test(from)) {
      this.respond(501, 'could not parse your mail from command');
      return;
    }
    if (!utf8 && NON_ASCII.test(from)) {
      this.respond(553, '5.6.7 Non-ASCII address needs SMTPUTF8');
      return;
    }
    const sender = from === '<>' || from.includes('[undefined]') || from === '<#@[]>' ? this.address('<>') : this.envelope_address(from, utf8);
    if (!sender) {
      this.respond(501, 'could not parse your mail from command');
      return;
    }
    const r = await this.run_hooks('mail', sender, param);
    if (r.rc === DONE) return;
    const f = sender.format();
    const denied = (r.fault !== undefined || is_denial(r.rc)) && (await this.deny_respond(r, deny_table([550, `${f}, denied`], [450, `${f}, temporarily denied`], [550, `${f}, denied`], [421, `${f}, temporarily denied`])));
    if (denied) {
      if (!r.fault) this.log(LOGINFO, `deny mail from ${f} (${r.msg.join(' ')})`);
      return;
    }
    this.respond(250, `${f}, sender OK - how exciting to get mail from you!`);
    this.transaction.sender(sender);
  }

  /**
   * RFC 6152 BODY= (7BIT, 8BITMIME) and RFC 6531 SMTPUTF8 at MAIL; they become the transaction
   * notes `body_type` and `smtputf8`. Returns whether UTF-8 addresses are allowed, or undefined
   * after a 501/555 reply.
   */
  private check_envelope_params(param: Record<string, string | undefined>): boolean | undefined {
    if ('body' in param) {
      const body = param.body?.toUpperCase();
      if (body === 'BINARYMIME') {
        this.respond(555, '5.5.4 BODY=BINARYMIME needs CHUNKING, which is not offered');
        return undefined;
      }
      if (body !== '7BIT' && body !== '8BITMIME') {
        this.respond(501, '5.5.4 Syntax error in parameters (BODY)');
        return undefined;
      }
      this.transaction.notes('body_type', body);
    }
    if (!('smtputf8' in param)) return false;
    if (param.smtputf8 !== undefined) {
      this.respond(501, '5.5.4 Syntax error in parameters (SMTPUTF8 takes no value)');
      return undefined;
    }
    // offered only in the EHLO/LHLO reply; after HELO the keyword is ignored
    if (this.connection.hello() === 'helo') return false;
    this.transaction.notes('smtputf8', true);
    return true;
  }

  /** An envelope address, UTF-8 allowed when the client asked for SMTPUTF8. */
  private envelope_address(text: string, smtputf8: boolean): Address | undefined {
    if (!smtputf8) return this.address(text);
    const addr = Address.parse(text, { smtputf8 });
    addr?.qp(this);
    return addr;
  }

  /** RFC 1870: a declared SIZE over `databytes` is refused at MAIL; a malformed one too. */
  private check_size(param: Record<string, string | undefined>): boolean {
    if (!('size' in param)) return true;
    const v = param.size;
    if (v === undefined || !/^\d{1,20}$/.test(v)) {
      this.respond(501, '5.5.4 Syntax error in parameters (SIZE)');
      return false;
    }
    const max = Number(this.config('databytes')) || 0;
    if (max && Number(v) > max) {
      this.respond(552, '5.3.4 Message size exceeds fixed maximum message size');
      return false;
    }
    return true;
  }

  async rcpt(rest: string | undefined): Promise<void> {
    this.connection.notes('envelope_rcpt', rest);
    const p = await this.run_hooks('rcpt_parse', rest);
    if (p.fault) return this.fault_reply(p);
    const [ok, rcpt_raw, ...params] = parse_command('rcpt', rest, p.parser, (l, m) => this.log(l, m));
    if (ok !== OK) {
      this.respond(501, rcpt_raw || 'Syntax error in command');
      return;
    }
    if (!this.transaction.sender()) {
      this.respond(503, 'Use MAIL before RCPT');
      return;
    }
    const param = params_object(params);
    let to = rcpt_raw ?? '';
    const pre = await this.run_hooks('rcpt_pre', to, param);
    if (pre.fault) return this.fault_reply(pre);
    if (pre.rc === OK && pre.msg[0] !== undefined) to = pre.msg[0];
    const utf8 = !!this.transaction.notes('smtputf8');
    if (!utf8 && NON_ASCII.test(to)) {
      this.respond(553, '5.6.7 Non-ASCII address needs SMTPUTF8');
      return;
    }
    const rcpt: Address | undefined = /^<.*>$/.test(to) ? this.envelope_address(to, utf8) : undefined;
    if (!rcpt || rcpt.format() === '<>') {
      this.respond(501, 'could not parse recipient');
      return;
    }
    const r = await this.run_hooks('rcpt', rcpt, param);
    if (r.rc === DONE) return;
    const denied = await this.deny_respond(r, RCPT_DENIED);
    if (denied) return;
    if (r.rc === OK) {
      this.respond(250, `${rcpt.format()}, recipient ok`);
      this.transaction.add_recipient(rcpt);
      return;
    }
    this.respond(450, 'No plugin decided if relaying is allowed');
  }

  async rset(): Promise<void> {
    xforward_reset(this);
    await this.reset_transaction();
    this.respond(250, 'OK');
  }

  async noop(): Promise<void> {
    const r = await this.run_hooks('noop');
    if (r.rc === DONE) return;
    if (r.fault) return this.fault_reply(r);
    if (r.rc === DENY || r.rc === DENY_DISCONNECT) {
      this.respond(500, message_or(r.msg, 'Stop wasting my time.'));
      if (r.rc === DENY_DISCONNECT) await this.disconnect();
      return;
    }
    this.respond(250, 'OK');
  }

  async vrfy(): Promise<void> {
    const r = await this.run_hooks('vrfy');
    if (r.rc === DONE) return;
    if (r.fault) return this.fault_reply(r);
    if (r.rc === DENY) {
      this.respond(554, message_or(r.msg, 'Access Denied'));
      await this.reset_transaction();
      return;
    }
    if (r.rc === OK) {
      this.respond(250, message_or(r.msg, 'User OK'));
      return;
    }
    this.respond(252, "Just try sending a mail and we'll see how it turns out ...");
  }

  async help(rest: string | undefined): Promise<void> {
    const r = rest === undefined ? await this.run_hooks('help') : await this.run_hooks('help', rest);
    if (r.rc === DONE) return;
    if (r.fault) return this.fault_reply(r);
    if (r.rc === DENY) {
      this.respond(500, message_or(r.msg, 'Syntax error, command not recognized'));
      return;
    }
    const lines = has_text(r.msg)
      ? r.msg
      : [
          `This is qpsmtpd-ts ${this.config('smtpgreeting') ? '' : this.version()}`,
          'See http://smtpd.develooper.com/',
          'To report bugs or send comments, mail to <ask@develooper.com>.',
        ];
    this.respond(214, ...lines);
  }

  async quit(): Promise<void> {
    const r = await this.run_hooks('quit');
    if (r.rc !== DONE) {
      const bye = `${this.config('me')} closing connection. Have a wonderful day.`;
      this.respond(221, r.fault ? bye : message_or(r.msg, bye));
    }
    await this.disconnect();
  }

  async unrecognized(cmd: string, rest: string): Promise<void> {
    const r = await this.run_hooks('unrecognized_command', cmd, rest);
    if (r.rc === DONE) return;
    if (r.fault) return this.fault_reply(r);
    if (cmd === 'proxy' && (r.rc === DECLINED || r.rc === 0)) {
      // a PROXY header where none is accepted: never take the address, say so, and close
      this.log(LOGINFO, `PROXY from ${this.connection.remote_ip() ?? '?'} refused: not a /proxy listener, or the sender is not a trusted proxy`);
      this.respond(554, '5.7.1 PROXY not accepted here; closing connection');
      await this.disconnect();
      return;
    }
    if (r.rc === DENY_DISCONNECT) {
      this.respond(521, message_or(r.msg, 'Unrecognized command, closing connection'));
      await this.disconnect();
      return;
    }
    if (r.rc === DENY && has_text(r.msg)) {
      this.respond(500, ...r.msg);
      return;
    }
    this.respond(500, 'Unrecognized command');
  }

  // -- ending ------------------------------------------------------------------------------------

  /**
   * qpsmtpd's disconnect: `disconnect` hooks, note `disconnected`, `reset_transaction` hooks for
   * a live transaction, then the connection is closed once pending replies are written.
   */
  async disconnect(): Promise<void> {
    if (this.disconnected) return;
    this.disconnected = true;
    this.log(LOGDEBUG, 'click, disconnecting');
    await this.run_hooks_no_respond('disconnect');
    this.connection.notes('disconnected', 1);
    if (this.has_transaction()) {
      await this.run_hooks('reset_transaction');
      await this.transaction.cleanup();
    }
    this.close();
  }

  /** Ends the stream after queued replies; reading stops at once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.deadline_timer);
    this.deadline_timer = undefined;
    this.reader.discard();
    this.stream.off('data', this.on_data);
    if (!this.stream.destroyed) this.stream.end();
    const s = this.stream;
    if (!s.destroyed) {
      // a client that never reads must not keep the socket forever; once the socket closes,
      // the timer goes too (it would keep the stream and this session alive for 5 s)
      const t = setTimeout(() => s.destroy(), 5000).unref();
      s.once('close', () => clearTimeout(t));
    }
    this.wake?.();
  }

  /** After the conversation: end-of-session hooks whatever way it ended (qpsmtpd 1.3.4). */
  private async finish(): Promise<void> {
    try {
      if (!this.disconnected) {
        if (this.has_transaction()) await this.reset_transaction();
        await this.run_hooks_no_respond('disconnect');
        this.connection.notes('disconnected', 1);
        this.disconnected = true;
        await this.transaction.cleanup();
      }
      await this.run_hooks_no_respond('post-connection');
    } catch (err) {
      this.log(LOGERROR, `end of session: ${describe_error(err)}`);
    } finally {
      this.close();
      this.connection.reset();
    }
  }

  /**
   * The server is stopping: a session waiting for a command gets 421 at once; a busy one
   * (inside DATA or a hook) finishes its command first, unless `now`.
   */
  request_stop(now = false): void {
    this.stop_requested = true;
    if (this.waiting_for_command || now) this.interrupt?.(new ShutdownSignal());
  }

  /** Throws when the session has ended, so nested readers (DATA, AUTH) stop. */
  assert_open(): void {
    if (this.closed) throw new SessionClosed();
  }

  /** Used by the DATA phase and AUTH: one more input event or a clean end of session. */
  async next_or_close(mode: ReaderMode): Promise<ReaderEvent | null> {
    this.reader.mode = mode;
    const ev = this.reader.next() ?? (await this.next_event(mode));
    if (ev === null && !this.closed) this.log(LOGDEBUG, 'client closed the connection');
    return ev;
  }

  authz_id(): string {
    return this._authz_id ?? '';
  }

  /** A DECLINED return from a hook whose decision is optional. */
  static declined(r: HookResult): boolean {
    return r.rc === DECLINED || r.rc === 0;
  }
}

/** Thrown out of input waits when the server stops. */
export class ShutdownSignal extends Error {
  constructor() {
    super('server shutting down');
  }
}

/** Thrown out of input waits when the client's deadline passes. */
export class TimeoutSignal extends Error {
  constructor() {
    super('client timed out');
  }
}
