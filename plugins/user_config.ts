// user_config: per-user config files, like the global config directory but one per address.
//
//   user_config [<directory pattern>]
//
// Answers the `user_config` hook, which runs when a plugin asks an address for a setting
// (`recipient.config('spamassassin')`, or `this.config(name, address)`). The pattern
// (default `/home/%u/.qpsmtpd`) is expanded with `%u` = the address's user part, `%h` = its
// domain, `%a` = the whole address; if `<dir>/<name>` is a file, its lines (line ends
// removed, nothing else filtered) are the answer, else the global config decides.
// An address part containing `/` or NUL, or equal to `.` or `..`, never names a directory.
import { readFileSync, statSync } from 'node:fs';
import { DECLINED, LOGNOTICE, LOGWARN, OK, Plugin, PluginArgumentError, type Address, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  pattern = '/home/%u/.qpsmtpd';

  override init(...args: string[]): void {
    if (args.length > 1) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: takes one argument, the directory pattern; got '${args.join(' ')}'`);
    }
    if (args[0]) this.pattern = args[0];
  }

  hook_user_config(_transaction: Transaction, addr: Address, conf: string): number | [number, ...string[]] {
    const pattern = this.pattern;
    if (!pattern || !addr) return DECLINED;
    const parts: Record<string, string> = {
      u: String(addr.user() ?? ''),
      h: String(addr.host() ?? ''),
      a: String(addr.address() ?? ''),
    };
    for (const v of Object.values(parts)) {
      // eslint-disable-next-line no-control-regex
      if (/[/\x00]/.test(v) || v === '.' || v === '..') {
        this.log(LOGWARN, `skip, unsafe address for a path: ${v}`);
        return DECLINED;
      }
    }
    const dir = pattern.replace(/%([uha])/g, (_m, k: string) => parts[k]!);
    const filename = `${dir}/${conf}`;
    try {
      if (!statSync(filename).isFile()) return DECLINED;
    } catch {
      return DECLINED;
    }
    let text: string;
    try {
      text = readFileSync(filename, 'latin1');
    } catch (err) {
      this.log(LOGNOTICE, `Couldn't open ${filename}:${err instanceof Error ? err.message : String(err)}`);
      return DECLINED;
    }
    // Perl's <$fh> + chomp: one value per line, the last line's end optional
    const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n');
    return [OK, ...lines];
  }
}
