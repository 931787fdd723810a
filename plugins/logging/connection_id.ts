// logging/connection_id: like logging/warn, but each line starts with the connection's id
// instead of the pid, so the lines of one SMTP session can be told apart when one process
// serves many sessions at once.
//
//   logging/connection_id [level]
//
// level: a number or a LOG* name; default LOGWARN. Lines go to stderr:
//   <id> <plugin> plugin: <text>   |   <id> running plugin (<hook>): <text>   |   <id> <text>
//
// The id is the connection note `id` when something has set it (read for every line, so an id
// a plugin sets later is used from then on); otherwise one is made at the session's first line
// (the `Connection from` line, before any connect hook) and stored there:
// `<unix time>.<microseconds>.<pid>.<n>`, as qpsmtpd 0.3x's connection ids were (with the pid
// and a per-process counter in place of the host address). Lines logged outside any session
// (start-up, the master) carry the pid. qpsmtpd 1.00's copy of this plugin refused to load
// (its connection ids were removed); this one works.
import { DECLINED, LOGINFO, LOGWARN, Plugin, PluginArgumentError, parse_log_level } from '../../lib/index.js';

/** Per process, like qpsmtpd's connection counter: with time and pid it makes ids unique. */
let connection_counter = 0;

export function new_connection_id(): string {
  const now = performance.timeOrigin + performance.now();
  const sec = Math.floor(now / 1000);
  const usec = String(Math.floor((now % 1000) * 1000)).padStart(6, '0');
  return `${sec}.${usec}.${process.pid}.${++connection_counter}`;
}

export default class extends Plugin {
  _level = LOGWARN;

  override register(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the log level; got '${args.join(' ')}'`);
    }
    if (args[0] !== undefined) {
      const v = args[0];
      const level = parse_log_level(v);
      if (level === undefined || level > 7) throw new PluginArgumentError(`plugin ${this.plugin_name()}: invalid log level '${v}' (0-7 or a LOG* name)`);
      this._level = level;
    }
    this.log(LOGINFO, `Initializing ${this.plugin_name()} plugin`);
  }

  /** True when serving an SMTP session (not the loading server). */
  in_session(): boolean {
    return this.qp !== this.qp.runtime.server_qp;
  }

  /** The connection note `id`, set now if nothing set it yet. */
  connection_id(): string {
    const c = this.connection;
    let id = c.notes('id');
    if (id === undefined || id === null || id === '') id = c.notes('id', new_connection_id());
    return String(id);
  }

  hook_connect(): number {
    this.connection_id();
    return DECLINED;
  }

  /** What starts the line. */
  line_id(_transaction: unknown): string {
    return this.connection_id();
  }

  hook_logging(transaction: unknown, level: number, hook?: string, plugin?: string, text = ''): number {
    if (plugin !== undefined && plugin === this.plugin_name()) return DECLINED;
    if (level > this._level) return DECLINED;
    const id = this.in_session() ? this.line_id(transaction) : String(process.pid);
    const who = plugin !== undefined ? ` ${plugin} plugin:` : hook !== undefined ? ` running plugin (${hook}):` : '';
    process.stderr.write(`${id}${who} ${text}\n`);
    return DECLINED;
  }
}
