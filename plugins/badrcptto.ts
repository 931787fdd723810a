// badrcptto: refuse recipients listed in the `badrcptto` config file.
//
//   badrcptto [loglevel N]
//
// Each `badrcptto` line is `<entry> [reason…]`, the entry being
//   * a full address (compared case-insensitively),
//   * `@host` (every recipient in that domain), or
//   * a Perl regular expression, when the entry contains any of `/ ^ $ * + ! % ? \`, matched
//     case-insensitively against `user@host` of the recipient (`!` alone refuses bang paths,
//     `%` the percent hack, `@.*@` several at signs).
// A match lowers karma by 2 and answers `550 <reason>`, or without a reason
// `550 mail to <entry> not accepted here (#5.1.1)`.
// Skipped: immune clients (relay clients, whitelisted hosts/senders), recipients without
// user or host, an empty list. A pattern that does not compile is logged and skipped.
//
// Difference from qpsmtpd: patterns keep their case (matching is case-insensitive anyway);
// qpsmtpd lower-cased them, which turned `\D`, `\S`, `\W` into `\d`, `\s`, `\w`.
import { DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, Plugin, dsn, type Address, type Transaction } from '../lib/index.js';
import { perl_regex } from '../lib/perl-regex.js';

/** Characters that make an entry a regular expression (qpsmtpd's list). */
const REGEX_CHARS = /[/^$*+!%?\\]/;


export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
    for (const line of this.config_list('badrcptto')) {
      const bad = line.replace(/^\s+/, '').split(/\s+/)[0];
      if (bad && REGEX_CHARS.test(bad)) this.compile(bad);
    }
  }

  hook_rcpt(_transaction: Transaction, recipient: Address | undefined): number | [number, string] {
    if (this.is_immune()) return DECLINED;
    const ht = this.get_host_and_to(recipient);
    if (!ht) return DECLINED;
    const [host, to] = ht;
    const badrcptto = this.config_list('badrcptto');
    if (!badrcptto.length) {
      this.log(LOGINFO, 'skip, empty config');
      this.transaction.results.add(this, { skip: 'empty config' });
      return DECLINED;
    }
    for (const line of badrcptto) {
      const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(line.replace(/^\s+/, ''));
      const bad = m?.[1];
      if (!bad) continue;
      if (this.is_match(to, bad, host)) {
        this.transaction.results.add(this, { fail: 'badrcptto', msg: to });
        this.adjust_karma(-2);
        if (m[2]) return [DENY, m[2]];
        return dsn.no_such_user(`mail to ${bad} not accepted here`);
      }
    }
    this.log(LOGINFO, 'pass');
    this.transaction.results.add(this, { pass: 'badrcptto' });
    return DECLINED;
  }

  is_match(to: string, bad: string, host: string): boolean {
    if (REGEX_CHARS.test(bad)) {
      this.log(LOGDEBUG, `badrcptto pattern (${bad}) match for ${to}`);
      if (this.compile(bad)?.test(to)) {
        this.log(LOGINFO, 'fail: pattern match');
        return true;
      }
      return false;
    }
    if (!bad.includes('@')) {
      this.log(LOGERROR, `badrcptto: bad config: no @ sign in ${bad}`);
      return false;
    }
    const b = bad.toLowerCase();
    if (b.startsWith('@')) {
      if (b === `@${host.toLowerCase()}`) {
        this.log(LOGINFO, 'fail: host match');
        return true;
      }
      return false;
    }
    if (b === to.toLowerCase()) {
      this.log(LOGINFO, 'fail: rcpt match');
      return true;
    }
    return false;
  }

  /** `[host, user@host]`, lower-cased; undefined (and logged) if either part is missing. */
  get_host_and_to(recipient: Address | undefined | null): [string, string] | undefined {
    if (!recipient) {
      this.log(LOGERROR, 'skip: no recipient!');
      return undefined;
    }
    const user = recipient.user();
    const host = recipient.host();
    if (!host || !user) {
      this.log(LOGINFO, 'skip: missing host or user');
      return undefined;
    }
    const h = host.toLowerCase();
    return [h, `${user.toLowerCase()}@${h}`];
  }

  compile(pattern: string): RegExp | undefined {
    try {
      return perl_regex(pattern, 'i');
    } catch (e) {
      this.log(LOGERROR, `error, badrcptto pattern '${pattern}' is not a valid regular expression (${(e as Error).message}); skipped`);
      return undefined;
    }
  }
}
