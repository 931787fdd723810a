// The object plugins reach as `this.qp` (qpsmtpd's Qpsmtpd / Qpsmtpd::SMTP session object):
// config lookups through hooks, logging, spool files, hook running, auth state.
import { mkdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { DECLINED, OK } from './constants.js';
import { Address } from './address.js';
import { Connection } from './connection.js';
import {
  run_hooks,
  run_hooks_no_respond,
  run_hooks_sync,
  type HookEntry,
  type HookResult,
  type HookSession,
  type Hooks,
} from './hooks.js';
import { format_log_line, sanitize_log_text } from './log.js';
import { PACKAGE_PLUGIN_DIR } from './paths.js';
import type { Plugin } from './plugin.js';
import type { Runtime } from './runtime.js';
import { Transaction } from './transaction.js';

let temp_counter = 0;

export class Qpsmtpd implements HookSession {
  readonly hooks: Hooks;
  connection: Connection;
  protected _transaction?: Transaction;
  _auth?: number;
  _auth_user?: string;
  _auth_mechanism?: string;
  /** Per-connection config values from the `listener_parameters` hook (docs/listeners.md). */
  listener_params?: Record<string, string[]>;
  private views = new Map<Plugin, Plugin>();
  private in_logging = false;
  /** The local address listener_values last saw, and its `via/<ip>` overlay directory name. */
  private via_ip?: string;
  private via_sub?: string;

  constructor(
    readonly runtime: Runtime,
    connection: Connection = new Connection(),
  ) {
    this.hooks = runtime.hooks;
    this.connection = connection;
  }

  /** The current transaction, created on first use as qpsmtpd's SMTP::transaction does. */
  get transaction(): Transaction {
    return (this._transaction ??= this.new_transaction());
  }

  /** A transaction whose uuid is `<connection uuid>.<the number its DATA will get>`. */
  private new_transaction(): Transaction {
    const t = new Transaction(this);
    const c = this.connection;
    t.uuid(`${c.uuid()}.${c.transaction_count() + 1}`);
    return t;
  }

  has_transaction(): boolean {
    return this._transaction !== undefined;
  }

  /** Runs `reset_transaction` hooks for an existing transaction, cleans it up, starts a new one. */
  async reset_transaction(): Promise<Transaction> {
    const old = this._transaction;
    if (old) {
      await this.run_hooks('reset_transaction');
      await old.cleanup();
    }
    return (this._transaction = this.new_transaction());
  }

  // -- hooks ---------------------------------------------------------------------------------

  plugin_view(plugin: Plugin): Plugin {
    let view = this.views.get(plugin);
    if (!view) {
      // Object.create gives each session copy-on-write state over the loaded plugin.
      view = Object.create(plugin) as Plugin;
      view._qp = this;
      this.views.set(plugin, view);
    }
    return view;
  }

  hook_transaction(): unknown {
    return this.transaction;
  }

  hook_timeout_ms(plugin: Plugin): number {
    return plugin.hook_timeout !== undefined ? plugin.hook_timeout * 1000 : this.runtime.hook_timeout_ms();
  }

  run_hooks(hook: string, ...args: unknown[]): Promise<HookResult> {
    // most hooks have no plugin: no async frame for them
    if (!this.hooks.has(hook)) return Promise.resolve({ rc: 0, msg: [] });
    return run_hooks(this, hook, args);
  }

  run_hooks_no_respond(hook: string, ...args: unknown[]): Promise<unknown[]> {
    if (!this.hooks.has(hook)) return Promise.resolve([0, '']);
    return run_hooks_no_respond(this, hook, args);
  }

  /** qpsmtpd's `hooks(name)`: the registrations of one hook (empty if none). */
  hook_entries(name: string): readonly HookEntry[] {
    return this.hooks.get(name);
  }

  // -- config --------------------------------------------------------------------------------

  /** First value of a config setting (qpsmtpd's scalar-context `config`). */
  config(name: string, addr?: Address): string | undefined {
    return this.config_values(name, addr)[0];
  }

  /**
   * Every value (qpsmtpd's list-context `config`): user_config hooks, then the per-listener
   * values (`listener_parameters` hook, `via/<local ip>/` files), config hooks, then files.
   */
  config_list(name: string, addr?: Address): string[] {
    return [...this.config_values(name, addr)];
  }

  /** config_list without the copy: the caller must not change the array. */
  private config_values(name: string, addr?: Address): readonly string[] {
    if (addr && typeof (addr as { address?: unknown }).address === 'function' && this.hooks.has('user_config')) {
      const r = run_hooks_sync(this, 'user_config', [addr, name], (m) => this.report(m));
      if (r[0] === OK) return r.slice(1) as string[];
    }
    const per_listener = this.listener_values(name);
    if (per_listener) return per_listener;
    if (this.hooks.has('config')) {
      const r = run_hooks_sync(this, 'config', [name], (m) => this.report(m));
      if (r[0] === OK) return r.slice(1) as string[];
    }
    return this.runtime.config.values(name);
  }

  /**
   * The per-listener value of `name` for this connection, if there is one: what the
   * `listener_parameters` hook returned, else the `via/<local ip>/<name>` file (docs/listeners.md).
   */
  listener_config(name: string): string[] | undefined {
    const v = this.listener_values(name);
    return v && [...v];
  }

  private listener_values(name: string): readonly string[] | undefined {
    const p = this.listener_params?.[name];
    if (p) return p;
    const ip = this.connection.local_ip();
    if (ip !== this.via_ip) {
      this.via_ip = ip;
      this.via_sub = ip && isIP(ip) ? `via/${ip}` : undefined;
    }
    return this.via_sub === undefined ? undefined : this.runtime.config.overlay_values(this.via_sub, name);
  }

  /** A CDB map config (`morercpthosts`…). */
  config_map(name: string): Map<string, string> {
    return this.runtime.config.get_map(name);
  }

  config_dir(name: string): string {
    return this.runtime.config.config_dir(name);
  }

  plugin_dirs(): string[] {
    const dirs = this.config_list('plugin_dirs');
    return dirs.length ? dirs : [PACKAGE_PLUGIN_DIR];
  }

  // -- logging -------------------------------------------------------------------------------

  log(level: number, ...msg: unknown[]): void {
    this.varlog(level, undefined, undefined, ...msg);
  }

  logs(level: number): boolean {
    return level <= this.runtime.trace_level || this.hooks.has('logging');
  }

  varlog(level: number, hook: string | undefined, plugin: string | undefined, ...msg: unknown[]): void {
    const has_loggers = this.hooks.has('logging');
    if (!has_loggers && level > this.runtime.trace_level) return;
    const text = sanitize_log_text(msg.map((m) => (m === undefined ? '' : String(m))).join(' '));
    if (has_loggers) {
      if (this.in_logging) return;
      this.in_logging = true;
      let r: unknown[];
      try {
        r = run_hooks_sync(this, 'logging', [level, hook, plugin, text], (m) => this.report(m));
      } finally {
        this.in_logging = false;
      }
      if (r[0] === DECLINED || r[0] === OK) return;
      if (level > this.runtime.trace_level) return;
    }
    this.runtime.write_log(format_log_line(this.log_id(), hook, plugin, text));
  }

  /**
   * What prefixes built-in log lines: the pid, as qpsmtpd writes it, and in an SMTP session the
   * connection's uuid after it (`<pid> <uuid>`), so the lines of one session can be told apart.
   */
  log_id(): string | number {
    const uuid = this.log_uuid();
    return uuid ? `${process.pid} ${uuid}` : process.pid;
  }

  /** The uuid of the SMTP session whose lines these are (undefined outside sessions). */
  log_uuid(): string | undefined {
    return undefined;
  }

  /** Problems inside logging/config hooks go straight to the built-in writer (no recursion). */
  private report(msg: string): void {
    this.runtime.write_log(format_log_line(this.log_id(), undefined, undefined, sanitize_log_text(msg)));
  }

  // -- spool ---------------------------------------------------------------------------------

  spool_dir(): string {
    return this.runtime.spool_dir();
  }

  /** `<spool_dir><time>:<pid>:<counter>`: unique within the host, a name only. */
  temp_file(): string {
    return `${this.spool_dir()}${Math.floor(Date.now() / 1000)}:${process.pid}:${temp_counter++}`;
  }

  temp_dir(mask = 0o700): string {
    const dir = this.temp_file();
    mkdirSync(dir, { mode: mask });
    return dir;
  }

  size_threshold(): number {
    return this.runtime.size_threshold();
  }

  // -- session facts -------------------------------------------------------------------------

  version(): string {
    return this.runtime.version;
  }

  authenticated(): number | '' {
    return this._auth ?? '';
  }

  auth_user(): string {
    return this._auth_user ?? '';
  }

  auth_mechanism(): string {
    return this._auth_mechanism ?? '';
  }

  /** An Address that can look up per-user config (`Qpsmtpd::address`). */
  address(text?: string): Address | undefined {
    const addr = Address.parse(text);
    addr?.qp(this);
    return addr;
  }
}
