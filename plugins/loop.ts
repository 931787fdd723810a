// loop: refuse messages that have travelled too far (a mail loop), as qmail-smtpd does.
//
//   loop [max_hops]
//
// Counts the `Received` and `Delivered-To` header lines (including the `Received` line this
// server just added) at the end of DATA. At `max_hops` (default 100, qmail-smtpd's limit) or
// more the message is refused with `552 Too many hops (#5.4.6)`.
//
// Difference from qpsmtpd: an invalid `max_hops` or extra arguments stop the server at
// start-up (qpsmtpd logged a warning and used 100).
import { DECLINED, Plugin, PluginArgumentError, dsn, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  _max_hops = 100;

  override register(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the maximum number of hops; got '${args.join(' ')}'`);
    }
    const max = args[0];
    if (max === undefined) return;
    if (!/^\d+$/.test(max)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: max_hops must be a number, got '${max}'`);
    }
    this._max_hops = Number(max) || 100; // qpsmtpd's `$args[0] || 100`: 0 means the default
  }

  hook_data_post(transaction: Transaction): number | [number, string] {
    const header = transaction.header();
    const hops = header ? header.count('Received') + header.count('Delivered-To') : 0;
    if (hops >= this._max_hops) return dsn.too_many_hops();
    return DECLINED;
  }
}
