// The public API for plugin authors: `import { Plugin, DENY, LOGINFO } from 'qpsmtpd-ts'`.
export * from './constants.js';
export { Plugin, PluginArgumentError, type ArgSpec } from './plugin.js';
export { Connection, normalize_ip, type StartArgs } from './connection.js';
export { Transaction, type TransactionHost } from './transaction.js';
export { MailHeader } from './header.js';
export { Address, canonify } from './address.js';
export { Config, ConfigError } from './config.js';
export { dsn, type DsnHelper, type DsnName, type DsnResult } from './dsn.js';
export { Hooks, HookTimeoutError, type HookResult, type HookEntry, type ParserFn } from './hooks.js';
export { Qpsmtpd } from './qpsmtpd.js';
export { SmtpSession } from './smtp/session.js';
export { Runtime, type RuntimeOptions } from './runtime.js';
export { PluginLoadError, plugin_name_for } from './plugin-loader.js';
export { DnsClient, type DnsAnswer, type DnsOptions, type MxRecord } from './dns.js';
export { is_localhost, is_valid_ip, is_ipv6, tildeexp } from './base.js';
export { format_log_line, sanitize_log_text } from './log.js';
export { VERSION } from './paths.js';
export * from './auth.js';
