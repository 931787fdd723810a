// count_unrecognized_commands: disconnect a client after too many unrecognized commands
// (good against spam sent through open HTTP proxies).
//
//   count_unrecognized_commands [max]
//
// `max` (default 4) is the number of unrecognized commands at which the client is answered
// `521 Closing connection, <n> unrecognized commands. Perhaps you should read RFC 2821?`
// and disconnected. The count is kept in the connection note `unrec_cmd_count`.
import { DECLINED, DENY_DISCONNECT, LOGINFO, Plugin, PluginArgumentError, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  _unrec_cmd_max = 4;

  override register(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the maximum; got '${args.join(' ')}'`);
    }
    const max = args[0];
    if (max === undefined) return;
    if (!/^\d+$/.test(max)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: the maximum must be a number, got '${max}'`);
    }
    // qpsmtpd's `shift || 4`: 0 means the default
    this._unrec_cmd_max = Number(max) || 4;
  }

  hook_unrecognized_command(_transaction: Transaction, cmd: string): number | [number, string] {
    const count = (Number(this.connection.notes('unrec_cmd_count')) || 0) + 1;
    this.connection.notes('unrec_cmd_count', count);
    if (count < this._unrec_cmd_max) {
      this.log(LOGINFO, `'${cmd}', (${count})`);
      return DECLINED;
    }
    this.log(LOGINFO, `fail, '${cmd}' (${count})`);
    return [DENY_DISCONNECT, `Closing connection, ${count} unrecognized commands. Perhaps you should read RFC 2821?`];
  }
}
