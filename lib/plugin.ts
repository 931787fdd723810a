// Qpsmtpd::Plugin: the base class of every plugin, with qpsmtpd's helpers (section 6.2).
import {
  DECLINED,
  DENY,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  LOGWARN,
  is_hook_name,
} from './constants.js';
import { is_ipv6, is_localhost, is_valid_ip, tildeexp } from './base.js';
import type { DnsClient, MxRecord } from './dns.js';
import { DB, type DBArgs } from './db.js';
import { call_signal, type HookCall } from './hooks.js';
import type { Address } from './address.js';
import type { Connection } from './connection.js';
import type { Qpsmtpd } from './qpsmtpd.js';
import type { Transaction } from './transaction.js';

export class PluginArgumentError extends Error {}

export interface ArgSpec {
  /** Known keys with their defaults (undefined = no default). `loglevel` is always allowed. */
  [key: string]: string | number | boolean | undefined;
}

export abstract class Plugin {
  /** Set by the loader: qpsmtpd's mangled plugin name (`queue::smtp_2dforward`). */
  _plugin_name = '';
  /** Path of the file the plugin was loaded from. */
  _file = '';
  /** Plugin arguments by name, as qpsmtpd plugins keep them in `$self->{_args}`. */
  _args: Record<string, any> = {};
  /** Set per call: the session being served (on a session view) or the loading server. */
  _qp!: Qpsmtpd;
  /** The hook currently running (per call). */
  _hook?: string;
  /** The hook call running on this view (set by the runner, per call). */
  _call?: HookCall;
  /** qpsmtpd's behaviour on a throw: log and try the next plugin instead of answering 451. */
  continue_on_error = false;
  /** Per-plugin hook timeout in seconds (default: the `hook_timeout` config, 120 s). */
  hook_timeout?: number;
  /** The loaded plugin object itself; session views inherit it. Per-plugin state such as the DB lives there. */
  readonly _loaded_plugin: Plugin = this;
  /** The store of `db()`, shared by every session of this loaded plugin (qpsmtpd's `$self->{db}`). */
  _db?: DB;
  /** The arguments `db()` uses (qpsmtpd's `$self->{db_args}`). */
  _db_args?: DBArgs;

  // init(...args) and register(...args) are optional; subclasses define them.
  init?(...args: string[]): void | Promise<void>;
  register?(...args: string[]): void | Promise<void>;

  plugin_name(): string {
    return this._plugin_name;
  }

  hook_name(): string | undefined {
    return this._hook;
  }

  /**
   * Aborted when the running hook times out; pass it to anything cancellable. Made on first
   * use, so hooks that never ask for it cost no AbortController.
   */
  get signal(): AbortSignal | undefined {
    return this._call ? call_signal(this._call) : undefined;
  }

  get qp(): Qpsmtpd {
    return this._qp;
  }

  get connection(): Connection {
    return this._qp.connection;
  }

  get transaction(): Transaction {
    return this._qp.transaction;
  }

  /** Registers `method` (a method name or a function) for `hook`; `unshift` puts it first. */
  register_hook(hook: string, method: string | ((...args: any[]) => unknown), unshift = false): void {
    if (!is_hook_name(hook)) throw new PluginArgumentError(`${this.plugin_name()}: Invalid hook: ${hook}`);
    if (hook !== 'logging') this.log(LOGDEBUG, 'hooking', hook);
    this._qp.hooks.register(hook, { plugin: this, method, name: this.plugin_name() }, unshift);
  }

  log(level: number, ...msg: unknown[]): void {
    if (this._hook === 'logging') return;
    this._qp.varlog(this.adjust_log_level(level, this.plugin_name()), this._hook, this.plugin_name(), ...msg);
  }

  /** The `loglevel` argument: `N` replaces the level, `+N`/`-N` shifts it within 0..7. */
  adjust_log_level(level: number, plugin_name: string): number {
    const adj = this._args.loglevel;
    if (adj === undefined || adj === null || adj === '') return level;
    const s = String(adj);
    if (/^[0-7]$/.test(s)) return Number(s);
    const m = /^([+-])(\d)$/.exec(s);
    if (!m) {
      this._args.loglevel = undefined; // complain once
      this.log(LOGERROR, `invalid ${plugin_name} loglevel setting (${s})`);
      return level;
    }
    const n = m[1] === '+' ? level + Number(m[2]) : level - Number(m[2]);
    return Math.min(7, Math.max(0, n));
  }

  config(name: string, addr?: Address): string | undefined {
    return this._qp.config(name, addr);
  }

  config_list(name: string, addr?: Address): string[] {
    return this._qp.config_list(name, addr);
  }

  config_map(name: string): Map<string, string> {
    return this._qp.config_map(name);
  }

  spool_dir(): string {
    return this._qp.spool_dir();
  }

  auth_user(): string {
    return this._qp.auth_user();
  }

  auth_mechanism(): string {
    return this._qp.auth_mechanism();
  }

  /** A temp file name in the spool dir, removed when the transaction ends. */
  temp_file(): string {
    const file = this._qp.temp_file();
    this.transaction.register_temp_file(file);
    return file;
  }

  /** A temp directory in the spool dir, removed with its contents when the transaction ends. */
  temp_dir(mask?: number): string {
    const dir = this._qp.temp_dir(mask);
    this.transaction.register_temp_dir(dir);
    return dir;
  }

  /**
   * qpsmtpd plugin inheritance: loads plugin `parent` from the plugin dirs and makes its
   * methods available on this plugin (this plugin's own methods win). Returns the parent's
   * prototype so `parent.register.call(this, ...args)` works like `SUPER::register`.
   */
  async isa_plugin(parent: string): Promise<Record<string, any>> {
    return this._qp.runtime.inherit_plugin(this, parent);
  }

  /**
   * Parses `key value` arguments into `_args` with defaults. Unknown keys and a missing value
   * are start-up errors naming the plugin and the argument.
   */
  parse_args(args: string[], spec: ArgSpec): Record<string, any> {
    const known = new Set([...Object.keys(spec), 'loglevel']);
    const out: Record<string, any> = {};
    for (const [k, v] of Object.entries(spec)) if (v !== undefined) out[k] = v;
    for (let i = 0; i < args.length; i += 2) {
      const key = args[i]!;
      if (!known.has(key)) {
        throw new PluginArgumentError(
          `plugin ${this.plugin_name()}: unknown argument '${key}' (known: ${[...known].sort().join(', ')})`,
        );
      }
      if (i + 1 >= args.length) throw new PluginArgumentError(`plugin ${this.plugin_name()}: argument '${key}' needs a value`);
      out[key] = args[i + 1];
    }
    this._args = out;
    return out;
  }

  get_reject(smtp_msg?: string, log_msg?: string): [number, string] | number {
    const smtp = smtp_msg || 'unspecified error';
    const log = log_msg ? `, ${log_msg}` : '';
    const reject = this._args.reject;
    if (reject !== undefined && reject !== null && (!reject || reject === '0')) {
      this.log(LOGINFO, `fail, tolerated${log}`);
      return DECLINED;
    }
    if (reject === 'naughty') {
      this.log(LOGINFO, `fail, NAUGHTY${log}`);
      return this.store_deferred_reject(`(${this.plugin_name()}) ${smtp}`);
    }
    this.log(LOGINFO, `fail${log}`);
    return [this.get_reject_type(), smtp];
  }

  get_reject_type(def: number = DENY, spec?: string): number {
    const deny = spec || this._args.reject_type;
    if (!deny) return def;
    const s = String(deny);
    if (/^(temp|soft)$/i.test(s)) return DENYSOFT;
    if (/^(perm|hard)$/i.test(s)) return DENY;
    if (s === 'disconnect') return DENY_DISCONNECT;
    if (s === 'temp_disconnect') return DENYSOFT_DISCONNECT;
    return def;
  }

  /** Stores a rejection for the naughty plugin to deliver later; returns DECLINED. */
  store_deferred_reject(smtp_msg: string): number {
    const c = this.connection;
    const prev = c.notes('naughty');
    c.notes('naughty', prev ? `${prev}\r\n${smtp_msg}` : smtp_msg);
    if (!c.notes('naughty_reject_type')) c.notes('naughty_reject_type', this._args.reject_type);
    return DECLINED;
  }

  store_auth_results(result: string): void {
    const c = this.connection;
    const prev = c.notes('authentication_results');
    if (!prev) {
      c.notes('authentication_results', result);
      return;
    }
    const ar = `${prev}; ${result}`;
    this.log(LOGDEBUG, `auth-results: ${ar}`);
    c.notes('authentication_results', ar);
  }

  is_immune(): boolean {
    if (this.connection.relay_client()) {
      this.log(LOGINFO, 'skip, relay client');
      return true;
    }
    if (this.connection.notes('whitelisthost')) {
      this.log(LOGINFO, 'skip, whitelisted host');
      return true;
    }
    if (this.transaction.notes('whitelistsender')) {
      this.log(LOGINFO, 'skip, whitelisted sender');
      return true;
    }
    return false;
  }

  is_naughty(...setit: [unknown?]): any {
    const c = this.connection;
    if (!setit.length || setit[0] === undefined) return c.notes('naughty');
    c.notes('naughty', setit[0]);
    c.notes('rejected', setit[0]);
    if (c.notes('naughty')) {
      this.log(LOGINFO, 'skip, naughty');
      return true;
    }
    if (c.notes('rejected')) {
      this.log(LOGINFO, 'skip, already rejected');
      return true;
    }
    return false;
  }

  adjust_karma(value: number): number {
    const karma = (Number(this.connection.notes('karma')) || 0) + value;
    this.log(LOGINFO, `karma ${value} (${karma})`);
    this.connection.notes('karma', karma);
    return value;
  }

  /**
   * Throws `Invalid db arguments` unless `args` is one object or an even-length key/value list
   * (qpsmtpd's `validate_db_args`, without its leading plugin argument).
   */
  validate_db_args(...args: unknown[]): void {
    if (args.length === 1 && is_plain_object(args[0])) return;
    if (args.length % 2) throw new PluginArgumentError('Invalid db arguments');
  }

  /**
   * The arguments for `db()`: given ones (an object or key/value pairs) replace the stored ones;
   * `name` defaults to the plugin name and `cnx_timeout` to 1. Returns a copy.
   */
  db_args(args?: DBArgs): DBArgs;
  db_args(...pairs: unknown[]): DBArgs;
  db_args(...args: unknown[]): DBArgs {
    this.validate_db_args(...args);
    const home = this._loaded_plugin;
    const given = db_args_object(args);
    if (Object.keys(given).length) home._db_args = given;
    const a = (home._db_args ??= {});
    a.name ||= this.plugin_name();
    a.cnx_timeout ||= 1;
    return { ...a };
  }

  /**
   * The plugin's key/value store (`Qpsmtpd::DB->new(db_args)`), made on first call and then
   * shared by all sessions of this loaded plugin in this process; later arguments are ignored.
   */
  db(args?: DBArgs): DB;
  db(...pairs: unknown[]): DB;
  db(...args: unknown[]): DB {
    this.validate_db_args(...args);
    const home = this._loaded_plugin;
    if (home._db) return home._db;
    const extra: DBArgs = {};
    if (home._qp) {
      try {
        extra.config_dir = home._qp.config_dir('plugins');
      } catch {
        /* no config layer: the DB's own default */
      }
      extra.warn = (msg: string) => home.log(LOGWARN, msg.replace(/\n+$/, ''));
    }
    return (home._db = DB.create({ ...extra, ...this.db_args(...args) }));
  }

  // Qpsmtpd::Base helpers
  get_resolver(): DnsClient {
    return this._qp.runtime.dns;
  }
  resolve_a(name: string): Promise<string[]> {
    return this.get_resolver().resolve_a(name);
  }
  resolve_aaaa(name: string): Promise<string[]> {
    return this.get_resolver().resolve_aaaa(name);
  }
  resolve_mx(name: string): Promise<MxRecord[]> {
    return this.get_resolver().resolve_mx(name);
  }
  resolve_ns(name: string): Promise<string[]> {
    return this.get_resolver().resolve_ns(name);
  }
  resolve_ptr(ipOrName: string): Promise<string[]> {
    return this.get_resolver().resolve_ptr(ipOrName);
  }
  is_localhost(ip: string | undefined): boolean {
    return is_localhost(ip);
  }
  is_valid_ip(ip: string | undefined): boolean {
    return is_valid_ip(ip);
  }
  is_ipv6(ip: string | undefined): boolean {
    return is_ipv6(ip);
  }
  tildeexp(path: string): string {
    return tildeexp(path);
  }
}

function is_plain_object(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function db_args_object(args: unknown[]): DBArgs {
  if (args.length === 1 && is_plain_object(args[0])) return { ...args[0] };
  const out: DBArgs = {};
  for (let i = 0; i + 1 < args.length; i += 2) out[String(args[i])] = args[i + 1];
  return out;
}
