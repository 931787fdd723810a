// random_error: fail at random, to test how clients (and your own set-up) handle errors.
//
//   random_error [percent]
//
// `percent` (default 1; 0 also means 1; a negative number disables the plugin) is how often a
// message should fail overall. A message passes six hooks (connect, helo/ehlo, mail, rcpt,
// data, data_post), so each fails with probability 1 − (1 − percent/100)^(1/6). A failure is
// `DENYSOFT_DISCONNECT, "random failure"` two times in five, else `DENYSOFT, "random failure"`.
// At `connect` the percentage is written to the connection note `random_fail_%`; the other
// hooks read that note, so other plugins may change the rate for a connection.
import {
  DECLINED,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  LOGINFO,
  Plugin,
  PluginArgumentError,
} from '../lib/index.js';

export default class extends Plugin {
  _how = 1;
  /** The random source (`rand(1)`); tests replace it. */
  rand: () => number = Math.random;

  override register(...args: string[]): void {
    if (args.length > 1) throw new PluginArgumentError(`plugin ${this.plugin_name()}: Invalid args: '${args.join(' ')}'`);
    if (args[0] !== undefined && !/^-?\d+(\.\d+)?$/.test(args[0])) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: the failure percentage must be a number, got '${args[0]}'`);
    }
    this._how = Number(args[0]) || 1;
  }

  random_fail(): number | [number, string] {
    const fpct = Number(this.connection.notes('random_fail_%')) || 0;
    // (1 - x) ** 6 = (1 - fpct/100)  =>  x = 1 - (1 - fpct/100) ** (1/6)
    const successp = 1 - fpct / 100;
    const threshold = successp ** (1 / 6);
    this.log(LOGINFO, `to fail, rand(1) must be more than ${perl_number(threshold)}`);
    if (this.rand() < threshold) return DECLINED;
    if (this.rand() * 5 < 2) return [DENYSOFT_DISCONNECT, 'random failure'];
    return [DENYSOFT, 'random failure'];
  }

  hook_connect(): number | [number, string] {
    this.connection.notes('random_fail_%', this._how);
    return this.random_fail();
  }

  hook_helo(): number | [number, string] {
    return this.random_fail();
  }

  hook_ehlo(): number | [number, string] {
    return this.random_fail();
  }

  hook_mail(): number | [number, string] {
    return this.random_fail();
  }

  hook_rcpt(): number | [number, string] {
    return this.random_fail();
  }

  hook_data(): number | [number, string] {
    return this.random_fail();
  }

  hook_data_post(): number | [number, string] {
    return this.random_fail();
  }
}

/** A number as Perl prints it (15 significant digits). */
function perl_number(n: number): string {
  if (!Number.isFinite(n)) return Number.isNaN(n) ? 'NaN' : n > 0 ? 'Inf' : '-Inf';
  return String(Number(n.toPrecision(15)));
}
