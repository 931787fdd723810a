// naughty: deliver the rejections other plugins deferred.
//
//   naughty [reject connect|mail|rcpt|data|data_post] [reject_type perm|temp|disconnect|temp_disconnect] [loglevel N]
//
// A plugin configured with `reject naughty` (see get_reject) does not refuse the client
// itself: it stores its message in the connection note `naughty` (several are joined with
// CRLF) and, once, its reject type in `naughty_reject_type`. This plugin refuses the
// connection at the hook named by `reject` (default `rcpt`) with the stored message(s) and
// the stored reject type, else its own `reject_type` (default `disconnect`): with the
// defaults a flagged client gets `550 <message>` at its first RCPT and is disconnected.
// It also runs at `data_post`, as a safety net for connections that got past the chosen
// hook (an earlier plugin on the same hook returned OK, say). An invalid `reject` value is
// logged and leaves only the data_post check. Connections without the note pass.
// Clients that authenticate have the note cleared by the core, so they are never refused.
import {
  DECLINED,
  DENY_DISCONNECT,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  Plugin,
  PluginArgumentError,
} from '../lib/index.js';

const HOOKS = new Set(['connect', 'mail', 'rcpt', 'data', 'data_post', 'hook_queue_post']);

export default class extends Plugin {
  override register(...args: string[]): void {
    const a = this.parse_args(args, { reject: undefined, reject_type: undefined });
    a.reject ||= 'rcpt';
    a.reject_type ||= 'disconnect';

    const reject = String(a.reject).toLowerCase();
    if (!HOOKS.has(reject)) {
      this.log(LOGERROR, `fail, invalid hook ${reject}`);
      this.register_hook('data_post', 'naughty');
      return;
    }
    if (reject === 'hook_queue_post') {
      // qpsmtpd lists it, then dies registering it: it is not a hook name
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: reject hook_queue_post is not a valid hook (use data_post)`);
    }

    // just in case naughty doesn't disconnect, which can happen if a plugin
    // with the same hook returned OK before naughty ran, or ....
    if (reject !== 'data_post') this.register_hook('data_post', 'naughty');

    this.log(LOGDEBUG, `registering hook ${reject}`);
    this.register_hook(reject, 'naughty');
  }

  naughty(): number | [number, ...string[]] {
    const naughty = this.connection.notes('naughty');
    if (!naughty) {
      this.log(LOGINFO, 'pass');
      return DECLINED;
    }
    this.log(LOGINFO, 'disconnecting');
    const rtype = this.connection.notes('naughty_reject_type');
    const type = this.get_reject_type(DENY_DISCONNECT, rtype || undefined);
    // deferred messages are joined with CRLF: one reply line each
    return [type, ...String(naughty).split(/\r?\n/)];
  }
}
