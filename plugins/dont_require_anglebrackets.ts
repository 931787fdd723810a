// dont_require_anglebrackets: accept `MAIL FROM:user@example.com` and `RCPT TO:user@example.com`
// (no `<…>`, which RFC 5321 requires). The address is wrapped in angle brackets, the client's
// karma drops by 2 and the plugin logs `fail, added MAIL angle brackets` (or RCPT).
//
//   dont_require_anglebrackets [loglevel N]
import { LOGINFO, OK, Plugin, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_mail_pre(_transaction: Transaction, addr: string): [number, string] {
    return [OK, this.bracket(addr, 'MAIL')];
  }

  hook_rcpt_pre(_transaction: Transaction, addr: string): [number, string] {
    return [OK, this.bracket(addr, 'RCPT')];
  }

  private bracket(addr: string | undefined, what: 'MAIL' | 'RCPT'): string {
    const a = addr ?? '';
    if (/^<.*>$/.test(a)) return a;
    this.adjust_karma(-2);
    this.log(LOGINFO, `fail, added ${what} angle brackets`);
    return `<${a}>`;
  }
}
