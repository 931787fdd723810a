// qpsmtpd's return codes and log levels (Qpsmtpd::Constants), with exact name<->number lookups.

export const OK = 900;
export const DENY = 901;
export const DENYSOFT = 902;
export const DENY_DISCONNECT = 903;
/** Deprecated alias of DENY_DISCONNECT, kept because old plugins and config files name it. */
export const DENYHARD = 903;
export const DENYSOFT_DISCONNECT = 904;
export const DECLINED = 909;
export const DONE = 910;

export const LOGDEBUG = 7;
export const LOGINFO = 6;
export const LOGNOTICE = 5;
export const LOGWARN = 4;
export const LOGERROR = 3;
export const LOGCRIT = 2;
export const LOGALERT = 1;
export const LOGEMERG = 0;
export const LOGRADAR = 0;

export type ReturnCode = number;

/** Names in the order qpsmtpd-ts reports them; the first name of a value is its canonical name. */
export const RETURN_CODES: Readonly<Record<string, number>> = Object.freeze({
  OK,
  DENY,
  DENYSOFT,
  DENY_DISCONNECT,
  DENYHARD,
  DENYSOFT_DISCONNECT,
  DECLINED,
  DONE,
});

export const LOG_LEVELS: Readonly<Record<string, number>> = Object.freeze({
  LOGDEBUG,
  LOGINFO,
  LOGNOTICE,
  LOGWARN,
  LOGERROR,
  LOGCRIT,
  LOGALERT,
  LOGEMERG,
  LOGRADAR,
});

function lookup(table: Readonly<Record<string, number>>, x: string | number): string | number | undefined {
  if (typeof x === 'number' || /^\d+$/.test(x)) {
    const n = Number(x);
    for (const [name, v] of Object.entries(table)) if (v === n) return name;
    return undefined;
  }
  return Object.prototype.hasOwnProperty.call(table, x) ? table[x] : undefined;
}

/**
 * qpsmtpd's `return_code`: a number gives its name, a name its number, anything else undefined.
 * Unlike Perl's version the number lookup is exact (903 is always DENY_DISCONNECT).
 */
export function return_code(x: string): number | undefined;
export function return_code(x: number): string | undefined;
export function return_code(x: string | number): string | number | undefined;
export function return_code(x: string | number): string | number | undefined {
  return lookup(RETURN_CODES, x);
}

/** qpsmtpd's `log_level`: number -> name (0 is LOGEMERG), name -> number. */
export function log_level(x: string): number | undefined;
export function log_level(x: number): string | undefined;
export function log_level(x: string | number): string | number | undefined;
export function log_level(x: string | number): string | number | undefined {
  return lookup(LOG_LEVELS, x);
}

/** Asked after every hook call: a set, not a scan of the table. */
const CODE_VALUES: ReadonlySet<number> = new Set(Object.values(RETURN_CODES));

export function is_return_code(x: unknown): x is number {
  return typeof x === 'number' && CODE_VALUES.has(x);
}

/** Every hook name qpsmtpd accepts, in qpsmtpd's order (Qpsmtpd::Plugin @hooks). */
export const HOOK_NAMES = [
  'logging',
  'config',
  'user_config',
  'post-fork',
  'pre-connection',
  'connect',
  'ehlo_parse',
  'ehlo',
  'helo_parse',
  'helo',
  'auth_parse',
  'auth',
  'auth-plain',
  'auth-login',
  'auth-cram-md5',
  'rcpt_parse',
  'rcpt_pre',
  'rcpt',
  'mail_parse',
  'mail',
  'mail_pre',
  'data',
  'data_headers_end',
  'data_post_headers',
  'data_post',
  'queue_pre',
  'queue',
  'queue_post',
  'vrfy',
  'noop',
  'quit',
  'reset_transaction',
  'disconnect',
  'post-connection',
  'unrecognized_command',
  'deny',
  'ok',
  'received_line',
  'help',
  // qpsmtpd-ts additions (documented in docs/writing-plugins.md)
  'listener_parameters',
] as const;

export type HookName = (typeof HOOK_NAMES)[number];

const HOOK_SET: ReadonlySet<string> = new Set(HOOK_NAMES);

export function is_hook_name(name: string): name is HookName {
  return HOOK_SET.has(name);
}

/** `hook_<name>` method name for a hook: every non-word character becomes `_`. */
export function hook_method_name(hook: string): string {
  return 'hook_' + hook.replace(/\W/g, '_');
}

const METHOD_TO_HOOK: ReadonlyMap<string, HookName> = new Map(HOOK_NAMES.map((h) => [hook_method_name(h), h]));

export function hook_for_method(method: string): HookName | undefined {
  return METHOD_TO_HOOK.get(method);
}
