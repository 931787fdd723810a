// Headers the core adds at the end of DATA (qpsmtpd 3.8): Received and Authentication-Results,
// and the cleaning of Authentication-Results a client brought along.
import { LOGDEBUG, OK } from '../constants.js';
import type { MailHeader } from '../header.js';
import type { HookResult } from '../hooks.js';
import { strftime } from '../strftime.js';
import type { SmtpSession } from './session.js';

/**
 * Client-supplied text in a header: control characters and 8-bit bytes become `?`, and so do
 * the characters that would end or nest a comment (`(`, `)`, `\\`), so a HELO name such as
 * `a(b)c` cannot make the Received line malformed.
 */
function header_safe(text: string | undefined): string {
  // eslint-disable-next-line no-control-regex
  return (text ?? '').replace(/[\x00-\x1f\x7f-\uffff()\\]/g, '?');
}

let date_second = -1;
let date_text = '';

/** The Received date, formatted once per second (every message of that second shares it). */
function received_date(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== date_second) {
    date_text = strftime('%a, %d %b %Y %H:%M:%S %z', new Date(now));
    date_second = second;
  }
  return date_text;
}

/** RFC 3848 protocol name (the connection's transmission_type()): SMTP, ESMTP[S][A], LMTP[S][A]. */
export function transmission_type(s: SmtpSession): string {
  return s.connection.transmission_type() ?? 'SMTP';
}

/** Adds the Received header; returns the received_line hook result (a fault means: refuse). */
export async function add_received_line(s: SmtpSession, header: MailHeader): Promise<HookResult> {
  const proto = transmission_type(s);
  const cipher = s.tls_cipher();
  const tls_comment = s.tls_active() && proto !== 'SMTP' ? `(${cipher} encrypted)` : '';
  const auth_comment = s._auth === OK && proto !== 'SMTP' ? `(smtp-auth username ${s.auth_user()}, mechanism ${s.auth_mechanism()})\n` : '';
  const r = await s.run_hooks('received_line', proto, auth_comment, tls_comment);
  let value: string;
  if (r.rc === OK && !r.fault) {
    value = r.msg.join('\n');
  } else {
    const c = s.connection;
    // XFORWARD (from a trusted content filter) names the up-stream client instead
    const xf = (s.transaction.notes('xforward') ?? {}) as Record<string, string | undefined>;
    value =
      `from ${header_safe(xf.name ?? c.remote_info())} (HELO ${header_safe(xf.helo ?? c.hello_host())}) (${header_safe(xf.addr) || c.remote_ip()})\n` +
      ` by ${s.config('me')} (qpsmtpd-ts/${s.version()}) with ${proto}${tls_comment ? ` ${tls_comment}` : ''} id ${header_safe(s.transaction.uuid())}; ` +
      received_date();
  }
  header.add('Received', value, 0);
  return r;
}

export function add_authentication_results(s: SmtpSession, header: MailHeader): void {
  const id = s.config('me-auth-results');
  if (id === 'none') return;
  const items = id ? [id] : s.config_list('me');
  if (s._auth === undefined) items.push('auth=none');
  else {
    const outcome = s._auth === OK ? 'pass' : 'fail';
    items.push(`auth=${outcome} (${header_safe(s.auth_mechanism())}) smtp.auth=${header_safe(s.auth_user())}`);
  }
  const extra = s.connection.notes('authentication_results');
  if (extra) items.push(String(extra));
  s.log(LOGDEBUG, 'adding auth results header');
  header.add('Authentication-Results', items.join('; '), 0);
}

/**
 * Moves a client's Authentication-Results to Original-Authentication-Results so downstream
 * can trust ours, unless a DKIM signature covers them. (qpsmtpd's loop skipped every second
 * header; this moves all of them, as intended.)
 */
export function clean_authentication_results(s: SmtpSession, header: MailHeader): void {
  if (s.config('me-auth-results') === 'none') return;
  const sig = header.get('DKIM-Signature');
  if (sig) {
    const fields = new Map(sig.split(/;\s+/).map((f) => [f.split('=')[0]!.trim(), f.slice(f.indexOf('=') + 1)] as const));
    if (/Authentication-Results/i.test(fields.get('h') ?? '')) return;
  }
  const existing = header.get_all('Authentication-Results');
  if (!existing.length) return;
  header.delete('Authentication-Results');
  for (const v of existing) header.add('Original-Authentication-Results', v);
  s.log(LOGDEBUG, 'Authentication-Results moved to Original-Authentication-Results');
}
