// rcpt_map: decide the recipients of one domain with a map file.
//
//   rcpt_map domain <name> file <path> [default CODE[=MESSAGE_with_underscores]] [loglevel N]
//
// For recipients whose domain is <name> (case-insensitive), the map file decides. Each line
// is `<address> <CONSTANT> [message…]`; blank lines and `#` comments are skipped:
//
//   # map_example_org
//   me@example.org      OK
//   you@example.org     OK
//   info@example.org    DENY     User not found.
//
// A listed address gets its constant and message (default `No such user.`); an address that
// is not listed gets `default` (`DENY=No_such_user.`: DENY with `No such user.`, `_` standing
// for a space because plugin arguments cannot contain spaces). Addresses compare
// case-insensitively. Other domains: DECLINED.
//
// `domain` and `file` are required; a file that cannot be read or holds no valid line stops
// the server at start-up. A relative `file` is taken relative to the working directory at
// start-up, as in qpsmtpd. The map is read again when the file changes: in the
// pre-connection hook (which the daemon runs in its master process) and, in every process,
// when a recipient of the domain is checked. A reload that fails or finds no valid line is
// logged and the previous map stays in use.
//
// Differences from qpsmtpd: each instance has its own map (qpsmtpd kept one map per process,
// shared by all instances); map lines are split on any whitespace and their line ends
// dropped (qpsmtpd split on single spaces and kept the newline, so aligned columns and
// message-less lines did not work); map addresses are lower-cased as documented; a file is
// re-read on any change of mtime, size or inode, not only on a newer mtime; unknown
// arguments stop the server at start-up.
import { readFileSync, statSync, type Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  DECLINED,
  DENY,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  Plugin,
  PluginArgumentError,
  return_code,
  type Address,
  type Transaction,
} from '../lib/index.js';

type Entry = [code: number, msg: string];

/** The map and the file state it was read from. One object per loaded instance, shared by all sessions. */
interface MapState {
  map: Map<string, Entry>;
  stamp: string;
  loading?: Promise<void>;
}

function constant(name: string): number | undefined {
  if (/^\d+$/.test(name)) return return_code(Number(name)) !== undefined ? Number(name) : undefined;
  return return_code(name);
}

function stamp_of(st: Stats): string {
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}

export default class extends Plugin {
  _domain = '';
  _map_file = '';
  _default: Entry = [DENY, 'No such user.'];
  _state!: MapState;

  override register(...args: string[]): void {
    const name = this.plugin_name();
    const a = this.parse_args(args, { domain: undefined, file: undefined, default: undefined });
    if (a.default !== undefined) {
      const s = String(a.default);
      const eq = s.indexOf('=');
      const code_name = eq < 0 ? s : s.slice(0, eq);
      const code = constant(code_name);
      if (code === undefined) throw new PluginArgumentError(`plugin ${name}: '${code_name}' is not a valid constant for the 'default' argument`);
      const msg = (eq < 0 ? '' : s.slice(eq + 1)) || 'No such user.';
      this._default = [code, msg.replace(/_/g, ' ')];
    }
    if (!a.file) throw new PluginArgumentError(`plugin ${name}: no map file given (argument 'file')`);
    if (!a.domain) throw new PluginArgumentError(`plugin ${name}: no domain name given (argument 'domain')`);
    this._domain = String(a.domain).toLowerCase();
    this._map_file = path.resolve(String(a.file));
    this.log(LOGDEBUG, `Using map ${this._map_file} for domain ${this._domain}`);

    let text: string;
    let st: Stats;
    try {
      st = statSync(this._map_file);
      text = readFileSync(this._map_file, 'utf8');
    } catch (e) {
      throw new PluginArgumentError(`plugin ${name}: cannot read map file ${this._map_file}: ${(e as Error).message}`);
    }
    const map = this.parse_map(text);
    if (!map.size) throw new PluginArgumentError(`plugin ${name}: empty map file ${this._map_file}`);
    // assigned on the loaded plugin itself, so every session's view shares (and updates) it
    this._state = { map, stamp: stamp_of(st) };
  }

  /** `addr CONSTANT [message]` lines → map; bad lines are logged and skipped. */
  parse_map(text: string): Map<string, Entry> {
    const map = new Map<string, Entry>();
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (!line || line.startsWith('#')) return;
      const m = /^(\S+)(?:\s+(\S+))?(?:\s+(.*))?$/.exec(line)!;
      const [, addr, code_name, msg] = m;
      if (!code_name) {
        this.log(LOGERROR, `No constant in line ${i + 1} in ${this._map_file}`);
        return;
      }
      const code = constant(code_name);
      if (code === undefined) {
        this.log(LOGERROR, `Not a valid constant in line ${i + 1} in ${this._map_file}`);
        return;
      }
      map.set(addr!.toLowerCase(), [code, msg || 'No such user.']);
    });
    return map;
  }

  /** Re-reads the map if the file changed; keeps the old map when the new one is unusable. */
  async reload_if_changed(): Promise<void> {
    const state = this._state;
    if (state.loading) return state.loading;
    let st: Stats;
    try {
      st = await stat(this._map_file);
    } catch (e) {
      this.log(LOGERROR, `cannot stat map file ${this._map_file}: ${(e as Error).message}; keeping the loaded map`);
      return;
    }
    if (stamp_of(st) === state.stamp) return;
    state.loading = (async () => {
      try {
        const map = this.parse_map(await readFile(this._map_file, 'utf8'));
        state.stamp = stamp_of(st);
        if (!map.size) {
          this.log(LOGERROR, `map file ${this._map_file} has no valid line; keeping the loaded map`);
          return;
        }
        state.map = map;
        this.log(LOGINFO, `reloaded map ${this._map_file} (${map.size} entries)`);
      } catch (e) {
        this.log(LOGERROR, `cannot read map file ${this._map_file}: ${(e as Error).message}; keeping the loaded map`);
      } finally {
        state.loading = undefined;
      }
    })();
    return state.loading;
  }

  async hook_pre_connection(_transaction: Transaction): Promise<number> {
    await this.reload_if_changed();
    return DECLINED;
  }

  async hook_rcpt(_transaction: Transaction, recipient: Address | undefined): Promise<number | [number, string]> {
    const user = recipient?.user();
    const host = recipient?.host();
    if (!user || !host) return DECLINED;
    if (host.toLowerCase() !== this._domain) return DECLINED;
    await this.reload_if_changed();
    const rcpt = `${user}@${host}`.toLowerCase();
    const hit = this._state.map.get(rcpt);
    return hit ? [...hit] : [...this._default];
  }
}
