// badmailfromto: refuse particular sender/recipient pairs.
//
//   badmailfromto [loglevel N]
//
// Each `badmailfromto` line is `<from> <to>`: `<from>` is a full address or `@host`, `<to>` a
// full address (both compared case-insensitively). At MAIL a listed sender is remembered in
// the transaction note `badmailfromto` (the matching `<from>` entry, lower-cased); at RCPT a
// recipient listed with that entry is refused with `550 mail to <rcpt> not accepted here`.
// Skipped: an empty list, the null sender, senders without user or host. A `<from>` entry
// without `@` is logged (LOGWARN) and ignored.
import { DECLINED, DENY, LOGDEBUG, LOGWARN, Plugin, type Address, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_mail(transaction: Transaction, sender: Address | undefined): number {
    const badmailfromto = this.config_list('badmailfromto');
    if (this.is_sender_immune(sender, badmailfromto)) return DECLINED;

    const host = sender!.host()!.toLowerCase();
    const from = `${sender!.user()!.toLowerCase()}@${host}`;
    for (const line of badmailfromto) {
      const bad = /^\s*(\S+)/.exec(line)?.[1]?.toLowerCase();
      if (!bad) continue;
      if (!bad.includes('@')) {
        this.log(LOGWARN, `bad config, no @ sign in ${bad}`);
        continue;
      }
      if (bad === from || (bad.startsWith('@') && bad === `@${host}`)) transaction.notes('badmailfromto', bad);
    }
    return DECLINED;
  }

  hook_rcpt(transaction: Transaction, rcpt: Address | undefined): number | [number, string] {
    const sender = transaction.notes('badmailfromto') as string | undefined;
    if (!sender) {
      this.log(LOGDEBUG, 'pass, sender not listed');
      return DECLINED;
    }
    const recipient = `${(rcpt?.user() ?? '').toLowerCase()}@${(rcpt?.host() ?? '').toLowerCase()}`;
    for (const line of this.config_list('badmailfromto')) {
      const m = /^\s*(\S+)\s+(\S+)/.exec(line);
      if (!m) continue;
      if (m[1]!.toLowerCase() === sender && m[2]!.toLowerCase() === recipient) {
        return [DENY, `mail to ${recipient} not accepted here`];
      }
    }
    this.log(LOGDEBUG, 'pass, recipient not listed');
    return DECLINED;
  }

  is_sender_immune(sender: Address | undefined | null, badmf: readonly string[]): boolean {
    if (!badmf.length) {
      this.log(LOGDEBUG, 'skip, empty list');
      return true;
    }
    if (!sender || sender.format() === '<>') {
      this.log(LOGDEBUG, 'skip, null sender');
      return true;
    }
    if (!sender.host() || !sender.user()) {
      this.log(LOGDEBUG, 'skip, missing user or host');
      return true;
    }
    return false;
  }
}
