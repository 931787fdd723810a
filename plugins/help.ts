// help: answers HELP from help files.
//
//   help [not_implemented 0|1] [help_dir <dir>] [<COMMAND> <file>]… [loglevel N]
//
// Without arguments the help directory is `./help/` (relative to the working directory).
// `HELP` alone → `214 Try 'HELP COMMAND' for getting help on COMMAND`. `HELP <cmd>`: a name
// that is not a single word → `502 Invalid command name`; a file given for <cmd> on the
// plugin line, else `<help_dir>/<cmd>` (lower case), is sent as `214` lines; no file (or an
// empty one) → `214 No help available for SMTP command: <cmd>`. A `<COMMAND> <file>` pair
// names the file for one command: a name with a `/` is used as is, a bare name is looked up
// in `help/`; a file that does not exist at start-up is logged and ignored.
// `not_implemented 1` answers every HELP with `502 Not implemented.`
// Directory and file names may contain letters, digits, `_`, `.`, `-` and `/` only.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { DONE, LOGERROR, LOGWARN, OK, Plugin, PluginArgumentError, type Transaction } from '../lib/index.js';

interface Responder {
  respond?: (code: number, ...lines: unknown[]) => boolean;
}

interface HelpConfig {
  not_implemented?: string;
  help_dir?: string;
  /** lower-cased command -> help file */
  files: Map<string, string>;
}

const SAFE_PATH = /^[\w.\-/]+$/;

export default class extends Plugin {
  _config: HelpConfig = { files: new Map() };

  override register(...args: string[]): void {
    const name = this.plugin_name();
    if (args.length % 2) throw new PluginArgumentError(`plugin ${name}: arguments must be key/value pairs; got '${args.join(' ')}'`);
    const cfg: HelpConfig = { files: new Map() };
    if (!args.length) cfg.help_dir = './help/';
    for (let i = 0; i < args.length; i += 2) {
      const key = args[i]!;
      const value = args[i + 1]!;
      if (!/^\w+$/.test(key)) throw new PluginArgumentError(`plugin ${name}: invalid argument '${key}' (not_implemented, help_dir, loglevel or a command name)`);
      if (key === 'loglevel') {
        this._args.loglevel = value;
      } else if (key === 'not_implemented') {
        cfg.not_implemented = value;
      } else if (key === 'help_dir') {
        if (!SAFE_PATH.test(value)) throw new PluginArgumentError(`plugin ${name}: invalid characters in help_dir '${value}'`);
        cfg.help_dir = value;
      } else {
        if (!SAFE_PATH.test(value)) throw new PluginArgumentError(`plugin ${name}: invalid characters in the help file name for command ${key}: '${value}'`);
        const file = value.includes('/') ? value : path.join('help', value);
        if (!existsSync(file)) {
          this.log(LOGWARN, `No help file for command '${key}'`);
          continue;
        }
        cfg.files.set(key.toLowerCase(), file);
      }
    }
    this._config = cfg;
  }

  async hook_help(_transaction: Transaction, ...args: string[]): Promise<number | [number, ...string[]]> {
    const cfg = this._config;
    if (truthy(cfg.not_implemented)) {
      this.respond(502, 'Not implemented.');
      return DONE;
    }
    if (!truthy(args[0])) return [OK, "Try 'HELP COMMAND' for getting help on COMMAND"];

    const cmd = String(args[0]).toLowerCase();
    // else someone could request "HELP ../../../../etc/passwd"
    if (!/^\w+$/.test(cmd)) {
      this.respond(502, 'Invalid command name');
      return DONE;
    }

    const none: [number, string] = [OK, `No help available for SMTP command: ${cmd}`];
    let file: string | undefined;
    if (cfg.files.has(cmd)) file = cfg.files.get(cmd);
    else if (cfg.help_dir !== undefined && existsSync(`${cfg.help_dir}/${cmd}`)) file = `${cfg.help_dir}/${cmd}`;
    if (file === undefined) return none;

    let help: string;
    try {
      help = await readFile(file, 'latin1');
    } catch (err) {
      this.log(LOGERROR, `failed to open help file for ${cmd}: ${err instanceof Error ? err.message : String(err)}`);
      return none;
    }
    if (!help || help === '0') return none; // empty file
    // Perl's split(/\n/): trailing empty fields go (a CR before the LF too)
    const lines = help.split('\n').map((l) => l.replace(/\r$/, ''));
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    if (!lines.length) return none;
    return [OK, ...lines];
  }

  private respond(code: number, ...lines: string[]): void {
    const qp = this.qp as unknown as Responder;
    if (typeof qp.respond === 'function') qp.respond(code, ...lines);
  }
}

/** Perl truth of an argument value. */
function truthy(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && v !== '0';
}
