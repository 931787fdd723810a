// parse_addr_withhelo: strict RFC 821 parsing of MAIL and RCPT for clients that greeted with
// HELO (not EHLO): no ESMTP parameters are allowed after the address.
//
//   parse_addr_withhelo [loglevel N]
//
// For HELO sessions it supplies the MAIL/RCPT argument parser:
//   * `FROM:` / `TO:` must start the argument          → 501 Syntax error in command
//   * `<address>` followed by anything                 → 501 No parameters allowed in MAIL|RCPT
//   * a bare address with `@` followed by more words   → 501 No parameters allowed in MAIL|RCPT
//   * `MAIL FROM:` with nothing after it               → the null sender `<>`
//   * anything else                                    → 501 Could not parse your MAIL FROM command
//                                                        / Could not parse your RCPT TO command
// EHLO sessions keep the core's parser (parameters allowed).
//
// Difference from qpsmtpd: a bare `RCPT TO:postmaster` (or `abuse`) is handed on as the
// address, as the code evidently meant; qpsmtpd's parser returned nothing there, which the
// core answered with `501 Syntax error in command`. Without `dont_require_anglebrackets` the
// core still refuses the bracket-less address (`501 could not parse recipient`).
import { DECLINED, DENY, LOGDEBUG, OK, Plugin, type ParserFn, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_mail_parse(_transaction: Transaction): number | [number, ParserFn] {
    return this.connection.hello() === 'helo' ? [OK, this.parser()] : DECLINED;
  }

  hook_rcpt_parse(_transaction: Transaction): number | [number, ParserFn] {
    return this.connection.hello() === 'helo' ? [OK, this.parser()] : DECLINED;
  }

  /** The parser, bound to this session's view of the plugin (for logging). */
  parser(): ParserFn {
    return (_self: unknown, cmd: string, line: string) => this._parse(cmd, line);
  }

  /** `[OK, address]` or `[DENY, message]`. */
  _parse(cmd: string, line: string): [number, string] {
    this.log(LOGDEBUG, `_parse() cmd=[${cmd}], line=[${line}]`);
    const CMD = cmd.toUpperCase();
    const prefix = cmd === 'mail' ? /^from:\s*/i : /^to:\s*/i;
    const p = prefix.exec(line);
    if (!p) return [DENY, 'Syntax error in command'];
    let rest = line.slice(p[0].length);

    const bracketed = /^(<.*>)\s*/.exec(rest);
    if (bracketed) {
      rest = rest.slice(bracketed[0].length);
      if (/^\S/.test(rest)) return [DENY, `No parameters allowed in ${CMD}`];
      return [OK, bracketed[1]!];
    }

    // no <> given
    rest = rest.replace(/\s*$/, '');
    if (rest.includes('@')) {
      if (/@\S+\s+\S/.test(rest)) return [DENY, `No parameters allowed in ${CMD}`];
      return [OK, rest];
    }
    if (cmd === 'mail') {
      if (!rest) return [OK, '<>']; // 'MAIL FROM:' -> 'MAIL FROM:<>'
      return [DENY, 'Could not parse your MAIL FROM command'];
    }
    if (!/^(postmaster|abuse)$/i.test(rest)) return [DENY, 'Could not parse your RCPT TO command'];
    return [OK, rest];
  }
}
