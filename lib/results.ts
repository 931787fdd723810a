// Per-plugin structured results on a Connection or Transaction, modelled on Haraka's
// haraka-results: `results.add(plugin, {pass: 'x'})`, `get`, `has`, `collate`, `incr`, `push`.
// See docs/connection.md.

/** The lists every `add` appends to. */
const APPEND_LISTS = ['pass', 'fail', 'skip', 'err', 'msg'] as const;
/** Keys that replace the stored value (the caller's collate settings). */
const OVERWRITE_LISTS = ['hide', 'order'] as const;
/** Keys that steer logging and are never stored. */
const LOG_OPTS = ['emit', 'human'] as const;
const RESERVED = new Set<string>([...APPEND_LISTS, ...OVERWRITE_LISTS, ...LOG_OPTS]);

export type ResultList = (typeof APPEND_LISTS)[number];

/** What is stored per plugin: the five lists, plus any other key a plugin added. */
export interface PluginResult {
  pass: unknown[];
  fail: unknown[];
  skip: unknown[];
  err: unknown[];
  msg: unknown[];
  hide?: string[];
  order?: string[];
  [key: string]: unknown;
}

/** What `add` takes: values for the lists (one or an array), `emit`, `human`, and free keys. */
export interface ResultInput {
  pass?: unknown;
  fail?: unknown;
  skip?: unknown;
  err?: unknown;
  msg?: unknown;
  hide?: string[];
  order?: string[];
  /** Log the collated summary at LOGINFO through the plugin's own `log` (when it has one). */
  emit?: boolean;
  /** A summary to log instead of the collated one (with `emit`). */
  human?: string;
  [key: string]: unknown;
}

/** A plugin, or its name: a Plugin (`plugin_name()`), a Haraka-style `{name}`, or a string. */
export type PluginRef = string | { plugin_name(): string } | { name: string };

const LOGINFO = 6;

function name_of(plugin: PluginRef): string {
  if (typeof plugin === 'string') return plugin;
  if (plugin && typeof (plugin as { plugin_name?: unknown }).plugin_name === 'function') {
    return (plugin as { plugin_name(): string }).plugin_name();
  }
  if (plugin && typeof (plugin as { name?: unknown }).name === 'string') return (plugin as { name: string }).name;
  throw new TypeError('results: the first argument must be a plugin or a plugin name');
}

function fresh(): PluginResult {
  return { pass: [], fail: [], skip: [], err: [], msg: [] };
}

function text(v: unknown): string {
  if (v instanceof Error) return v.message;
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object') {
    try {
      return JSON.stringify(v);
    } catch {
      return String(v);
    }
  }
  return String(v);
}

export class Results {
  private store = new Map<string, PluginResult>();

  private entry(name: string): PluginResult {
    let r = this.store.get(name);
    if (!r) this.store.set(name, (r = fresh()));
    return r;
  }

  /**
   * Stores results of `plugin`: `pass`, `fail`, `skip`, `err` and `msg` values are appended
   * (an array appends each element), `hide`/`order` replace, any other key is stored as is
   * (a key starting with `_` is private: kept, never collated). Returns the collated summary.
   * Nothing is logged unless `emit` is set (haraka-results also logs every `err`; here the
   * plugins keep their own log lines).
   */
  add(plugin: PluginRef, obj: ResultInput): string {
    const name = name_of(plugin);
    const r = this.entry(name);
    for (const key of APPEND_LISTS) {
      const v = obj[key];
      if (v === undefined || v === null || v === '') continue;
      if (Array.isArray(v)) r[key].push(...v);
      else r[key].push(v);
    }
    for (const key of OVERWRITE_LISTS) {
      const v = obj[key];
      if (Array.isArray(v)) r[key] = v.map(String);
    }
    for (const [key, v] of Object.entries(obj)) {
      if (!RESERVED.has(key)) r[key] = v;
    }
    const human = this.collate(name) ?? '';
    if (obj.emit) {
      const log = typeof plugin === 'object' ? (plugin as { log?: unknown }).log : undefined;
      if (typeof log === 'function') (log as (level: number, ...m: unknown[]) => void).call(plugin, LOGINFO, obj.human ?? human);
    }
    return human;
  }

  /** Adds numbers to counters (`{karma: -1}`); a missing or non-numeric counter starts at 0. */
  incr(plugin: PluginRef, obj: Record<string, number | string>): void {
    const r = this.entry(name_of(plugin));
    for (const [key, v] of Object.entries(obj)) {
      const add = Number.parseFloat(String(v)) || 0;
      const cur = Number.parseFloat(String(r[key]));
      r[key] = (Number.isNaN(cur) ? 0 : cur) + add;
    }
  }

  /** Appends to arbitrary arrays (`{dns_recs: 'name1'}`), created when missing. */
  push(plugin: PluginRef, obj: Record<string, unknown>): void {
    const r = this.entry(name_of(plugin));
    for (const [key, v] of Object.entries(obj)) {
      const cur = r[key];
      const list: unknown[] = Array.isArray(cur) ? cur : cur === undefined ? [] : [cur];
      if (Array.isArray(v)) list.push(...v);
      else list.push(v);
      r[key] = list;
    }
  }

  /** The stored results of one plugin (the live object), or undefined. */
  get(plugin: PluginRef): PluginResult | undefined {
    return this.store.get(name_of(plugin));
  }

  /** Every plugin's results, by plugin name. */
  get_all(): Record<string, PluginResult> {
    return Object.fromEntries(this.store);
  }

  /**
   * True when `key` of `plugin`'s results matches: for a list, some element equals `match` (a
   * string, number or boolean) or matches it (a RegExp, tested against string elements); for a
   * string value, equality or a RegExp match.
   */
  has(plugin: PluginRef, key: string, match: string | number | boolean | RegExp): boolean {
    const r = this.store.get(name_of(plugin));
    if (!r) return false;
    const v = r[key];
    const hit = (item: unknown): boolean => {
      if (match instanceof RegExp) {
        match.lastIndex = 0;
        return typeof item === 'string' && match.test(item);
      }
      return item === match;
    };
    if (Array.isArray(v)) return v.some(hit);
    if (v === undefined || v === null) return false;
    return hit(v);
  }

  /**
   * A one-line summary for logs, as haraka-results writes it: the free (non-private,
   * non-hidden) keys first as `key: value`, then the non-empty lists as `list:a, b` in the
   * order `pass, fail, skip, err, msg` (or the stored `order`), joined with `, `.
   * Undefined when the plugin stored nothing.
   */
  collate(plugin: PluginRef): string | undefined {
    const r = this.store.get(name_of(plugin));
    if (!r) return undefined;
    // asked after every add(): no Set, no entries array
    const hide: readonly string[] = r.hide ?? [];
    const parts: string[] = [];
    for (const key of Object.keys(r)) {
      if (RESERVED.has(key) || key.charCodeAt(0) === 95 /* _ */ || hide.includes(key)) continue;
      const v = r[key];
      if (v === undefined || (Array.isArray(v) && v.length === 0)) continue;
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) continue;
      parts.push(`${key}: ${Array.isArray(v) ? v.map(text).join(',') : text(v)}`);
    }
    const order = r.order?.length ? r.order : APPEND_LISTS;
    for (const key of order) {
      const v = r[key];
      if (!Array.isArray(v) || !v.length || hide.includes(key)) continue;
      parts.push(`${key}:${v.map(text).join(', ')}`);
    }
    return parts.join(', ');
  }

  /** Forgets everything (or one plugin's results). */
  clear(plugin?: PluginRef): void {
    if (plugin === undefined) this.store.clear();
    else this.store.delete(name_of(plugin));
  }
}
