// SMTP reply formatting: qpsmtpd's respond() semantics, made safe for the wire.
import { DENY, DENYSOFT, DENYSOFT_DISCONNECT, DENY_DISCONNECT } from '../constants.js';

/** RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF. */
const MAX_TEXT = 512 - 6;

/** Control characters (CR, LF, NUL, ESC…) never reach the wire; each becomes a space. */
export function sanitize_reply_text(text: string): string {
  // eslint-disable-next-line no-control-regex
  let t = /[\x00-\x1f\x7f]/.test(text) ? text.replace(/[\x00-\x1f\x7f]/g, ' ') : text;
  // a UTF-16 unit is at most 3 UTF-8 bytes: short texts need no byte count
  if (t.length * 3 > MAX_TEXT && Buffer.byteLength(t) > MAX_TEXT) t = Buffer.from(t).subarray(0, MAX_TEXT).toString().replace(/\uFFFD$/, '');
  return t;
}

/**
 * The message lines a reply carries: qpsmtpd stops at the first empty (or "0") line, and
 * plugin messages may hold several lines separated by `\n`.
 */
export function reply_lines(lines: readonly unknown[]): string[] {
  // the common reply: one line of text
  const one = lines.length === 1 ? lines[0] : undefined;
  if (typeof one === 'string' && !one.includes('\n')) return one === '' || one === '0' ? [] : [sanitize_reply_text(one)];
  const out: string[] = [];
  // a hook's message list may be passed as one argument: respond(550, r.msg) (one level, as flat())
  for (const l of lines) {
    if (Array.isArray(l)) {
      for (const x of l) if (!add_line(out, x)) return out;
    } else if (!add_line(out, l)) return out;
  }
  return out;
}

/** Appends the lines of `l` to `out`; false once qpsmtpd would stop (undef, '' or '0'). */
function add_line(out: string[], l: unknown): boolean {
  if (l === undefined || l === null) return false;
  const text = String(l);
  if (!text.includes('\n')) {
    if (text === '' || text === '0') return false;
    out.push(sanitize_reply_text(text));
    return true;
  }
  for (const p of text.split('\n')) {
    if (p === '' || p === '0') return false;
    out.push(sanitize_reply_text(p));
  }
  return true;
}

/** Whether a plugin message prints anything: Perl truth of its first line (not undef, '' or '0'). */
export function has_text(msg: readonly string[]): boolean {
  const first = msg[0];
  return first !== undefined && first !== '' && first !== '0';
}

/** The plugin's message lines, or the hook's default text when they would print nothing. */
export function message_or(msg: readonly string[], def: string): readonly string[] {
  return has_text(msg) ? msg : [def];
}

/** `code-line` … `code line` CRLF-terminated, in one string. */
export function format_reply(code: number, lines: readonly string[]): string {
  let s = '';
  for (let i = 0; i < lines.length; i++) s += `${code}${i === lines.length - 1 ? ' ' : '-'}${lines[i]}\r\n`;
  return s;
}

/** How a rejection code maps to a reply: `[smtp code, default text]` per return code. */
export type DenyTable = Partial<Record<number, readonly [number, string]>>;

type Row = readonly [number, string];

/**
 * A DenyTable for DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT. Built once where it can
 * be: an object literal with keys 901… has V8 allocate a 900-slot element store each time.
 */
export function deny_table(deny: Row, denysoft: Row, deny_disconnect: Row = deny, denysoft_disconnect: Row = denysoft): DenyTable {
  const t: DenyTable = {};
  t[DENY] = deny;
  t[DENYSOFT] = denysoft;
  t[DENY_DISCONNECT] = deny_disconnect;
  t[DENYSOFT_DISCONNECT] = denysoft_disconnect;
  return Object.freeze(t);
}

export function is_denial(rc: number): boolean {
  return rc === DENY || rc === DENYSOFT || rc === DENY_DISCONNECT || rc === DENYSOFT_DISCONNECT;
}
