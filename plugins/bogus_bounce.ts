// bogus_bounce: refuse bounce messages (null envelope sender) that cannot be genuine.
//
//   bogus_bounce [log|deny|denysoft] [reject 0|1|naughty] [reject_type perm|temp|…] [loglevel N]
//
// A bounce (MAIL FROM:<>) must have exactly one recipient, and a `Return-Path` header in it
// must be empty (`<>`, RFC 3834). Otherwise the plugin rejects at the end of DATA with
//   `fail, this bounce message does not have 1 recipient`   or
//   `a bounce return path must be empty (RFC 3834)`
// through get_reject: the default is `reject 0` (only log). The legacy single argument sets
// the action: `log` (default) = `reject 0`, `deny` = reject with 552, `denysoft` = reject
// with 452. `key value` arguments may follow it and win over it.
//
// Difference from qpsmtpd: `deny` really denies. qpsmtpd's conversion to get_reject left
// `reject` at 0 for `deny`, so it only logged (and `denysoft` only logged too).
import { DECLINED, LOGINFO, Plugin, PluginArgumentError, type Transaction } from '../lib/index.js';

const ACTIONS: Record<string, { reject: number; reject_type?: string }> = {
  log: { reject: 0 },
  deny: { reject: 1, reject_type: 'perm' },
  denysoft: { reject: 1, reject_type: 'temp' },
};

export default class extends Plugin {
  override register(...args: string[]): void {
    let rest = args;
    let action: string | undefined;
    if (args.length % 2) {
      action = args[0]!;
      rest = args.slice(1);
    }
    const a = this.parse_args(rest, { action: undefined, reject: undefined, reject_type: undefined });
    action ??= a.action;
    delete a.action;
    if (action !== undefined) {
      const legacy = ACTIONS[action.toLowerCase()];
      if (!legacy) {
        throw new PluginArgumentError(`plugin ${this.plugin_name()}: unknown action '${action}' (known: log, deny, denysoft)`);
      }
      a.reject ??= legacy.reject;
      if (legacy.reject_type) a.reject_type ??= legacy.reject_type;
    }
    a.reject ??= 0; // legacy default: log only
  }

  hook_data_post(transaction: Transaction): number | [number, string] {
    const sender = transaction.sender()?.address();
    if (sender && sender !== '<>') {
      this.log(LOGINFO, 'pass, not a null sender');
      return DECLINED;
    }

    // a bounce: valid ones have a single recipient
    const to = transaction.recipients();
    if (to.length !== 1) {
      this.log(LOGINFO, `fail, bogus bounce to: ${to.map(String).join(',')}`);
      return this.get_reject('fail, this bounce message does not have 1 recipient');
    }

    // RFC 3834: the Return-Path of a bounce is empty
    const rp = transaction.header()?.get('Return-Path')?.trim();
    if (rp && rp !== '<>') {
      this.log(LOGINFO, 'fail, bounce messages must not have a Return-Path');
      return this.get_reject('a bounce return path must be empty (RFC 3834)');
    }

    this.log(LOGINFO, 'pass, single recipient, empty Return-Path');
    return DECLINED;
  }
}
