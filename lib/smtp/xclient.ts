// Postfix's XCLIENT and XFORWARD (XCLIENT_README, XFORWARD_README), for clients listed in
// `trusted_proxies`, and that list itself (also used for PROXY headers by the listeners).
//
// XCLIENT replaces what we know about the client (address, name, port, HELO, login, the
// address it connected to) and takes the session back to the greeting stage: the transaction is
// reset, the listener parameters and `connect` hooks run again for the new client, and the
// reply is the 220 greeting (or the connect hooks' rejection). XFORWARD only records the
// up-stream client for the next message (its Received header and the `xforward` transaction
// note); the session's own facts stay those of the sender.
import ipaddr from 'ipaddr.js';
import { LOGINFO, LOGWARN, OK } from '../constants.js';
import type { Qpsmtpd } from '../qpsmtpd.js';
import type { SmtpSession } from './session.js';

const XCLIENT_ATTRS = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN', 'DESTADDR', 'DESTPORT'] as const;
const XFORWARD_ATTRS = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'IDENT', 'SOURCE'] as const;
const UNAVAILABLE = new Set(['[UNAVAILABLE]', '[TEMPUNAVAIL]']);
const NOT_AUTHORIZED = '5.7.0 Error: insufficient authorization';
const IN_TRANSACTION = '5.5.1 Error: MAIL transaction in progress';

function parse_ip(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ipaddr.isValid(text)) return undefined;
  const a = ipaddr.parse(text);
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a;
}

/**
 * True when `ip` is listed in the `trusted_proxies` config (for `qp`'s connection, so a
 * `via/<local ip>/trusted_proxies` overlay applies): addresses or CIDR ranges, one or more a
 * line. Only such peers may send a PROXY header, XCLIENT or XFORWARD.
 */
export function is_trusted_proxy(qp: Qpsmtpd, ip: string | undefined): boolean {
  const lines = qp.config_list('trusted_proxies');
  if (!lines.length) return false;
  const addr = ip ? parse_ip(ip) : undefined;
  if (!addr) return false;
  for (const line of lines) {
    for (const entry of line.split(/[\s,]+/).filter(Boolean)) {
      if (entry.includes('/')) {
        let range: [ipaddr.IPv4 | ipaddr.IPv6, number];
        try {
          range = ipaddr.parseCIDR(entry);
        } catch {
          qp.log(LOGWARN, `trusted_proxies: '${entry}' is not an address or CIDR range; ignored`);
          continue;
        }
        if (range[0].kind() === addr.kind() && addr.match(range)) return true;
        continue;
      }
      const a = parse_ip(entry);
      if (!a) {
        qp.log(LOGWARN, `trusted_proxies: '${entry}' is not an address or CIDR range; ignored`);
        continue;
      }
      if (a.kind() === addr.kind() && a.toNormalizedString() === addr.toNormalizedString()) return true;
    }
  }
  return false;
}

/** RFC 3461 xtext: `+XX` is the byte 0xXX; undefined when malformed or not printable. */
export function xtext_decode(s: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch === 0x2b) {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (ch < 0x21 || ch > 0x7e || ch === 0x3d) return undefined;
    else bytes.push(ch);
  }
  // no control characters may come out of it (CR/LF injection into headers and logs)
  if (bytes.some((b) => b < 0x20 || b === 0x7f)) return undefined;
  return Buffer.from(bytes).toString('utf8');
}

type Attrs = Map<string, string>;

/** `NAME=value …` with known names; a string is the 501 text. */
function parse_attributes(rest: string | undefined, known: readonly string[], what: string): Attrs | string {
  const words = (rest ?? '').split(' ').filter(Boolean);
  if (!words.length) return `5.5.4 Syntax: ${what} attribute=value...`;
  const out: Attrs = new Map();
  for (const w of words) {
    const eq = w.indexOf('=');
    const name = (eq < 0 ? w : w.slice(0, eq)).toUpperCase();
    if (eq < 0 || !known.includes(name)) return `5.5.4 Bad ${what} attribute name: ${name.replace(/[^\w-]/g, '?').slice(0, 32)}`;
    const value = xtext_decode(w.slice(eq + 1));
    if (value === undefined || value.length > 255) return `5.5.4 Bad ${name} syntax`;
    out.set(name, value);
  }
  return out;
}

/** An ADDR/DESTADDR value: the address, `''` for [UNAVAILABLE], undefined when malformed. */
function address_value(v: string): string | undefined {
  if (UNAVAILABLE.has(v.toUpperCase())) return '';
  const text = /^ipv6:/i.test(v) ? v.slice(5) : v;
  const a = parse_ip(text);
  return a ? a.toString() : undefined;
}

function port_value(v: string): number | '' | undefined {
  if (UNAVAILABLE.has(v.toUpperCase())) return '';
  return /^\d{1,5}$/.test(v) && Number(v) <= 65535 ? Number(v) : undefined;
}

/** Host names as qpsmtpd keeps PTR names: only `[a-zA-Z.\-0-9[\]]`. */
function host_value(v: string): string {
  return v.replace(/[^a-zA-Z.\-0-9[\]]/g, '');
}

interface XState {
  /** HELO name given by XCLIENT: kept when the client greets again (Postfix). */
  helo?: string;
  /** XFORWARD attributes waiting for the next transaction. */
  forward?: Record<string, string>;
}

const state = new WeakMap<SmtpSession, XState>();

function state_of(s: SmtpSession): XState {
  let st = state.get(s);
  if (!st) state.set(s, (st = {}));
  return st;
}

/** EHLO keywords for a client allowed to use them. */
export function proxy_capabilities(s: SmtpSession): string[] {
  if (!s.connection.proxy().allowed) return [];
  return [`XCLIENT ${XCLIENT_ATTRS.join(' ')}`, `XFORWARD ${XFORWARD_ATTRS.join(' ')}`];
}

/** The HELO name an XCLIENT set, which a later HELO/EHLO does not replace. */
export function xclient_helo(s: SmtpSession): string | undefined {
  return state.get(s)?.helo;
}

/** At MAIL: the XFORWARD attributes (if any) become the transaction note `xforward`. */
export function xforward_begin(s: SmtpSession): void {
  const fwd = state.get(s)?.forward;
  if (fwd) s.transaction.notes('xforward', { ...fwd });
}

/** After a message (whatever its outcome) and at RSET: XFORWARD attributes are used up. */
export function xforward_reset(s: SmtpSession): void {
  const st = state.get(s);
  if (st) st.forward = undefined;
}

function refused(s: SmtpSession): boolean {
  if (!s.connection.proxy().allowed) {
    s.log(LOGINFO, `${s.current_line.split(' ')[0]} from ${s.connection.remote_ip() ?? '?'}, which is not in trusted_proxies`);
    s.respond(550, NOT_AUTHORIZED);
    return true;
  }
  if (s.has_transaction() && s.transaction.sender()) {
    s.respond(503, IN_TRANSACTION);
    return true;
  }
  return false;
}

export async function xclient_command(s: SmtpSession, rest: string | undefined): Promise<void> {
  if (refused(s)) return;
  const attrs = parse_attributes(rest, XCLIENT_ATTRS, 'XCLIENT');
  if (typeof attrs === 'string') return void s.respond(501, attrs);
  // validate everything before changing anything
  const addr = attrs.has('ADDR') ? address_value(attrs.get('ADDR')!) : undefined;
  if (attrs.has('ADDR') && addr === undefined) return void s.respond(501, '5.5.4 Bad ADDR syntax');
  const dest = attrs.has('DESTADDR') ? address_value(attrs.get('DESTADDR')!) : undefined;
  if (attrs.has('DESTADDR') && dest === undefined) return void s.respond(501, '5.5.4 Bad DESTADDR syntax');
  for (const p of ['PORT', 'DESTPORT']) {
    if (attrs.has(p) && port_value(attrs.get(p)!) === undefined) return void s.respond(501, `5.5.4 Bad ${p} syntax`);
  }
  const proto = attrs.get('PROTO')?.toUpperCase();
  if (proto !== undefined && proto !== 'SMTP' && proto !== 'ESMTP' && !UNAVAILABLE.has(proto)) return void s.respond(501, '5.5.4 Bad PROTO syntax');

  const c = s.connection;
  const before = c.proxy();
  const sender_ip = before.type === 'xclient' ? before.ip : c.remote_ip();
  if (addr) {
    if (s.opts.readdress && !(await s.opts.readdress(addr))) {
      s.log(LOGINFO, `XCLIENT: too many connections from ${addr}`);
      s.respond(421, `4.7.0 Too many connections from ${addr}, try again later`);
      return s.disconnect();
    }
    c.remote_ip(addr);
    if (!attrs.has('NAME')) {
      const name = s.opts.no_rdns ? `[${addr}]` : await ptr_name(s, addr);
      c.remote_host(name);
      c.remote_info(name);
    }
  } else if (addr === '') {
    c.remote_ip('');
  }
  if (attrs.has('NAME')) {
    const v = attrs.get('NAME')!;
    const name = UNAVAILABLE.has(v.toUpperCase()) ? 'Unknown' : host_value(v) || 'Unknown';
    c.remote_host(name);
    c.remote_info(name);
  }
  if (attrs.has('PORT')) c.remote_port(port_value(attrs.get('PORT')!) || undefined);
  if (dest !== undefined) c.local_ip(dest || undefined);
  if (attrs.has('DESTPORT')) c.local_port(port_value(attrs.get('DESTPORT')!) || undefined);
  c.proxy({ allowed: true, ...(sender_ip ? { ip: sender_ip } : {}), type: 'xclient' });

  // back to the greeting stage (TLS stays as it is)
  await s.reset_transaction();
  s.commands.delete('auth');
  c.hello(undefined);
  c.hello_host(undefined);
  const st = state_of(s);
  st.forward = undefined;
  if (attrs.has('HELO')) {
    const v = attrs.get('HELO')!;
    st.helo = UNAVAILABLE.has(v.toUpperCase()) ? undefined : v;
  }
  if (st.helo !== undefined) {
    c.hello_host(st.helo);
    c.hello(proto === 'ESMTP' ? 'ehlo' : 'helo');
  }
  if (attrs.has('LOGIN')) set_login(s, attrs.get('LOGIN')!);
  s.log(LOGINFO, `XCLIENT from ${sender_ip ?? '?'}: client is now ${c.remote_host() ?? ''} [${c.remote_ip() ?? ''}]`);
  await s.prepare();
  await s.start_conversation();
}

function set_login(s: SmtpSession, login: string): void {
  const c = s.connection as SmtpSession['connection'] & Record<string, unknown>;
  const facts = (user: string | undefined, mech: string | undefined) => {
    for (const [k, v] of [['authn_id', user], ['authz_id', user], ['auth_mechanism', mech]] as const) {
      const f = c[k];
      if (typeof f === 'function') (f as (x: unknown) => unknown).call(c, v);
    }
  };
  if (UNAVAILABLE.has(login.toUpperCase())) {
    s._auth = undefined;
    s._auth_user = undefined;
    s._auth_mechanism = undefined;
    facts(undefined, undefined);
    return;
  }
  // the proxy vouches for the login, as for a successful AUTH (Postfix: SASL-authenticated)
  s._auth = OK;
  s._auth_user = login;
  s._auth_mechanism = 'XCLIENT';
  c.relay_client(1);
  facts(login, 'XCLIENT');
}

async function ptr_name(s: SmtpSession, ip: string): Promise<string> {
  const names = await s.runtime.dns.resolve_ptr(ip).catch(() => [] as string[]);
  const name = names[0] ? host_value(names[0].replace(/\.$/, '')) : '';
  return name || 'Unknown';
}

export async function xforward_command(s: SmtpSession, rest: string | undefined): Promise<void> {
  if (refused(s)) return;
  const attrs = parse_attributes(rest, XFORWARD_ATTRS, 'XFORWARD');
  if (typeof attrs === 'string') return void s.respond(501, attrs);
  const st = state_of(s);
  const fwd = { ...(st.forward ?? {}) };
  for (const [name, value] of attrs) {
    if (UNAVAILABLE.has(value.toUpperCase())) {
      delete fwd[name.toLowerCase()];
      continue;
    }
    let v = value;
    if (name === 'ADDR') v = /^ipv6:/i.test(v) ? v.slice(5) : v;
    if (name === 'NAME' || name === 'HELO') v = host_value(v);
    if (name === 'PORT' && port_value(v) === undefined) return void s.respond(501, '5.5.4 Bad PORT syntax');
    if (name === 'SOURCE' && !/^(LOCAL|REMOTE)$/i.test(v)) return void s.respond(501, '5.5.4 Bad SOURCE syntax');
    fwd[name.toLowerCase()] = v;
  }
  st.forward = fwd;
  s.respond(250, '2.0.0 Ok');
}
