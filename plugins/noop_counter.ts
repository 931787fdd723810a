// noop_counter: disconnect a client after too many consecutive NOOPs.
//
//   noop_counter [max]
//
// Every NOOP counts; at `max` (default 3; 0 also means 3) consecutive ones the client gets
// `500 Stop wasting my time, too many consecutive NOOPs` and is disconnected. HELO, EHLO,
// MAIL, RCPT, DATA, RSET (any transaction reset), VRFY and HELP set the count back to 0.
// Load it early, so that its counter resets run before a later plugin decides those hooks.
import { DECLINED, DENY_DISCONNECT, LOGINFO, Plugin, PluginArgumentError } from '../lib/index.js';

export default class extends Plugin {
  /** Consecutive NOOPs of this connection (kept on the session's view). */
  _noop_count = 0;
  _max_noop = 3;

  override register(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the maximum; got '${args.join(' ')}'`);
    }
    const max = args[0];
    if (max !== undefined && !/^\d+$/.test(max)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: the maximum must be a number, got '${max}'`);
    }
    if (max && Number(max)) this._max_noop = Number(max);
  }

  hook_noop(): number | [number, string] {
    ++this._noop_count;
    if (this._noop_count >= this._max_noop) {
      this.log(LOGINFO, `fail, ${this._noop_count} consecutive NOOPs`);
      return [DENY_DISCONNECT, 'Stop wasting my time, too many consecutive NOOPs'];
    }
    return DECLINED;
  }

  reset_noop_counter(): number {
    this._noop_count = 0;
    return DECLINED;
  }

  hook_helo(): number {
    return this.reset_noop_counter();
  }
  hook_ehlo(): number {
    return this.reset_noop_counter();
  }
  hook_mail(): number {
    return this.reset_noop_counter();
  }
  hook_rcpt(): number {
    return this.reset_noop_counter();
  }
  hook_data(): number {
    return this.reset_noop_counter();
  }
  hook_reset_transaction(): number {
    return this.reset_noop_counter();
  }
  hook_vrfy(): number {
    return this.reset_noop_counter();
  }
  hook_help(): number {
    return this.reset_noop_counter();
  }
}
