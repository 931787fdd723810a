// connection_time: log how long each connection lasted.
//
//   connection_time [loglevel N|+N|-N]
//   connection_time <level>            (legacy: a single level, a number or a LOG* name)
//
// The start time is taken at `pre-connection` and again, if none is set, at `connect`; at
// `post-connection` the plugin logs `<seconds with 3 decimals> s.` at LOGINFO (adjusted by
// `loglevel`). In qpsmtpd-ts `pre-connection` runs before the session exists (its view of the
// plugin is not the session's), so the time measured is the session's, from `connect` on.
import {
  DECLINED,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  Plugin,
  PluginArgumentError,
  log_level,
} from '../lib/index.js';

export default class extends Plugin {
  /** Start of the connection (process.hrtime.bigint), kept on the session's view. */
  _connection_start?: bigint;

  override register(...args: string[]): void {
    if (args.length === 1) {
      // backwards compatible: a single log level
      let level: unknown = args[0];
      if (/\D/.test(args[0]!)) level = log_level(args[0]!);
      if (level === undefined) {
        throw new PluginArgumentError(`plugin ${this.plugin_name()}: unknown log level '${args[0]}'`);
      }
      this._args = { loglevel: String(Number(level) || LOGINFO) };
    } else {
      this.parse_args(args, {});
    }
    this.register_hook('pre-connection', 'connect_handler');
    this.register_hook('connect', 'connect_handler');
  }

  connect_handler(): number {
    if (this.hook_name() === 'connect' && this._connection_start !== undefined) return DECLINED;
    this._connection_start = process.hrtime.bigint();
    this.log(LOGDEBUG, `started at ${(Date.now() / 1000).toFixed(6)}`);
    return DECLINED;
  }

  hook_post_connection(): number {
    if (this._connection_start === undefined) {
      this.log(LOGERROR, 'Start time not set?!');
      return DECLINED;
    }
    const elapsed = Number(process.hrtime.bigint() - this._connection_start) / 1e9;
    this.log(LOGINFO, `${elapsed.toFixed(3)} s.`);
    return DECLINED;
  }
}
