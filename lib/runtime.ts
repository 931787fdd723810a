// One loaded generation of the server inside a process: config, hooks, plugins, logging.
// qpsmtpd keeps these in module globals; here a HUP builds a new Runtime.
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { LOGDEBUG, LOGINFO, LOGWARN } from './constants.js';
import { Config } from './config.js';
import { DnsClient, dns_servers_from } from './dns.js';
import { Hooks } from './hooks.js';
import { stderr_writer, type LogWriter } from './log.js';
import { PACKAGE_CONFIG_DIR, PACKAGE_PLUGIN_DIR, VERSION } from './paths.js';
import type { Plugin } from './plugin.js';
import {
  PluginLoadError,
  QPSMTPD_PLUGINS,
  RENAMED,
  find_plugin_file,
  import_plugin_class,
  inherit_methods,
  parse_plugin_line,
  plugin_file_for,
  plugin_name_for,
  standard_hooks,
  unknown_hook_methods,
} from './plugin-loader.js';
import { Qpsmtpd } from './qpsmtpd.js';
import { tildeexp } from './base.js';

export interface RuntimeOptions {
  /** The `--config` directory (wins over $QPSMTPD_CONFIG). */
  config_dir?: string;
  env?: Record<string, string | undefined>;
  /** The package's embedded config dir; `null` leaves it out of the lookup (tests). */
  package_config_dir?: string | null;
  /** Where the built-in logger writes lines (default: stderr). */
  log_writer?: LogWriter;
  /** Re-check config files at most this often (ms); 0 = always. */
  config_revalidate_ms?: number;
}

export class Runtime {
  readonly config: Config;
  readonly hooks = new Hooks();
  readonly env: Record<string, string | undefined>;
  readonly plugins: Plugin[] = [];
  readonly version = VERSION;
  trace_level = LOGWARN;
  plugin_dirs: string[] = [];
  dns: DnsClient;
  write_log: LogWriter;
  /** The qp plugins see while loading and for hooks that run outside a session. */
  readonly server_qp: Qpsmtpd;
  private _spool_dir?: string;
  private _size_threshold?: number;
  private _hook_timeout_ms?: number;
  private plugin_files = new Map<string, string>();

  constructor(opts: RuntimeOptions = {}) {
    this.env = opts.env ?? process.env;
    this.write_log = opts.log_writer ?? stderr_writer;
    this.config = new Config({
      dir: opts.config_dir,
      env: this.env,
      packageDir: opts.package_config_dir === null ? undefined : (opts.package_config_dir ?? PACKAGE_CONFIG_DIR),
      log: (level, msg) => this.server_qp.log(level, msg),
      ...(opts.config_revalidate_ms !== undefined ? { revalidate_ms: opts.config_revalidate_ms } : {}),
    });
    this.server_qp = new Qpsmtpd(this);
    this.dns = this.make_dns();
  }

  private make_dns(): DnsClient {
    const timeout = Number(this.config.get('dns_timeout')[0]);
    return new DnsClient({
      servers: dns_servers_from(this.env, this.config.get('dns_servers')),
      ...(timeout > 0 ? { timeout_ms: timeout * 1000 } : {}),
    });
  }

  /** Logging plugins (the `logging` file), `loglevel`, then the `plugins` list. */
  async load(): Promise<void> {
    await this.load_logging();
    await this.load_plugins();
  }

  async load_logging(): Promise<void> {
    const dirs = this.config.get('plugin_dirs');
    const plugin_dirs = dirs.length ? dirs : [PACKAGE_PLUGIN_DIR];
    for (const line of this.config.get('logging')) {
      await this.load_plugin_line(line, plugin_dirs, 'logging');
      this.server_qp.log(LOGINFO, `Loaded ${line}`);
    }
    const level = this.config.get('loglevel')[0];
    this.trace_level = level !== undefined && /^\d+$/.test(level) ? Number(level) : LOGWARN;
  }

  async load_plugins(): Promise<Plugin[]> {
    this.plugin_dirs = this.server_qp.plugin_dirs();
    const loaded: Plugin[] = [];
    for (const line of this.server_qp.config_list('plugins')) {
      loaded.push(await this.load_plugin_line(line, this.plugin_dirs, 'plugins'));
    }
    return loaded;
  }

  /** Loads one `config/plugins` line; any failure names the file, the reason and the config line. */
  async load_plugin_line(line: string, dirs: string[], list = 'plugins'): Promise<Plugin> {
    let spec = line;
    let file: string | undefined;
    try {
      const parsed = parse_plugin_line(line);
      spec = parsed.spec;
      file = this.locate(plugin_file_for(spec), dirs);
      const Cls = await import_plugin_class(file);
      const plugin = new Cls();
      plugin._plugin_name = plugin_name_for(spec);
      plugin._file = file;
      plugin._qp = this.server_qp;
      if (!list.startsWith('logging')) this.server_qp.log(LOGDEBUG, `Loading ${line} from ${file}`);
      await plugin.init?.(...parsed.args);
      const typos = unknown_hook_methods(plugin);
      if (typos.length) throw new Error(typos.join('; '));
      for (const [hook, method] of standard_hooks(plugin)) plugin.register_hook(hook, method);
      await plugin.register?.(...parsed.args);
      this.plugins.push(plugin);
      return plugin;
    } catch (err) {
      throw this.load_error(err, line, spec, list, file);
    }
  }

  private locate(file: string, dirs: string[]): string {
    const key = `${dirs.join('\0')}\0${file}`;
    let found = this.plugin_files.get(key);
    if (!found) {
      found = find_plugin_file(file, dirs);
      const renamed = RENAMED[file];
      if (!found && renamed) {
        found = find_plugin_file(renamed, dirs);
        if (found) this.server_qp.log(LOGINFO, `${file} is the old name of ${renamed}; loading ${renamed}`);
      }
      if (!found && QPSMTPD_PLUGINS.has(file)) {
        throw new Error(`qpsmtpd plugin ${file} is not ported to qpsmtpd-ts yet; remove the line or use a replacement`);
      }
      if (!found) throw new Error(`Plugin ${plugin_name_for(file)} not found in our plugin dirs (${dirs.join(', ')})`);
      this.plugin_files.set(key, found);
    }
    return found;
  }

  private load_error(err: unknown, line: string, spec: string, list: string, file?: string): PluginLoadError {
    const reason = err instanceof Error ? err.message : String(err);
    const cfg_file = path.join(this.config.config_dir(list), list);
    const n = this.line_number(cfg_file, line);
    const where = n ? `${cfg_file} line ${n}` : cfg_file;
    const msg = `${where}: plugin '${line}' failed to load${file ? ` from ${file}` : ''}: ${reason}`;
    return new PluginLoadError(msg, spec, file, cfg_file, n);
  }

  private line_number(file: string, line: string): number | undefined {
    try {
      const i = readFileSync(file, 'utf8').split('\n').findIndex((l) => l.trim() === line.trim());
      return i >= 0 ? i + 1 : undefined;
    } catch {
      return undefined;
    }
  }

  /** `isa_plugin`: the parent's methods join the child; returns the parent's prototype. */
  async inherit_plugin(child: Plugin, parent: string): Promise<Record<string, any>> {
    const dirs = this.plugin_dirs.length ? this.plugin_dirs : this.server_qp.plugin_dirs();
    const file = find_plugin_file(parent, dirs);
    if (!file) throw new Error(`cannot find plugin '${parent}'`);
    return inherit_methods(child, await import_plugin_class(file));
  }

  spool_dir(): string {
    if (this._spool_dir) return this._spool_dir;
    const qp = this.server_qp;
    let dir = path.resolve(tildeexp(qp.config('spool_dir') || '~/tmp/'));
    if (!dir.endsWith('/')) dir += '/';
    const perms = parseInt(qp.config('spool_perms') || '0700', 8);
    mkdirSync(dir, { recursive: true, mode: perms });
    if ((statSync(dir).mode & 0o7777) !== perms) {
      qp.log(LOGWARN, `Permissions on spool_dir ${dir} are not ${perms.toString(8).padStart(4, '0')}`);
    }
    return (this._spool_dir = dir);
  }

  size_threshold(): number {
    return (this._size_threshold ??= Number(this.server_qp.config('size_threshold')) || 0);
  }

  /** `hook_timeout` config in seconds (default 120): well under a client's 10-minute DATA timer. */
  hook_timeout_ms(): number {
    return (this._hook_timeout_ms ??= (Number(this.server_qp.config('hook_timeout')) || 120) * 1000);
  }

  /** Lets plugins flush and release what they hold (log files, child processes). */
  async close(): Promise<void> {
    await Promise.allSettled(this.plugins.map(async (p) => (p as { close?: () => unknown }).close?.()));
  }

  /** Drops cached config values (a HUP in the same process). */
  clear_cache(): void {
    this.config.clear_cache();
    this._spool_dir = undefined;
    this._size_threshold = undefined;
    this._hook_timeout_ms = undefined;
    this.dns = this.make_dns();
  }
}
