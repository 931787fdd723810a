// rcpt_regexp: decide recipients with a list of regular expressions and addresses.
//
//   rcpt_regexp [loglevel N]
//
// Each line of the `rcpt_regexp` config file is `<pattern> <CONSTANT> [comment…]`:
//   * `/regex/` — a Perl regular expression, matched case-insensitively against the
//     recipient's `user@host` (lower-cased);
//   * anything else — an address, compared case-insensitively.
// The first matching line decides: its constant (`OK`, `DENY`, `DENYSOFT`, `DECLINED`, …) is
// returned with the comment as message (so `DENY No such user.` → `550 No such user.`).
// Recipients without user or host are not checked; no match → DECLINED.
//
//   me@example.org          OK       Accepting mail
//   /^user\d+@example\.in$/ OK       Accepting mail
//   /^unused@.*/            DENY     User not found.
//   /^.*$/                  DECLINED Fall through to the next rcpt plugin
//
// Lines with a pattern that does not compile, no constant or an unknown constant are logged
// at LOGWARN and skipped (qpsmtpd crashed on a line without a constant).
import { DECLINED, LOGDEBUG, LOGWARN, Plugin, return_code, type Address, type Transaction } from '../lib/index.js';
import { perl_regex } from '../lib/perl-regex.js';


/** A constant name (or its number) as the number; undefined if it is not one. */
export function constant(name: string): number | undefined {
  if (/^\d+$/.test(name)) return return_code(Number(name)) !== undefined ? Number(name) : undefined;
  return return_code(name);
}

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
    for (const line of this.config_list('rcpt_regexp')) this.parse_line(line);
  }

  hook_rcpt(_transaction: Transaction, recipient: Address | undefined): number | [number, string] {
    const user = recipient?.user();
    const host = recipient?.host();
    if (!user || !host) return DECLINED;
    const rcpt = `${user}@${host}`.toLowerCase();
    for (const line of this.config_list('rcpt_regexp')) {
      const rule = this.parse_line(line);
      if (!rule) continue;
      if (rule.re) {
        if (!rule.re.test(rcpt)) continue;
        this.log(LOGDEBUG, `RE ${rule.pattern} matched ${rcpt}, returning ${rule.name}`);
      } else {
        if (rule.pattern.toLowerCase() !== rcpt) continue;
        this.log(LOGDEBUG, `String ${rule.pattern.toLowerCase()} matched ${rcpt}, returning ${rule.name}`);
      }
      return rule.comment === undefined ? rule.code : [rule.code, rule.comment];
    }
    return DECLINED;
  }

  /** One config line as a rule, or undefined (logged) if it is unusable. */
  parse_line(line: string): { pattern: string; re?: RegExp; name: string; code: number; comment?: string } | undefined {
    const m = /^(\S+)(?:\s+(\S+))?(?:\s+([\s\S]*))?$/.exec(line.replace(/^\s+/, ''));
    if (!m) return undefined;
    const pattern = m[1]!;
    let re: RegExp | undefined;
    const slashed = /^\/(.*)\/$/.exec(pattern);
    if (slashed) {
      try {
        re = perl_regex(slashed[1]!, 'i');
      } catch (e) {
        this.log(LOGWARN, `REGEXP '${slashed[1]}' not valid: ${(e as Error).message}`);
        return undefined;
      }
    }
    const name = m[2];
    if (name === undefined) {
      this.log(LOGWARN, `rcpt_regexp - no return code in line '${line}'`);
      return undefined;
    }
    const code = constant(name);
    if (code === undefined) {
      this.log(LOGWARN, `rcpt_regexp - '${name}' is not a valid constant, ignoring this line`);
      return undefined;
    }
    return { pattern, ...(re ? { re } : {}), name, code, ...(m[3] ? { comment: m[3] } : {}) };
  }
}
