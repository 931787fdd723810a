// Qpsmtpd::Auth's helpers for auth plugins (qpsmtpd.md 3.6): validate_password and e64.
//
// Node has no crypt(3), so a `src_crypt` (a crypt()-hashed stored password) cannot be
// checked: it is reported at LOGERROR and the plugin gets DECLINED (undecided), never OK.
import { createHmac, timingSafeEqual } from 'node:crypto';
import path from 'node:path';
import { DECLINED, DENY, LOGERROR, LOGINFO, OK } from './constants.js';
import type { Plugin } from './plugin.js';

export interface ValidatePasswordArgs {
  /** The stored clear-text password (undefined, null or '' = none). */
  src_clear?: string | null;
  /** A stored crypt() hash: NOT supported in Node (logged, then DECLINED). */
  src_crypt?: string | null;
  /** The password the client sent (PLAIN, LOGIN). */
  attempt_clear?: string | null;
  /** The hex HMAC-MD5 digest the client sent (CRAM-MD5). */
  attempt_hash?: string | null;
  /** The AUTH mechanism (`plain`, `login`, `cram-md5`); required. */
  method: string;
  /** The CRAM-MD5 challenge the digest was computed over. */
  ticket?: string | null;
  /** What a wrong password returns (default DENY; 0 also means DENY, as in qpsmtpd). */
  deny?: number;
  /** The name in the messages; default: the plugin file's base name without extension. */
  file?: string;
}

export type AuthResult = [code: number, message: string];

/** Base64 without line breaks (Qpsmtpd::Auth::e64). */
export function e64(text: string | Buffer): string {
  return (typeof text === 'string' ? Buffer.from(text, 'utf8') : text).toString('base64');
}

/** HMAC-MD5 of the challenge keyed with the password, in lower-case hex (RFC 2195). */
export function cram_md5_digest(ticket: string, password: string): string {
  return createHmac('md5', Buffer.from(password, 'utf8')).update(Buffer.from(ticket, 'utf8')).digest('hex');
}

/** The label qpsmtpd puts in auth messages: the calling plugin file's name (`auth_flat_file`). */
export function auth_plugin_label(plugin: Plugin): string {
  if (plugin._file) return path.basename(plugin._file).replace(/\.(?:m?ts|m?js)$/, '');
  const name = plugin.plugin_name();
  const i = name.lastIndexOf('::');
  return i < 0 ? name : name.slice(i + 2);
}

function present(v: string | null | undefined): v is string {
  return v !== undefined && v !== null && v !== '';
}

/** Constant-time string comparison (qpsmtpd used `eq`). */
function same(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Qpsmtpd::Auth::validate_password: checks a client's password against a stored one.
 * Returns, with `<file>` = the plugin's label:
 * - no stored password → `[deny, '<file> - no such user']`
 * - CRAM-MD5 without a stored clear password → `[DECLINED, '<file>']`
 * - clear match → `[OK, '<file>']`
 * - a stored crypt() hash and a clear attempt that did not match in clear → LOGERROR, `[DECLINED, '<file>']`
 * - digest given, clear stored: no ticket → `[DECLINED, '<file>']`; HMAC-MD5 match → `[OK, '<file>']`
 * - otherwise `[deny, '<file> - wrong password']`
 */
export function validate_password(plugin: Plugin, a: ValidatePasswordArgs): AuthResult {
  const file = a.file ?? auth_plugin_label(plugin);
  const method = a.method;
  if (!method) throw new Error('missing method');
  const deny = a.deny || DENY;
  const { src_clear, src_crypt, attempt_clear, attempt_hash, ticket } = a;

  if (!present(src_crypt) && !present(src_clear)) {
    plugin.log(LOGINFO, 'fail: missing password');
    return [deny, `${file} - no such user`];
  }
  if (!present(src_clear) && /CRAM-MD5/i.test(method)) {
    plugin.log(LOGINFO, 'skip: cram-md5 not supported w/o clear pass');
    return [DECLINED, file];
  }
  if (attempt_clear !== undefined && attempt_clear !== null) {
    if (present(src_clear) && same(src_clear, attempt_clear)) {
      plugin.log(LOGINFO, 'pass: clear match');
      return [OK, file];
    }
    if (present(src_crypt)) {
      plugin.log(LOGERROR, 'skip: crypt() is not available in Node, a src_crypt password cannot be checked');
      return [DECLINED, file];
    }
  }
  if (attempt_hash !== undefined && attempt_hash !== null && present(src_clear)) {
    if (!ticket) {
      plugin.log(LOGERROR, 'skip: missing ticket');
      return [DECLINED, file];
    }
    if (same(attempt_hash, cram_md5_digest(ticket, src_clear))) {
      plugin.log(LOGINFO, 'pass: hash match');
      return [OK, file];
    }
  }
  plugin.log(LOGINFO, 'fail: wrong password');
  return [deny, `${file} - wrong password`];
}
