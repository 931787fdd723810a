// auth/auth_flat_file: SMTP AUTH (PLAIN, LOGIN, CRAM-MD5) against the `flat_auth_pw` file.
//
//   auth/auth_flat_file [loglevel N]
//
// `flat_auth_pw` holds `user@domain:password` lines (clear text, so CRAM-MD5 works). The user
// name the client gives must contain `@`; it is lower-cased and compared, as a string, with
// the part of each line before its first `:`. Unknown users are DECLINED (another auth plugin
// may know them); a known user with a wrong password is denied with
// `auth_flat_file - wrong password`.
import { DECLINED, DENY, LOGINFO, Plugin, type Transaction } from '../../lib/index.js';
import { validate_password, type AuthResult } from '../../lib/auth.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
    this.register_hook('auth-plain', 'auth_flat_file');
    this.register_hook('auth-login', 'auth_flat_file');
    this.register_hook('auth-cram-md5', 'auth_flat_file');
  }

  auth_flat_file(
    _transaction: Transaction | undefined,
    method: string,
    user: string,
    passClear?: string | null,
    passHash?: string | null,
    ticket?: string | null,
  ): number | AuthResult {
    if ((passClear === undefined || passClear === null) && (passHash === undefined || passHash === null)) {
      this.log(LOGINFO, 'fail: missing password');
      return [DENY, 'authflat - missing password'];
    }
    const wanted = String(user ?? '').toLowerCase();
    // as Perl's split /@/: trailing empty fields dropped, so `user@` has no domain
    const parts = wanted.split('@');
    while (parts.length && parts[parts.length - 1] === '') parts.pop();
    if (parts.length < 2) {
      this.log(LOGINFO, 'fail: missing domain');
      return DECLINED;
    }
    // qpsmtpd interpolated the user name into a regex here; we compare strings.
    const auth_line = this.config_list('flat_auth_pw').find((line) => {
      const colon = line.indexOf(':');
      return colon >= 0 && line.slice(0, colon) === wanted;
    });
    if (auth_line === undefined) {
      this.log(LOGINFO, `fail: no such user: ${user}`);
      return DECLINED;
    }
    const auth_pass = auth_line.slice(auth_line.indexOf(':') + 1);
    return validate_password(this, {
      src_clear: auth_pass,
      src_crypt: undefined,
      attempt_clear: passClear,
      attempt_hash: passHash,
      method,
      ticket,
      deny: DENY,
    });
  }
}
