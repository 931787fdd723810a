// logging/apache: one Apache "combined"-style access-log line per mail transaction, written
// through the logging layer (so it ends up wherever the other log lines go: the built-in stderr
// logger, logging/file, logging/syslog…).
//
//   logging/apache [loglevel N]
//
// qpsmtpd's logging/apache only ran inside Apache (mod_perl, Apache::Qpsmtpd) and sent every log
// line to Apache's ErrorLog. There is no Apache here; what a user of that set-up kept getting
// from Apache was its access log, so this plugin writes that, one line per transaction, in the
// Combined Log Format's shape:
//
//   <ip> <ident> <auth user> [<time>] "<DATA|MAIL> <sender> <rcpt>,<rcpt>…" <status> <bytes> "<HELO name>" "<User-Agent>"
//   127.0.0.1 - good@example.test [22/Nov/2025:20:30:00 +0000] "DATA <a@b.test> <x@example.test>" 250 1234 "client.test" "Mutt/2.2"
//
// - <ident>: the RFC 1413 user when the connection has one (`remote_info` = user@host), else `-`
// - <time>: when the transaction started, local time
// - `DATA` when the message was received, `MAIL` for a transaction that ended before (RSET, a
//   new MAIL, QUIT, refused recipients…); recipients are the accepted ones
// - <status>: the reply that ended it: the queue reply (250/451/452/552), a DATA-phase
//   rejection (552, 554, 451…), or for a transaction abandoned before DATA the last reply the
//   client got before it went on (RSET, MAIL, QUIT, disconnect); `-` when unknown
// - <bytes>: the size of the message as the client sent it (header and body, line ends
//   counted as one byte), `-` when nothing was received
// - the User-Agent header, else X-Mailer, else `-`
// Quotes, backslashes and control characters inside the fields are escaped as Apache does.
//
// The line is logged at LOGNOTICE (the `loglevel` argument changes that, e.g. `loglevel 4` to see
// it with the default `loglevel` file). Only transactions with a sender (MAIL accepted) count.
import { DECLINED, LOGNOTICE, Plugin, type Transaction } from '../../lib/index.js';
import { strftime } from '../../lib/strftime.js';

/** A line without its status, made while the transaction still has its data. */
interface Pending {
  head: string;
  tail: string;
}

/** Apache's escaping of logged strings: `"` and `\` backslashed, control bytes as \xhh. */
export function apache_escape(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/["\\\x00-\x1f\x7f]/g, (c) => (c === '"' || c === '\\' ? '\\' + c : '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0')));
}

export default class extends Plugin {
  /** A transaction reset in the queue phase: its line waits for the queue reply (per session view). */
  _pending?: Pending;
  /** The last reply before QUIT (a transaction still open at QUIT ends after the 221). */
  _before_quit?: string;

  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  /** The last reply the session sent (`250 Queued…`), if this is an SMTP session. */
  last_response(): string {
    if (this._before_quit !== undefined) return this._before_quit;
    const r = (this.qp as unknown as { last_response?: unknown }).last_response;
    return typeof r === 'string' ? r : '';
  }

  hook_quit(): number {
    this.flush();
    this._before_quit = this.last_response();
    return DECLINED;
  }

  hook_reset_transaction(transaction: Transaction): number {
    this.flush();
    if (!transaction?.sender?.()) return DECLINED;
    // In the queue phase the transaction is reset before the queue reply is written.
    const line = this.access_line(transaction);
    if (/^354\b/.test(this.last_response())) {
      this._pending = line;
      return DECLINED;
    }
    this.emit(line, this.last_response());
    return DECLINED;
  }

  hook_queue_post(): number {
    this.flush();
    return DECLINED;
  }

  hook_post_connection(): number {
    this.flush();
    return DECLINED;
  }

  private flush(): void {
    const p = this._pending;
    if (!p) return;
    this._pending = undefined;
    this.emit(p, this.last_response());
  }

  /** Logs the line with the status of `reply`. */
  emit(line: Pending, reply: string): void {
    const status = /^(\d{3})\b/.exec(reply)?.[1] ?? '-';
    this.log(LOGNOTICE, `${line.head} ${status} ${line.tail}`);
  }

  /** The line for `t`, in two halves around the status. */
  access_line(t: Transaction): Pending {
    const c = this.connection;
    const q = (s: string | undefined) => (s ? apache_escape(s) : '-');
    const info = c.remote_info() ?? '';
    const ident = /^(.+)@/.exec(info)?.[1];
    const user = this.qp.auth_user() || undefined;
    const when = strftime('%d/%b/%Y:%H:%M:%S %z', new Date(t.started() * 1000));
    const received = t.header() !== undefined;
    const sender = t.sender()?.format() ?? '<>';
    const rcpts = t
      .recipients()
      .map((r) => r.format())
      .join(',');
    const request = `${received ? 'DATA' : 'MAIL'} ${sender}${rcpts ? ' ' + rcpts : ''}`;
    const size = t.data_size();
    const h = t.header();
    const ua = (h?.get('User-Agent') ?? h?.get('X-Mailer'))?.replace(/\r?\n[ \t]*/g, ' ').trim();
    return {
      head: `${c.remote_ip() ?? '-'} ${q(ident)} ${q(user)} [${when}] "${apache_escape(request)}"`,
      tail: `${size || '-'} "${q(c.hello_host())}" "${q(ua)}"`,
    };
  }
}
