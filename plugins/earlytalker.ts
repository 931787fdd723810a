// earlytalker: refuse clients that talk before the SMTP greeting (spam engines that pipeline
// the whole conversation without listening).
//
//   earlytalker [wait <seconds>] [reject 0|1|naughty] [reject_type perm|temp|disconnect|temp_disconnect]
//               [defer-reject 0|1] [check-at CONNECT|DATA]… [action deny|denysoft|log] [loglevel N]
//
// At `connect` (before the 220) the plugin waits up to `wait` seconds (default 1; fractions
// allowed; the connection note `earlytalker_wait` overrides it per connection) for input.
// A client that sent anything by then is an early talker: connection note `earlytalker` = 1,
// karma −1, and the rejection `Connecting host started transmitting before SMTP greeting`
// (`550` with the default `reject_type perm`; `450` with `temp`; `reject 0` only logs;
// `reject naughty` leaves it to the naughty plugin). With `defer-reject 1` the greeting is
// sent as usual and every MAIL of the connection gets the rejection instead.
// `check-at DATA` (the argument may be given more than once; default CONNECT only) does the
// same test after DATA, before the 354. Relay clients and whitelisted hosts/senders are not
// tested, nor (at connect) clients whose `karma_history` note is above 5.
//
// Legacy: `action deny|denysoft|log` sets `reject` (deny… → 1, else 0) when `reject` is not
// given, and `action denysoft` means `reject_type temp`. `defer-reject` without a
// `reject_type` means `temp` (what qpsmtpd ends up with, through a comparison bug).
import {
  DECLINED,
  LOGINFO,
  Plugin,
  PluginArgumentError,
  type Transaction,
} from '../lib/index.js';

const KNOWN = new Set(['wait', 'reject', 'reject_type', 'defer-reject', 'check-at', 'action', 'loglevel']);
const CHECK_POINTS = new Set(['CONNECT', 'DATA']);

/** What the plugin needs from the session: a peek at unsolicited input. */
interface InputPeek {
  input_pending?: (wait_ms: number) => Promise<boolean>;
}

export default class extends Plugin {
  override register(...args: string[]): void {
    const name = this.plugin_name();
    if (args.length % 2) throw new PluginArgumentError(`plugin ${name}: arguments must be key/value pairs; got '${args.join(' ')}'`);
    const out: Record<string, any> = { wait: 1 };
    const check_at: Record<string, number> = {};
    for (let i = 0; i < args.length; i += 2) {
      const key = args[i]!;
      const value = args[i + 1]!;
      if (!KNOWN.has(key) && key.toLowerCase() !== 'check-at') {
        throw new PluginArgumentError(`plugin ${name}: unknown argument '${key}' (known: ${[...KNOWN].sort().join(', ')})`);
      }
      if (key.toLowerCase() === 'check-at') {
        const point = value.toUpperCase();
        if (!CHECK_POINTS.has(point)) throw new PluginArgumentError(`plugin ${name}: check-at must be CONNECT or DATA, got '${value}'`);
        check_at[point] = (check_at[point] ?? 0) + 1;
        continue;
      }
      out[key] = value;
    }
    if (!/^\d+(\.\d+)?$/.test(String(out.wait))) {
      throw new PluginArgumentError(`plugin ${name}: wait must be a number of seconds, got '${out.wait}'`);
    }
    if (out.reject !== undefined && !/^(0|1|naughty)$/.test(out.reject)) {
      throw new PluginArgumentError(`plugin ${name}: reject must be 0, 1 or naughty, got '${out.reject}'`);
    }
    if (!Object.keys(check_at).length) check_at.CONNECT = 1;
    out['check-at'] = check_at;

    // backwards compatibility with the old `action` argument
    if (out.action !== undefined && out.reject === undefined) out.reject = /^deny/i.test(out.action) ? 1 : 0;
    if (out.reject_type === undefined) {
      if (out.action !== undefined && /^denysoft$/i.test(out.action)) out.reject_type = 'temp';
      else if (out['defer-reject'] !== undefined) out.reject_type = 'temp';
      else out.reject_type = 'perm';
    }
    if (out.reject === undefined) out.reject = 1;
    this._args = out;

    this.register_hook('connect', 'connect_handler');
    this.register_hook('data', 'data_handler');
    if (truthy(out['defer-reject'])) this.register_hook('mail', 'mail_handler');
  }

  /** Seconds to wait: the connection note `earlytalker_wait`, else the `wait` argument. */
  wait_length(): number {
    const note = this.connection.notes('earlytalker_wait');
    if (note) return Number(note) || 0;
    return Number(this._args.wait) || 0;
  }

  /** Whether the client sent anything within the wait; undefined when there is no client. */
  async spoke_early(): Promise<boolean | undefined> {
    const peek = (this.qp as unknown as InputPeek).input_pending;
    if (typeof peek !== 'function') return undefined;
    return peek.call(this.qp, this.wait_length() * 1000);
  }

  async connect_handler(_transaction?: Transaction): Promise<number | [number, string]> {
    if (!this._args['check-at']?.CONNECT) return DECLINED;
    if (this.is_immune()) return DECLINED;

    // senders with good karma skip the delay
    const karma = this.connection.notes('karma_history');
    if (karma !== undefined && karma !== null && Number(karma) > 5) {
      this.log(LOGINFO, `skip, karma ${karma}`);
      return DECLINED;
    }

    const early = await this.spoke_early();
    if (early === undefined) return DECLINED;
    if (!early) return this.log_and_pass();
    if (!truthy(this._args['defer-reject'])) return this.log_and_deny();

    this.connection.notes('earlytalker', 1);
    this.adjust_karma(-1);
    return DECLINED;
  }

  async data_handler(_transaction?: Transaction): Promise<number | [number, string]> {
    if (!this._args['check-at']?.DATA) return DECLINED;
    if (this.is_immune()) return DECLINED;

    const early = await this.spoke_early();
    if (early === undefined) return DECLINED;
    if (!early) return this.log_and_pass();
    return this.log_and_deny();
  }

  mail_handler(_transaction?: Transaction): number | [number, string] {
    if (!this.connection.notes('earlytalker')) return DECLINED;
    return this.log_and_deny();
  }

  log_and_pass(): number {
    this.log(LOGINFO, 'pass, not spontaneous');
    return DECLINED;
  }

  log_and_deny(): number | [number, string] {
    this.connection.notes('earlytalker', 1);
    this.adjust_karma(-1);
    return this.get_reject('Connecting host started transmitting before SMTP greeting', 'remote started talking before we said hello');
  }
}

/** Perl truth of an argument value. */
function truthy(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && v !== '0' && v !== 0 && v !== false;
}
