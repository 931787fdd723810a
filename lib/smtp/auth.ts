// AUTH (qpsmtpd 3.6 / Qpsmtpd::Auth::SASL): PLAIN, LOGIN, CRAM-MD5 through the auth-<mech>
// and auth hooks. Fixed against qpsmtpd: `*` cancels, empty answers get 535, decoded user
// names never split a reply, and repeated failures end the session.
import { randomInt } from 'node:crypto';
import { DECLINED, DENY, OK } from '../constants.js';
import { parse_command } from './command.js';
import { has_text } from './reply.js';
import type { SmtpSession } from './session.js';

/** Mechanisms in a fixed order (qpsmtpd printed them in Perl hash order). */
const ORDER = ['PLAIN', 'CRAM-MD5', 'LOGIN'];

/** What EHLO offers: a bare `auth` hook means all three; else one per `auth-<mech>` hook. */
export function auth_mechanisms(s: SmtpSession): string[] {
  if (s.hooks.has('auth')) return [...ORDER];
  const found = new Set<string>();
  for (const hook of s.hooks.names()) {
    const m = /^auth-(.+)$/.exec(hook);
    if (m) found.add(m[1]!.toUpperCase());
  }
  return [...found].sort((a, b) => rank(a) - rank(b));
}

function rank(m: string): number {
  const i = ORDER.indexOf(m);
  return i < 0 ? ORDER.length : i;
}

/** Strict base64 (padding may be omitted); undefined when the text is not base64. */
export function decode_base64(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 === 1) return undefined;
  return Buffer.from(t, 'base64');
}

interface Credentials {
  user: string;
  pass_clear?: string;
  pass_hash?: string;
  ticket?: string;
  authz?: string;
}

class AuthAbort extends Error {}

/** Reads one AUTH continuation line; `*` cancels with 501 (RFC 4954). */
async function read_response(s: SmtpSession): Promise<string> {
  s.set_deadline();
  const ev = await s.next_or_close('auth');
  if (!ev) throw new AuthAbort();
  if (ev.type === 'too_long') {
    s.respond(500, '5.5.6 Authentication Exchange line is too long');
    throw new AuthAbort();
  }
  if (ev.type !== 'line') throw new AuthAbort();
  const line = ev.line.toString('latin1');
  if (line.trim() === '*') {
    s.respond(501, 'Authentication canceled');
    throw new AuthAbort();
  }
  return line;
}

function decoded(s: SmtpSession, text: string): string {
  const buf = decode_base64(text);
  if (!buf) {
    s.respond(501, '5.5.2 Invalid base64 data');
    throw new AuthAbort();
  }
  return buf.toString('utf8');
}

/** Refuses with 535 and counts the failure. */
function invalid(s: SmtpSession, text: string): never {
  s.respond(535, text);
  throw new AuthAbort();
}

async function plain(s: SmtpSession, initial: string | undefined): Promise<Credentials> {
  let response = initial;
  if (response === undefined) {
    s.respond(334, ' ');
    response = await read_response(s);
  }
  const text = response.trim() === '=' ? '' : decoded(s, response);
  const fields = text.split('\0');
  if (fields.length !== 3) invalid(s, 'Authentication invalid');
  const [authz, user, pass] = fields as [string, string, string];
  if (!user) invalid(s, authz ? `Authentication invalid (${authz})` : 'Authentication invalid');
  if (authz && authz !== user) invalid(s, `Authentication invalid for ${user}`);
  if (!pass || user.length > 255 || pass.length > 255) invalid(s, `Authentication invalid for ${user}`);
  return { user, pass_clear: pass, authz };
}

async function login(s: SmtpSession, initial: string | undefined): Promise<Credentials> {
  let user: string;
  if (initial !== undefined) user = decoded(s, initial);
  else {
    s.respond(334, 'VXNlcm5hbWU6');
    user = decoded(s, await read_response(s));
  }
  if (!user) invalid(s, 'Authentication invalid');
  s.respond(334, 'UGFzc3dvcmQ6');
  const pass = decoded(s, await read_response(s));
  if (!pass) invalid(s, `Authentication invalid for ${user}`);
  return { user, pass_clear: pass };
}

async function cram_md5(s: SmtpSession): Promise<Credentials> {
  const ticket = `<${randomInt(1_000_000).toString(16)}.${Math.floor(Date.now() / 1000).toString(16)}@${s.config('me')}>`;
  s.respond(334, Buffer.from(ticket).toString('base64'));
  const text = decoded(s, await read_response(s));
  const sp = text.indexOf(' ');
  const user = sp > 0 ? text.slice(0, sp) : '';
  const hash = sp > 0 ? text.slice(sp + 1) : '';
  if (!user || !hash) {
    s.respond(501, 'Invalid authentication string');
    throw new AuthAbort();
  }
  return { user, pass_hash: hash, ticket };
}

/** The AUTH command. */
export async function auth_command(s: SmtpSession, rest: string | undefined): Promise<void> {
  const p = await s.run_hooks('auth_parse', rest);
  if (p.fault) return s.fault_reply(p);
  const [ok, mech_raw, ...stuff] = parse_command('auth', rest, p.parser, (l, m) => s.log(l, m));
  if (ok !== OK) {
    s.respond(501, mech_raw || 'Syntax error in command');
    return;
  }
  const mech = (mech_raw ?? '').toLowerCase();
  if (s._auth === OK) return void s.respond(503, 'but you already said AUTH ...');
  if (s.connection.hello() === 'helo') return void s.respond(503, 'AUTH not defined for HELO');
  if (s.config_true('tls_before_auth') && s.transaction.notes('tls_enabled')) {
    return void s.respond(503, 'SSL/TLS required before AUTH');
  }
  if (s.transaction.sender()) return void s.respond(503, '5.5.1 AUTH not permitted during a mail transaction');
  const max = s.limit('max_auth_failures', 3);
  if (max && s.auth_failures >= max) {
    s.respond(421, '4.7.0 Too many authentication failures, closing connection');
    return s.disconnect();
  }
  if (!auth_mechanisms(s).includes(mech.toUpperCase())) {
    s.respond(504, `Unimplemented authentication mechanism: ${mech}`);
    return;
  }
  let creds: Credentials;
  try {
    if (mech === 'plain') creds = await plain(s, stuff[0]);
    else if (mech === 'login') creds = await login(s, stuff[0]);
    else if (mech === 'cram-md5') creds = await cram_md5(s);
    else {
      s.respond(500, 'Internal server error');
      return;
    }
  } catch (err) {
    if (!(err instanceof AuthAbort)) throw err;
    s.auth_failures++;
    if (!s.closed) s._auth = DENY;
    return;
  }
  await decide(s, mech, creds);
}

async function decide(s: SmtpSession, mech: string, c: Credentials): Promise<void> {
  const args = [mech, c.user, c.pass_clear, c.pass_hash, c.ticket];
  // what a plugin sets here during the hook is the user value (else its third result element)
  s.connection.user(undefined);
  let r = await s.run_hooks(`auth-${mech}`, ...args);
  if (r.rc === DECLINED || r.rc === 0) r = await s.run_hooks('auth', ...args);
  const MECH = mech.toUpperCase();
  // nothing after a CR/LF of a client-chosen name is kept (qpsmtpd did this on success only)
  const user = c.user.replace(/[\r\n][\s\S]*$/, '');
  if (r.rc === OK && !r.fault) {
    // like qpsmtpd, the user and mechanism are recorded on success only
    s._auth_user = user;
    s._auth_mechanism = mech;
    s._authz_id = c.authz || undefined;
    s._auth = OK;
    const conn = s.connection;
    conn.authn_id(user);
    conn.authz_id(s._authz_id ?? user);
    conn.auth_mechanism(MECH);
    if (r.values !== undefined && r.values.length > 1) conn.user(r.values[1]);
    else if (conn.user() === undefined) conn.user(user);
    s.respond(235, `${MECH} authentication successful for ${user}${has_text(r.msg) ? ` - ${r.msg[0]}` : ''}`);
    s.connection.relay_client(1);
    if (s.connection.notes('naughty')) s.connection.notes('naughty', 0);
    return;
  }
  s._auth = DENY;
  s.auth_failures++;
  s.connection.user(undefined);
  if (r.fault) return s.fault_reply(r);
  s.respond(535, `${MECH} authentication failed for ${user} from ${s.connection.remote_ip() ?? ''}${has_text(r.msg) ? ` - ${r.msg[0]}` : ''}`);
}
