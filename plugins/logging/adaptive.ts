// logging/adaptive: log more about mail that is refused than about mail that is accepted.
//
//   logging/adaptive [accept <level>] [reject <level>] [prefix <text>] [loglevel N]
//
// accept   default LOGERROR (3)    reject   default LOGWARN (4)    prefix   default "`"
//
// Every message at or below the `reject` level is written to stderr at once:
//   <pid> <plugin> plugin: <text>   |   <pid> running plugin (<hook>): <text>   |   <pid> <text>
// Those also at or below the `accept` level are kept with the transaction; when it ends
// (reset_transaction: after the queue reply, at RSET, MAIL, disconnect) they are written again,
// with the prefix right after the pid, unless a plugin refused something (a `deny` hook fired)
// earlier in this connection:
//   <pid> ` <plugin> plugin: <text>
// so a log filter (multilog `'-*' '+*` *'`) can keep accepted mail's lines apart.
//
// qpsmtpd kept the "something was refused" flag per process, which under its forking server
// meant per connection; it is kept per connection here.
import { DECLINED, LOGERROR, LOGINFO, LOGWARN, Plugin, PluginArgumentError, log_level } from '../../lib/index.js';

interface Row {
  level: number;
  hook?: string;
  plugin?: string;
  text: string;
}

interface Notes {
  notes(key: string, value?: unknown): any;
}

const NOTE = 'logging-adaptive';
/** Lines kept per transaction at most (a chatty session cannot grow memory without bound). */
const MAX_ROWS = 1000;

function parse_level(plugin: string, key: string, v: string): number {
  const n = /^\d+$/.test(v) ? Number(v) : log_level(v);
  if (n === undefined || n > 7) throw new PluginArgumentError(`plugin ${plugin}: argument '${key}' must be a log level (0-7 or a LOG* name), not '${v}'`);
  return n;
}

function describe(pid: number, prefix: string, r: Row): string {
  const who = r.plugin !== undefined ? ` ${r.plugin} plugin:` : r.hook !== undefined ? ` running plugin (${r.hook}):` : '';
  return `${pid}${prefix ? ' ' + prefix : ''}${who} ${r.text}`;
}

export default class extends Plugin {
  _minlevel = LOGERROR;
  _maxlevel = LOGWARN;
  _prefix = '`';
  /** A deny hook fired in this connection (set on the session's view). */
  _denied = false;

  override register(...args: string[]): void {
    const a = this.parse_args(args, { accept: undefined, reject: undefined, prefix: undefined });
    if (a.accept !== undefined) this._minlevel = parse_level(this.plugin_name(), 'accept', String(a.accept));
    if (a.reject !== undefined) this._maxlevel = parse_level(this.plugin_name(), 'reject', String(a.reject));
    if (a.prefix !== undefined && String(a.prefix) !== '') this._prefix = String(a.prefix);
    // only other logging plugins see this one (ours are skipped below)
    this.log(LOGINFO, 'Initializing logging::adaptive plugin');
  }

  hook_logging(transaction: Notes | undefined, level: number, hook?: string, plugin?: string, text = ''): number {
    if (plugin !== undefined && plugin === this.plugin_name()) return DECLINED;
    if (level <= this._maxlevel) {
      const row: Row = { level, hook, plugin, text };
      if (!/logging::adaptive/.test(text)) process.stderr.write(describe(process.pid, '', row) + '\n');
      // kept only inside a session: the server's own transaction never ends
      if (level <= this._minlevel && transaction?.notes && this.qp !== this.qp.runtime.server_qp) {
        const rows = (transaction.notes(NOTE) as Row[] | undefined) ?? transaction.notes(NOTE, []);
        if (rows.length < MAX_ROWS) rows.push(row);
      }
    }
    return DECLINED;
  }

  hook_deny(): number {
    this._denied = true;
    return DECLINED;
  }

  hook_reset_transaction(transaction: Notes): number {
    if (this._denied) return DECLINED;
    const rows = transaction?.notes?.(NOTE) as Row[] | undefined;
    if (!rows?.length) return DECLINED;
    transaction.notes(NOTE, []);
    for (const r of rows) {
      if (r.level <= this._minlevel) process.stderr.write(describe(process.pid, this._prefix, r) + '\n');
    }
    return DECLINED;
  }
}
