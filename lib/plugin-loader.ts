// Finding and importing plugin modules named by `config/plugins` lines (qpsmtpd 6.1).
import { existsSync, statSync } from 'node:fs';
import { register } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { HOOK_NAMES, hook_method_name } from './constants.js';
import { PACKAGE_ROOT } from './paths.js';
import { Plugin } from './plugin.js';

export type PluginClass = new () => Plugin;

export class PluginLoadError extends Error {
  constructor(
    message: string,
    readonly spec: string,
    readonly file?: string,
    readonly config_file?: string,
    readonly config_line?: number,
  ) {
    super(message);
    this.name = 'PluginLoadError';
  }
}

export interface PluginLine {
  spec: string;
  args: string[];
}

/** A `config/plugins` line: printable ASCII only, split on whitespace. */
export function parse_plugin_line(line: string): PluginLine {
  if (!/^[ -~]+$/.test(line)) throw new PluginLoadError(`unsafe characters in config line: ${JSON.stringify(line)}`, line);
  const [spec, ...args] = line.trim().split(/\s+/);
  return { spec: spec!, args };
}

/** qpsmtpd's plugin name: `queue/smtp-forward` -> `queue::smtp_2dforward`, `relay:0` -> `relay_3a0`. */
export function plugin_name_for(spec: string): string {
  const hex = (c: string) => '_' + c.charCodeAt(0).toString(16).padStart(2, '0');
  return spec.replace(/[^A-Za-z0-9_/]/g, hex).replace(/(\/+)(\d?)/g, (_m, _s, d: string) => '::' + (d ? hex(d) : ''));
}

/** The file part of a spec: the `:N` instance suffix removed. */
export function plugin_file_for(spec: string): string {
  return spec.replace(/:\d+$/, '');
}

const EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'];

/** Debian's qpsmtpd 0.94 packaging names these plugins `check_*`; the files are the new ones. */
export const RENAMED: Readonly<Record<string, string>> = {
  check_earlytalker: 'earlytalker',
  check_relay: 'relay',
  check_spamhelo: 'helo',
  check_badmailfrom: 'badmailfrom',
  check_badrcptto: 'badrcptto',
  check_loop: 'loop',
};

/** Every plugin qpsmtpd 1.00 ships, so a config naming one we lack gets a clear message. */
export const QPSMTPD_PLUGINS: ReadonlySet<string> = new Set(
  (
    'auth/auth_checkpassword auth/auth_cvm_unix_local auth/auth_flat_file auth/auth_imap auth/auth_ldap_bind ' +
    'auth/auth_vpopmail auth/auth_vpopmail_sql auth/auth_vpopmaild auth/authdeny badmailfrom badmailfromto badrcptto ' +
    'bogus_bounce connection_time content_log count_unrecognized_commands dkim dmarc dns_whitelist_soft dnsbl ' +
    'domainkeys dont_require_anglebrackets dspam earlytalker fcrdns greylisting headers helo help hosts_allow ' +
    'http_config ident/geoip ident/p0f karma loadcheck logging/adaptive logging/apache logging/connection_id ' +
    'logging/devnull logging/file logging/syslog logging/transaction_id logging/warn loop milter naughty noop_counter ' +
    'parse_addr_withhelo qmail_deliverable queue/exim-bsmtp queue/maildir queue/postfix-queue queue/qmail-queue ' +
    'queue/smtp-forward quit_fortune random_error rcpt_map rcpt_ok rcpt_regexp relay resolvable_fromhost rhsbl ' +
    'sender_permitted_from spamassassin stunnel tls uribl user_config virus/aveclient virus/bitdefender virus/clamav ' +
    'virus/clamdscan virus/hbedv virus/kavscanner virus/klez_filter virus/sophie virus/uvscan whitelist'
  ).split(' '),
);

/** First plugin dir holding `<file>` with a module extension. A bare Perl plugin file is reported. */
export function find_plugin_file(file: string, dirs: string[]): string | undefined {
  for (const dir of dirs) {
    for (const ext of EXTENSIONS) {
      const candidate = path.resolve(dir, file + ext);
      if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
    }
    const bare = path.resolve(dir, file);
    if (existsSync(bare) && statSync(bare).isFile()) {
      throw new PluginLoadError(
        `${bare} looks like a Perl qpsmtpd plugin; qpsmtpd-ts loads .ts/.js modules (see docs/writing-plugins.md)`,
        file,
        bare,
      );
    }
  }
  return undefined;
}

let hooks_registered = false;

/**
 * Lets plugin files outside the package be TypeScript and `import … from 'qpsmtpd-ts'`:
 * module hooks transpile `.ts` and resolve the package name to this running copy.
 */
function ensure_module_hooks(): void {
  // Running from .ts source means a TypeScript-aware runner (vitest) already does both.
  if (hooks_registered || import.meta.url.endsWith('.ts')) return;
  hooks_registered = true;
  const entry = new URL('./index.js', import.meta.url).href;
  const built_lib = new URL('./', import.meta.url).href;
  const source_lib = pathToFileURL(path.join(PACKAGE_ROOT, 'lib') + '/').href;
  register(new URL('./ts-module-hooks.js', import.meta.url), { data: { entry, source_lib, built_lib } });
}

export async function import_plugin_class(file: string): Promise<PluginClass> {
  ensure_module_hooks();
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  return plugin_class_from(mod, file);
}

/** A default-exported Plugin subclass, or (Haraka style) a module of `hook_*` functions. */
export function plugin_class_from(mod: Record<string, unknown>, file: string): PluginClass {
  const d = mod.default as ({ prototype?: Record<string, unknown> } & (() => unknown)) | undefined;
  if (typeof d === 'function' && typeof d.prototype?.register_hook === 'function') return d as unknown as PluginClass;
  const fns = Object.entries(mod).filter(([k, v]) => typeof v === 'function' && /^(hook_|register$|init$)/.test(k));
  if (!fns.some(([k]) => k.startsWith('hook_'))) {
    throw new PluginLoadError(`${file} exports neither a Plugin class (export default class extends Plugin) nor hook_* functions`, file, file);
  }
  class ModulePlugin extends Plugin {}
  for (const [k, v] of fns) Object.defineProperty(ModulePlugin.prototype, k, { value: v, writable: true, configurable: true });
  return ModulePlugin;
}

const KNOWN_METHODS: ReadonlySet<string> = new Set(HOOK_NAMES.map(hook_method_name));

function method_names(obj: object): Set<string> {
  const names = new Set<string>();
  for (let p: object | null = obj; p && p !== Plugin.prototype && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) if (typeof (obj as Record<string, unknown>)[k] === 'function') names.add(k);
  }
  return names;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** `hook_*` methods that name no hook: a typo that would otherwise silently never run. */
export function unknown_hook_methods(plugin: Plugin): string[] {
  const problems: string[] = [];
  for (const name of method_names(plugin)) {
    if (!name.startsWith('hook_') || KNOWN_METHODS.has(name)) continue;
    const best = [...KNOWN_METHODS].sort((x, y) => distance(name, x) - distance(name, y))[0]!;
    problems.push(`method ${name} is not a known hook${distance(name, best) <= 3 ? ` (did you mean ${best}?)` : ''}`);
  }
  return problems;
}

/** The hooks a plugin's `hook_*` methods register, in qpsmtpd's hook order. */
export function standard_hooks(plugin: Plugin): Array<[hook: string, method: string]> {
  const out: Array<[string, string]> = [];
  for (const hook of HOOK_NAMES) {
    const method = hook_method_name(hook);
    if (typeof (plugin as unknown as Record<string, unknown>)[method] === 'function') out.push([hook, method]);
  }
  return out;
}

/** Copies methods of `parent` (and its bases below Plugin) that `child` lacks onto `child`. */
export function inherit_methods(child: Plugin, parent: PluginClass): Record<string, any> {
  for (const name of method_names(parent.prototype)) {
    if (name === 'constructor' || name in child) continue;
    Object.defineProperty(child, name, {
      value: (parent.prototype as unknown as Record<string, unknown>)[name],
      writable: true,
      configurable: true,
    });
  }
  return parent.prototype as unknown as Record<string, any>;
}
