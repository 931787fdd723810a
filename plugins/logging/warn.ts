// logging/warn: qpsmtpd's built-in logger as a plugin. Writes `<pid>[ prefix] <msg>` lines to
// stderr for every message at or below its level (argument: a number or a LOG* name, default
// LOGWARN). It skips its own messages, and returns DECLINED so other logging plugins see them.
import { DECLINED, LOGINFO, LOGWARN, Plugin, PluginArgumentError, format_log_line, parse_log_level } from '../../lib/index.js';

export default class extends Plugin {
  _level = LOGWARN;

  override register(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the log level; got '${args.join(' ')}'`);
    }
    if (args[0] !== undefined) {
      const level = parse_log_level(args[0]);
      if (level === undefined) {
        throw new PluginArgumentError(`plugin ${this.plugin_name()}: invalid log level '${args[0]}' (0-7 or a LOG* name)`);
      }
      this._level = level;
    }
    // Only other logging plugins see this one: hook_logging below skips our own lines.
    this.log(LOGINFO, 'Initializing logging::warn plugin');
  }

  hook_logging(_transaction: unknown, level: number, hook?: string, plugin?: string, text = ''): number {
    if (plugin !== undefined && plugin === this.plugin_name()) return DECLINED;
    if (level > this._level) return DECLINED;
    process.stderr.write(format_log_line(this.qp.log_id(), hook, plugin, text) + '\n');
    return DECLINED;
  }
}
