// badmailfrom: refuse envelope senders listed in the `badmailfrom` config file.
//
//   badmailfrom [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect] [loglevel N]
//
// Each `badmailfrom` line is `<entry> [reason…]`, the entry being
//   * a full address (`user@example.com`, compared case-insensitively),
//   * `@host` (every sender of that domain), or
//   * a Perl regular expression, when the entry contains any of `/ ^ $ * + ! % ? \`; it is
//     matched against the lower-cased `user@host` of the sender.
// A match lowers karma by 1 and rejects with the reason, or `Your envelope sender is in my
// badmailfrom list` (`550` by default; `reject 0` only logs, `reject naughty` defers).
// Skipped: immune clients (relay clients, whitelisted hosts/senders), an empty list, the
// null sender, senders without user or host. A pattern that does not compile is logged at
// LOGERROR and skipped.
import { DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, Plugin, type Address, type Transaction } from '../lib/index.js';
import { perl_regex } from '../lib/perl-regex.js';

/** Characters that make an entry a regular expression (qpsmtpd's list). */
const REGEX_CHARS = /[/^$*+!%?\\]/;


export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, { reject: 1, reject_type: undefined });
    for (const line of this.config_list('badmailfrom')) {
      const bad = line.replace(/^\s+/, '').split(/\s+/)[0];
      if (bad && REGEX_CHARS.test(bad)) this.compile(bad);
    }
  }

  hook_mail(_transaction: Transaction, sender: Address | undefined): number | [number, string] {
    if (this.is_immune()) {
      this.transaction.results.add(this, { skip: 'immune' });
      return DECLINED;
    }
    const badmailfrom = this.config_list('badmailfrom');
    if (this.is_immune_sender(sender, badmailfrom)) return DECLINED;

    const host = sender!.host()!.toLowerCase();
    const from = `${sender!.user()!.toLowerCase()}@${host}`;
    for (const line of badmailfrom) {
      const trimmed = line.replace(/^\s+/, '');
      const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(trimmed);
      const bad = m?.[1];
      if (!bad) continue;
      if (!this.is_match(from, bad, host)) continue;
      const reason = m[2] || 'Your envelope sender is in my badmailfrom list';
      this.transaction.results.add(this, { fail: 'badmailfrom', msg: from });
      this.adjust_karma(-1);
      return this.get_reject(reason);
    }
    this.log(LOGINFO, 'pass');
    this.transaction.results.add(this, { pass: 'badmailfrom' });
    return DECLINED;
  }

  is_match(from: string, bad: string, host: string): boolean {
    if (REGEX_CHARS.test(bad)) {
      const re = this.compile(bad);
      if (re?.test(from)) {
        this.log(LOGDEBUG, `badmailfrom pattern (${bad}) match for ${from}`);
        return true;
      }
      return false;
    }
    const b = bad.toLowerCase();
    if (!b.includes('@')) {
      this.log(LOGWARN, `badmailfrom: bad config: no @ sign in ${b}`);
      return false;
    }
    if (b.startsWith('@')) return b === `@${host}`;
    return b === from;
  }

  is_immune_sender(sender: Address | undefined | null, badmf: readonly string[]): boolean {
    if (!badmf.length) {
      this.log(LOGDEBUG, 'skip, empty list');
      this.transaction.results.add(this, { skip: 'empty list' });
      return true;
    }
    if (!sender || sender.format() === '<>') {
      this.log(LOGDEBUG, 'skip, null sender');
      this.transaction.results.add(this, { skip: 'null sender' });
      return true;
    }
    if (!sender.host() || !sender.user()) {
      this.log(LOGDEBUG, 'skip, missing user or host');
      this.transaction.results.add(this, { skip: 'missing user or host' });
      return true;
    }
    return false;
  }

  compile(pattern: string): RegExp | undefined {
    try {
      return perl_regex(pattern);
    } catch (e) {
      this.log(LOGERROR, `error, badmailfrom pattern '${pattern}' is not a valid regular expression (${(e as Error).message}); skipped`);
      return undefined;
    }
  }
}
