// The flat-file config layer of qpsmtpd (Qpsmtpd::Config get_qmail/from_file/config_dir);
// the config and user_config hooks run before it, in Qpsmtpd#config().
import { readFileSync, readdirSync, statSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { join, normalize } from 'node:path';
import { cdb_parse } from './cdb.js';
import { LOGDEBUG, LOGERROR, LOGWARN } from './constants.js';

export interface ConfigOptions {
  /** The `--config` directory; searched first. */
  dir?: string;
  /** Environment for QPSMTPD_CONFIG and QMAIL; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** The package's own `config/` (qpsmtpd's `config/` next to the program). */
  packageDir?: string;
  log?: (level: number, msg: string) => void;
  /** How long a cached result is trusted before its files are stat'ed again. */
  revalidate_ms?: number;
}

/** A config file that cannot be used as written (for now only a malformed `$include` line). */
export class ConfigError extends Error {
  readonly file: string;
  readonly line: number;
  constructor(file: string, line: number, message: string) {
    super(`${file} line ${line}: ${message}`);
    this.name = 'ConfigError';
    this.file = file;
    this.line = line;
  }
}

/** What a path looked like when it was read: `null` = absent, `'error'` = there but not stat-able. */
type Stamp = { mtimeMs: number; ctimeMs: number; size: number; ino: number } | null | 'error';

interface Probe {
  st?: Stats;
  stamp: Stamp;
  err?: Error;
}

function probe(path: string): Probe {
  try {
    const st = statSync(path);
    return { st, stamp: { mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, size: st.size, ino: st.ino } };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? { stamp: null } : { stamp: 'error', err: e as Error };
  }
}

function same(a: Stamp, b: Stamp): boolean {
  if (a === null || b === null || typeof a === 'string' || typeof b === 'string') return a === b;
  return a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.size === b.size && a.ino === b.ino;
}

interface Lookup {
  visited: string[];
  deps: Map<string, Stamp>;
}

interface Entry<T> {
  value: T;
  deps: Map<string, Stamp>;
  checked: number;
}

/** Stat `path` and remember the first stamp seen during this lookup. */
function track(lookup: Lookup, path: string): Probe {
  const p = probe(path);
  if (!lookup.deps.has(path)) lookup.deps.set(path, p.stamp);
  return p;
}

const INCLUDE = /^\$include\s+(\S+)$/;
const INCLUDE_LIKE = /^\$include(\s|$)/;

/** An overlay path must stay inside the config directory: no empty, `.` or `..` part, no control characters. */
// eslint-disable-next-line no-control-regex
const BAD_OVERLAY_PATH = /(^|\/)\.{0,2}(\/|$)|[\x00-\x1f]/;

export class Config {
  /** Values used when no file gives one (qpsmtpd's %defaults). */
  readonly defaults: Record<string, string> = { me: hostname(), timeout: '1200' };
  readonly revalidate_ms: number;
  private readonly opts: ConfigOptions;
  private readonly env: Record<string, string | undefined>;
  private readonly logger: (level: number, msg: string) => void;
  private dir_memo = new Map<string, string>();
  private lines = new Map<string, Entry<string[]>>();
  private maps = new Map<string, Entry<Map<string, string>>>();
  private overlays = new Map<string, Entry<string[] | null>>();
  /** Whether an overlay directory (`via/<ip>`) exists in some config directory. */
  private overlay_dirs = new Map<string, Entry<boolean>>();
  private default_values = new Map<string, readonly string[]>();

  constructor(opts: ConfigOptions = {}) {
    this.opts = opts;
    this.env = opts.env ?? process.env;
    this.revalidate_ms = opts.revalidate_ms ?? 1000;
    // Like Qpsmtpd::Config::log before logging plugins load: only warnings and worse, to stderr.
    this.logger =
      opts.log ?? ((level, msg) => level <= LOGWARN && process.stderr.write(`${process.pid} ${msg}\n`));
  }

  log(level: number, msg: string): void {
    this.logger(level, msg);
  }

  /** Directories searched, highest precedence first; the last is the fallback. */
  private candidates(): string[] {
    const dirs = [this.opts.dir, this.env.QPSMTPD_CONFIG, this.opts.packageDir].filter(
      (d): d is string => !!d,
    );
    dirs.push((this.env.QMAIL || '/var/qmail') + '/control');
    return dirs;
  }

  /** The directory that holds `name`: the first candidate where it exists, else `$QMAIL/control`. */
  config_dir(name: string): string {
    return this.dir_memo.get(name) ?? this.resolve_dir(name);
  }

  // Within a lookup the directory is resolved afresh and the paths that decided it are
  // recorded, so a file that appears in a higher-precedence directory invalidates the entry.
  // A path that exists but cannot be stat'ed (a symlink loop) counts as there, so it is reported.
  private resolve_dir(name: string, lookup?: Lookup): string {
    const dirs = this.candidates();
    let found = dirs[dirs.length - 1]!;
    for (const d of dirs) {
      const p = join(d, name);
      if ((lookup ? track(lookup, p) : probe(p)).stamp !== null) {
        found = d;
        break;
      }
    }
    this.dir_memo.set(name, found);
    return found;
  }

  clear_cache(): void {
    this.dir_memo.clear();
    this.lines.clear();
    this.maps.clear();
    this.overlays.clear();
    this.overlay_dirs.clear();
  }

  default(name: string): string | undefined {
    return Object.prototype.hasOwnProperty.call(this.defaults, name) ? this.defaults[name] : undefined;
  }

  /** All lines of config `name` (qpsmtpd's get_qmail), or its default, or []. */
  get(name: string): string[] {
    return [...this.values(name)];
  }

  /** get() without the copy: the caller must not change the array. */
  values(name: string): readonly string[] {
    const lines = this.cached(this.lines, name, (lookup) =>
      this.read(name, join(this.resolve_dir(name, lookup), name), lookup),
    );
    if (lines.length) return lines;
    let d = this.default_values.get(name);
    if (!d) {
      const v = this.default(name);
      this.default_values.set(name, (d = Object.freeze(v === undefined ? [] : [v])));
    }
    return d;
  }

  /**
   * Lines of `<sub>/<name>`, an overlay file such as `via/<local ip>/me` or `sni/<host>/tls_cert`,
   * when that file exists in one of the config directories (looked up like any name); undefined
   * when it does not, so the caller falls back to `<name>`. An existing empty overlay gives [].
   */
  get_overlay(sub: string, name: string): string[] | undefined {
    const lines = this.overlay_values(sub, name);
    return lines && [...lines];
  }

  /** get_overlay() without the copy: the caller must not change the array. */
  overlay_values(sub: string, name: string): readonly string[] | undefined {
    // most connections arrive on an address without a via/ directory: one lookup says so
    const there = this.cached(this.overlay_dirs, sub, (lookup) =>
      !BAD_OVERLAY_PATH.test(sub) && this.candidates().some((d) => track(lookup, join(d, sub)).stamp !== null),
    );
    if (!there) return undefined;
    const rel = `${sub}/${name}`;
    if (BAD_OVERLAY_PATH.test(rel)) return undefined;
    const lines = this.cached(this.overlays, rel, (lookup) => {
      const file = join(this.resolve_dir(rel, lookup), rel);
      if (track(lookup, file).stamp === null) return null;
      return this.read(rel, file, lookup);
    });
    return lines ?? undefined;
  }

  /** `<config_dir(name)>/<name>.cdb` as a map. The map is shared between callers: do not change it. */
  get_map(name: string): Map<string, string> {
    return this.cached(this.maps, name, (lookup) => {
      const file = join(this.resolve_dir(name, lookup), `${name}.cdb`);
      const { stamp, err } = track(lookup, file);
      if (stamp === null) {
        this.log(LOGDEBUG, `File ${file} does not exist`);
        return new Map();
      }
      try {
        if (err) throw err;
        return cdb_parse(readFileSync(file));
      } catch (e) {
        this.log(LOGERROR, `could not read cdb file ${file}: ${(e as Error).message}`);
        return new Map();
      }
    });
  }

  /** Lines of one file after the format rules and `$include` expansion; not cached. */
  from_file(name: string, path?: string): string[] {
    return this.read(name, path ?? join(this.config_dir(name), name), { visited: [], deps: new Map() });
  }

  private cached<T>(cache: Map<string, Entry<T>>, name: string, load: (lookup: Lookup) => T): T {
    const now = Date.now();
    const hit = cache.get(name);
    if (hit) {
      if (now - hit.checked < this.revalidate_ms) return hit.value;
      if ([...hit.deps].every(([p, s]) => same(probe(p).stamp, s))) {
        hit.checked = now;
        return hit.value;
      }
      this.log(LOGDEBUG, `config ${name} changed on disk, reloading`);
    }
    const lookup: Lookup = { visited: [], deps: new Map() };
    const value = load(lookup);
    cache.set(name, { value, deps: lookup.deps, checked: now });
    return value;
  }

  private read(name: string, file: string, lookup: Lookup): string[] {
    // Stat before reading: if the file changes in between, the next check sees a new stamp.
    const { stamp, err } = track(lookup, file);
    if (stamp === null) return [];
    if (lookup.visited[lookup.visited.length - 1] !== file) lookup.visited.push(file);
    let text: string;
    try {
      if (err) throw err;
      text = readFileSync(file, 'utf8');
    } catch (e) {
      this.log(LOGWARN, `could not open configfile ${file}: ${(e as Error).message}`);
      return [];
    }

    const out: string[] = [];
    const raw = text.split('\n');
    for (let i = 0; i < raw.length; i++) {
      const line = raw[i]!.trim();
      if (!line || line.startsWith('#')) continue;
      const m = INCLUDE.exec(line);
      if (!m) {
        if (INCLUDE_LIKE.test(line)) {
          throw new ConfigError(
            file,
            i + 1,
            `malformed $include line "${line}": write "$include <file or directory>" with exactly one path (no spaces, nothing after it)`,
          );
        }
        out.push(line);
        continue;
      }
      const target = m[1]!.startsWith('/') ? normalize(m[1]!) : join(this.resolve_dir(m[1]!, lookup), m[1]!);
      if (lookup.visited.includes(target)) {
        this.log(LOGERROR, `Circular $include reference in config ${name}:`);
        this.log(LOGERROR, `From ${lookup.visited[0]}:`);
        for (const f of [...lookup.visited.slice(1), target]) this.log(LOGERROR, `  includes ${f}`);
        return [];
      }
      lookup.visited.push(target);
      for (const inc of this.expand_inclusion(target, file, lookup)) out.push(...this.read(name, inc, lookup));
    }
    return out;
  }

  private expand_inclusion(target: string, context: string, lookup: Lookup): string[] {
    const { st, stamp } = track(lookup, target);
    if (!st?.isDirectory()) {
      if (stamp === null) this.log(LOGWARN, `$include target ${target} (from ${context}) does not exist`);
      this.log(LOGDEBUG, `inclusion of file ${target} from ${context}`);
      return [target];
    }
    this.log(LOGDEBUG, `inclusion of directory ${target} from ${context}`);
    try {
      return readdirSync(target)
        .filter((f) => !f.startsWith('.'))
        .sort()
        .map((f) => join(target, f))
        .filter((p) => probe(p).st?.isFile() ?? false);
    } catch (e) {
      this.log(LOGERROR, `Couldn't open directory ${target}, referenced from ${context} (${(e as Error).message})`);
      return [];
    }
  }
}
