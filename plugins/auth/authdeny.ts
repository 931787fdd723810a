// auth/authdeny: fails every AUTH attempt that no earlier auth plugin decided.
//
//   auth/authdeny [loglevel N]
//
// It registers the generic `auth` hook, so all three mechanisms (PLAIN, CRAM-MD5, LOGIN) are
// offered and every undecided attempt ends in `535 … authentication failed …`. It logs
// `fail: cannot authenticate` at LOGWARN and returns DECLINED with
// `<user> is not free to abuse my relay`. A proof of concept; not for production.
import { DECLINED, LOGWARN, Plugin, type Transaction } from '../../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_auth(_transaction: Transaction | undefined, _method: string, user: string): [number, string] {
    this.log(LOGWARN, 'fail: cannot authenticate');
    return [DECLINED, `${user} is not free to abuse my relay`];
  }
}
