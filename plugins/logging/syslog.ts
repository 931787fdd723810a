// logging/syslog: qpsmtpd log messages to syslog, qpsmtpd levels mapped to syslog severities.
//
//   logging/syslog [loglevel L] [priority P] [ident STR] [facility F] [logsock T] [socket PATH]
//
// Node cannot send to a Unix datagram socket (/dev/log) by itself, so each plugin instance runs
// one long-lived util-linux `logger` process and writes `<PRI>message` lines to its stdin;
// logger adds the time stamp, `ident[pid]:` and delivers to the socket (or to a UDP/TCP
// syslog server with `logsock udp[:host[:port]]` / `tcp[:host[:port]]`).
// In an SMTP session the message starts with the connection's uuid (`<uuid> <message>`).
import { spawn, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { DECLINED, LOGWARN, Plugin, PluginArgumentError, format_log_line, log_level } from '../../lib/index.js';

/** syslog(3) facility codes. */
const FACILITIES: Readonly<Record<string, number>> = {
  kern: 0,
  user: 1,
  mail: 2,
  daemon: 3,
  auth: 4,
  syslog: 5,
  lpr: 6,
  news: 7,
  uucp: 8,
  cron: 9,
  authpriv: 10,
  ftp: 11,
  local0: 16,
  local1: 17,
  local2: 18,
  local3: 19,
  local4: 20,
  local5: 21,
  local6: 22,
  local7: 23,
};

/** syslog(3) severities; qpsmtpd's levels 0-7 are the same numbers (LOGEMERG..LOGDEBUG). */
const SEVERITIES: Readonly<Record<string, number>> = {
  emerg: 0,
  panic: 0,
  alert: 1,
  crit: 2,
  err: 3,
  error: 3,
  warning: 4,
  warn: 4,
  notice: 5,
  info: 6,
  debug: 7,
};

const DEFAULT_SOCKET = '/dev/log';
/** Bytes queued for logger before further lines are dropped (and counted). */
const MAX_BACKLOG = 4 * 1024 * 1024;
/** A logger that died is started again at the next line, but not more often than this. */
const RESTART_MS = 1000;
/** How long `close()` waits for logger to deliver what it has and exit. */
const EXIT_WAIT_MS = 5000;
/** logger's limit for one message (its default, 1 KiB, would cut long lines). */
const MAX_MESSAGE = 8192;

function name_lookup(table: Readonly<Record<string, number>>, value: string): number | undefined {
  const key = value.toLowerCase().replace(/^log_/, '');
  return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
}

interface LoggerState {
  proc?: ChildProcess;
  stdin?: Writable;
  started_at: number;
  dropped: number;
  closing: boolean;
  exit_wait?: Promise<void>;
  report: (msg: string) => void;
}

type Target = { kind: 'unix'; path: string } | { kind: 'udp' | 'tcp'; host: string; port: number };

export default class extends Plugin {
  _loglevel = LOGWARN;
  /** Fixed priority (`priority` argument): severity, plus facility bits if it carried any. */
  _priority?: number;
  _facility = FACILITIES.mail!;
  _ident = 'qpsmtpd';
  _target: Target = { kind: 'unix', path: DEFAULT_SOCKET };
  _logger_args: string[] = [];
  /** The logger process and its bookkeeping, shared by every session's view of this plugin. */
  _state!: LoggerState;

  override async register(...args: string[]): Promise<void> {
    const name = this.plugin_name();
    const bad = (what: string) => new PluginArgumentError(`plugin ${name}: ${what}`);
    if (args.length % 2) throw bad(`malformed arguments '${args.join(' ')}' (expected key value pairs)`);
    let socket_path: string | undefined;
    let logsock: string | undefined;
    for (let i = 0; i < args.length; i += 2) {
      const key = args[i]!;
      const value = args[i + 1]!;
      switch (key) {
        case 'loglevel': {
          const level = /^\d+$/.test(value) ? Number(value) : /^LOG\w+$/.test(value) ? log_level(value) : undefined;
          if (level === undefined) throw bad(`invalid loglevel '${value}' (0-7 or a LOG* name)`);
          this._loglevel = level;
          break;
        }
        case 'priority': {
          const p = /^\d+$/.test(value) ? Number(value) : name_lookup(SEVERITIES, value);
          if (p === undefined || p > 191) throw bad(`invalid priority '${value}' (a number or a name such as LOG_NOTICE)`);
          this._priority = p;
          break;
        }
        case 'ident':
          if (!/^[\w\-.]+$/.test(value)) throw bad(`invalid ident '${value}' (letters, digits, '_', '-', '.')`);
          this._ident = value;
          break;
        case 'facility': {
          const f = name_lookup(FACILITIES, value);
          if (f === undefined) throw bad(`unknown facility '${value}' (LOG_MAIL, LOG_LOCAL0 …)`);
          this._facility = f;
          break;
        }
        case 'logsock':
          logsock = value;
          break;
        case 'socket':
          socket_path = value;
          break;
        default:
          throw bad(`unknown argument '${key}' (known: facility, ident, logsock, loglevel, priority, socket)`);
      }
    }
    this._target = this.parse_logsock(logsock, socket_path ?? DEFAULT_SOCKET, bad);
    if (this._target.kind === 'unix') {
      let is_socket = false;
      try {
        is_socket = statSync(this._target.path).isSocket();
      } catch {
        // reported below
      }
      if (!is_socket) {
        throw bad(`${this._target.path} is not a syslog socket (is syslogd running? see 'socket PATH' and 'logsock udp')`);
      }
    }
    this._logger_args = this.logger_args();
    const runtime = this.qp.runtime;
    this._state = {
      started_at: 0,
      dropped: 0,
      closing: false,
      report: (msg) => runtime.write_log(format_log_line(process.pid, undefined, name, msg)),
    };
    await this.check_logger(bad);
    this.start();
  }

  /** `logsock`: Sys::Syslog's comma list of socket types; the first one we can use wins. */
  private parse_logsock(value: string | undefined, path: string, bad: (w: string) => Error): Target {
    if (value === undefined) return { kind: 'unix', path };
    for (const item of value.split(',')) {
      const [type = '', host = '127.0.0.1', port = '514'] = item.trim().split(':');
      switch (type.toLowerCase()) {
        case 'unix':
        case 'native':
        case 'stream':
          return { kind: 'unix', path };
        case 'udp':
        case 'inet':
        case 'tcp':
          if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) throw bad(`invalid port in logsock '${item}'`);
          if (!/^[\w.-]+$/.test(host)) throw bad(`invalid host in logsock '${item}'`);
          return { kind: type.toLowerCase() === 'tcp' ? 'tcp' : 'udp', host, port: Number(port) };
        default:
          break; // console, pipe, eventlog: not available here; try the next one
      }
    }
    throw bad(`logsock '${value}' names no usable socket type (unix, native, stream, udp[:host[:port]], tcp[:host[:port]])`);
  }

  private logger_args(): string[] {
    const a = ['--prio-prefix', '-t', this._ident, `--id=${process.pid}`, '-S', String(MAX_MESSAGE), '--socket-errors=on'];
    const t = this._target;
    if (t.kind === 'unix') a.push('-u', t.path);
    else a.push(t.kind === 'udp' ? '-d' : '-T', '-n', t.host, '-P', String(t.port), '--rfc3164');
    return a;
  }

  /** A dry run of logger with the real options: finds a missing or too old logger, or a bad socket. */
  private check_logger(bad: (w: string) => Error): Promise<void> {
    return new Promise((resolve, reject) => {
      let err = '';
      const child = spawn('logger', ['--no-act', ...this._logger_args], { stdio: ['ignore', 'ignore', 'pipe'] });
      const timer = setTimeout(() => child.kill(), 10000);
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => (err += d));
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          e.code === 'ENOENT'
            ? bad("the 'logger' command (util-linux; Debian package bsdutils) was not found in PATH; it is needed to reach syslog")
            : bad(`cannot run 'logger': ${e.message}`),
        );
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve();
        else reject(bad(`'logger ${this._logger_args.join(' ')}' failed (${signal ?? `status ${code}`}): ${err.trim().replace(/\n/g, '; ')}`));
      });
    });
  }

  /** Starts the long-lived logger process that carries our lines. */
  private start(): void {
    const st = this._state;
    st.started_at = Date.now();
    const child = spawn('logger', this._logger_args, { stdio: ['pipe', 'ignore', 'pipe'] });
    const stdin = child.stdin!;
    st.proc = child;
    st.stdin = stdin;
    // Neither keeps the process alive by itself; lines still being written do.
    child.unref();
    (stdin as unknown as { unref?: () => void }).unref?.();
    (child.stderr as unknown as { unref?: () => void }).unref?.();
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      for (const line of d.split('\n')) if (line.trim()) st.report(`logger: ${line.trim()}`);
    });
    stdin.on('error', (e: Error) => {
      if (!st.closing) st.report(`error writing to logger: ${e.message}`);
    });
    st.exit_wait = new Promise((resolve) => {
      child.once('close', () => resolve());
      child.once('error', () => resolve());
    });
    const gone = () => {
      if (st.proc === child) st.proc = st.stdin = undefined;
    };
    child.on('error', (e: Error) => {
      gone();
      st.report(`cannot run logger: ${e.message}`);
    });
    child.once('exit', (code, signal) => {
      gone();
      if (!st.closing) st.report(`logger exited (${signal ?? `status ${code}`}); restarting it at the next message`);
    });
  }

  /** Ends the logger process after it has delivered what it was given; nothing is logged after. */
  async close(): Promise<void> {
    const st = this._state;
    st.closing = true;
    const stdin = st.stdin;
    const wait = st.exit_wait;
    st.proc = st.stdin = undefined;
    if (!stdin) return;
    stdin.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([wait, new Promise<void>((r) => (timer = setTimeout(r, EXIT_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** Starts a new logger process (HUP): picks up a syslog socket that was recreated. */
  async reopen(): Promise<void> {
    await this.close();
    this._state.closing = false;
    this.start();
  }

  /** `<PRI>` for a qpsmtpd level: facility * 8 + severity, or the fixed `priority`. */
  pri(level: number): number {
    const p = this._priority;
    if (p === undefined) return this._facility * 8 + Math.min(7, Math.max(0, level));
    return p >= 8 ? p : this._facility * 8 + p;
  }

  hook_logging(_transaction: unknown, level: number, _hook?: string, plugin?: string, text = ''): number {
    if (level > this._loglevel) return DECLINED;
    if (plugin !== undefined && plugin === this.plugin_name()) return DECLINED;
    const st = this._state;
    if (st.closing) return DECLINED;
    if (!st.stdin && Date.now() - st.started_at >= RESTART_MS) this.start();
    const stdin = st.stdin;
    if (!stdin || stdin.writableLength > MAX_BACKLOG) {
      if (st.dropped++ === 0) st.report('syslog is not keeping up (or logger is down); dropping lines');
      return DECLINED;
    }
    if (st.dropped) {
      st.report(`${st.dropped} lines were not sent to syslog`);
      st.dropped = 0;
    }
    // lines of an SMTP session carry its uuid, as the built-in logger's do
    const uuid = this.qp.log_uuid();
    stdin.write(`<${this.pri(level)}>${uuid ? `${uuid} ` : ''}${text.replace(/[\r\n]+/g, ' ')}\n`);
    return DECLINED;
  }
}
