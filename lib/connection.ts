// Qpsmtpd::Connection: what is known about the client, in qpsmtpd's accessor style
// (`x()` reads, `x(v)` sets and returns v, an explicit undefined is stored too).
// Beyond qpsmtpd it carries what Haraka's `connection`, smtp-server's `session` and KumoMTA's
// connection metadata offer (uuid, counters, greeting/TLS/auth facts, results, meta):
// docs/connection.md maps them.
import { randomUUID } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { MetaStore, type MetaValue } from './meta.js';
import { Results } from './results.js';

const START_FIELDS = [
  'remote_host',
  'remote_ip',
  'remote_info',
  'remote_port',
  'local_ip',
  'local_port',
  'relay_client',
] as const;

type StartField = (typeof START_FIELDS)[number];
/** Facts the client told us in clear: dropped by clone() (STARTTLS), as qpsmtpd does. */
type GreetingField = 'hello' | 'hello_host' | 'opening_command';
/** Facts that stay with the connection across clone(). */
type KeptField =
  | 'uuid'
  | 'local_host'
  | 'transaction_count'
  | 'transmission_type'
  | 'tls'
  | 'authn_id'
  | 'authz_id'
  | 'auth_mechanism'
  | 'user'
  | 'current_line'
  | 'last_response'
  | 'last_error'
  | 'remote_closed'
  | 'proxy';
type Field = StartField | GreetingField | KeptField;
const KEPT_FIELDS: readonly KeptField[] = [
  'uuid',
  'local_host',
  'transaction_count',
  'transmission_type',
  'tls',
  'authn_id',
  'authz_id',
  'auth_mechanism',
  'user',
  'current_line',
  'last_response',
  'last_error',
  'remote_closed',
  'proxy',
];
export type StartArgs = Partial<Record<StartField, unknown>>;

/** How the client facts reached us through a proxy (Haraka's connection.proxy); docs/listeners.md. */
export interface ProxyFacts {
  /** The client may send XCLIENT and XFORWARD: its address was in `trusted_proxies` at connect. */
  allowed: boolean;
  /** The proxy that named the real client (the TCP peer of a PROXY header, the XCLIENT sender). */
  ip?: string;
  /** How the real client was named: a PROXY header (v1/v2), XCLIENT, the stunnel plugin; null if not. */
  type: 'proxy-v1' | 'proxy-v2' | 'xclient' | 'stunnel' | null;
}

const NO_PROXY: ProxyFacts = Object.freeze({ allowed: false, type: null });

/** The TLS layer of the connection (all empty/false while it is in clear). */
export interface TlsFacts {
  /** True once the session runs over TLS (STARTTLS or an SMTPS listener). */
  secure: boolean;
  /** `TLSv1.3`, `TLSv1.2`, … ('' in clear). */
  protocol: string;
  /** The OpenSSL name of the negotiated cipher ('' in clear). */
  cipher: string;
  /** The server name the client asked for with SNI ('' when it sent none). */
  servername: string;
}

const NO_TLS: TlsFacts = Object.freeze({ secure: false, protocol: '', cipher: '', servername: '' });

/** Names of the meta values the connection defines itself (KumoMTA's predefined ones). */
export const PREDEFINED_META = ['reception_protocol', 'received_via', 'received_from', 'hostname', 'authn_id', 'authz_id'] as const;

/** The address as ipaddr.js sees it, IPv4-mapped IPv6 turned into IPv4; undefined if invalid. */
function parsed_ip(ip: string | undefined): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (!ip || !ipaddr.isValid(ip)) return undefined;
  const a = ipaddr.parse(ip);
  return a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() ? (a as ipaddr.IPv6).toIPv4Address() : a;
}

/** ipaddr.js's range name of `ip` ('unicast' for ordinary public addresses, '' if invalid). */
export function ip_range(ip: string | undefined): string {
  return parsed_ip(ip)?.range() ?? '';
}

/** Loopback, RFC 1918, link-local (IPv4 and IPv6) or unique-local (fc00::/7); IPv4-mapped counts as IPv4. */
export function is_private_ip(ip: string | undefined): boolean {
  return ['loopback', 'private', 'linkLocal', 'uniqueLocal'].includes(ip_range(ip));
}

/** Loopback or link-local (this host or its link); IPv4-mapped counts as IPv4. */
export function is_local_ip(ip: string | undefined): boolean {
  return ['loopback', 'linkLocal'].includes(ip_range(ip));
}

/** `ip:port`, `[ip]:port` for IPv6 (KumoMTA's received_via / received_from form). */
function ip_port(ip: string | undefined, port: unknown): string | undefined {
  if (!ip) return undefined;
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port === undefined || port === null || port === '' ? host : `${host}:${String(port)}`;
}

/** Strips the IPv4-mapped prefix (`::ffff:1.2.3.4` -> `1.2.3.4`) as qpsmtpd's lrpip does. */
export function normalize_ip(ip: string): string {
  // only an IPv6 text can carry the prefix: an IPv4 text (every connection on most servers) is kept as is
  if (!ip.includes(':')) return ip;
  if (ipaddr.isValid(ip)) {
    const parsed = ipaddr.parse(ip);
    if (parsed.kind() === 'ipv6' && (parsed as ipaddr.IPv6).isIPv4MappedAddress()) {
      return (parsed as ipaddr.IPv6).toIPv4Address().toString();
    }
  }
  return ip;
}

export class Connection {
  protected fields: Partial<Record<Field, unknown>> = {};
  protected _notes: Record<string, unknown> | undefined = {};
  /** Per-plugin structured results (Haraka's connection.results): `results.add(plugin, {pass: …})`. */
  results = new Results();
  protected _meta = new MetaStore();

  constructor() {
    // Haraka's form: an upper-case RFC 4122 v4 UUID
    this.fields.uuid = randomUUID().toUpperCase();
  }

  /** qpsmtpd's `start`: only truthy values are taken; unknown keys are ignored. */
  start(args: StartArgs = {}): this {
    for (const key of START_FIELDS) {
      const value = args[key];
      if (value) this.set(key, value);
    }
    return this;
  }

  remote_host(...v: [string?]): string | undefined {
    return this.acc('remote_host', v) as string | undefined;
  }
  remote_ip(...v: [string?]): string | undefined {
    return this.acc('remote_ip', v) as string | undefined;
  }
  remote_info(...v: [string?]): string | undefined {
    return this.acc('remote_info', v) as string | undefined;
  }
  remote_port(...v: [(number | string)?]): number | string | undefined {
    return this.acc('remote_port', v) as number | string | undefined;
  }
  local_ip(...v: [string?]): string | undefined {
    return this.acc('local_ip', v) as string | undefined;
  }
  local_port(...v: [(number | string)?]): number | string | undefined {
    return this.acc('local_port', v) as number | string | undefined;
  }
  relay_client(...v: [unknown?]): unknown {
    return this.acc('relay_client', v);
  }
  /** 'helo' or 'ehlo' (qpsmtpd-ts also 'lhlo'); set only after the helo/ehlo hooks accepted. */
  hello(...v: [string?]): string | undefined {
    return this.acc('hello', v) as string | undefined;
  }
  hello_host(...v: [string?]): string | undefined {
    return this.acc('hello_host', v) as string | undefined;
  }

  // -- identity and counters -------------------------------------------------------------------

  /** Unique per connection (an upper-case UUID); kept across STARTTLS. In every session log line. */
  uuid(...v: [string?]): string {
    return this.acc('uuid', v) as string;
  }

  /** Messages whose DATA reached the 354 on this connection (0 before the first). */
  transaction_count(...v: [number?]): number {
    return (this.acc('transaction_count', v) as number | undefined) ?? 0;
  }

  // -- addresses -------------------------------------------------------------------------------

  /** The remote IP is loopback, RFC 1918, link-local or unique-local (IPv4-mapped as IPv4). */
  is_private(): boolean {
    return is_private_ip(this.remote_ip());
  }

  /** The remote IP is loopback or link-local (IPv4-mapped as IPv4). */
  is_local(): boolean {
    return is_local_ip(this.remote_ip());
  }

  /** The name this server gives itself on the connection (the `me` config, set by the listener). */
  local_host(...v: [string?]): string | undefined {
    return this.acc('local_host', v) as string | undefined;
  }

  // -- greeting --------------------------------------------------------------------------------

  /**
   * `HELO`, `EHLO` or `LHLO`: the greeting in effect, upper case (smtp-server's openingCommand).
   * Follows hello() unless set explicitly; cleared with it by STARTTLS.
   */
  opening_command(...v: [string?]): string | undefined {
    if (v.length) return this.acc('opening_command', v) as string | undefined;
    return (this.fields.opening_command as string | undefined) ?? this.hello()?.toUpperCase();
  }

  /**
   * RFC 3848 protocol name for `with` in Received: SMTP after HELO; ESMTP after EHLO and LMTP
   * after LHLO, each with `S` once TLS is on and `A` once AUTH succeeded (ESMTPSA, LMTPA, …).
   * Undefined before a greeting. Computed from the other facts unless set explicitly.
   */
  transmission_type(...v: [string?]): string | undefined {
    if (v.length) return this.acc('transmission_type', v) as string | undefined;
    const set = this.fields.transmission_type as string | undefined;
    if (set !== undefined) return set;
    const cmd = this.opening_command();
    if (!cmd) return undefined;
    if (cmd === 'HELO') return 'SMTP';
    let proto = cmd === 'LHLO' ? 'LMTP' : 'ESMTP';
    if (this.tls().secure) proto += 'S';
    if (this.authn_id() !== undefined) proto += 'A';
    return proto;
  }

  // -- proxies ---------------------------------------------------------------------------------

  /** `{allowed, ip, type}`: whether and how a proxy named the client (a copy; set a whole object). */
  proxy(...v: [ProxyFacts?]): ProxyFacts {
    if (v.length) this.set('proxy', v[0] ? { ...NO_PROXY, ...v[0] } : undefined);
    const p = this.fields.proxy as ProxyFacts | undefined;
    return { ...(p ?? NO_PROXY) };
  }

  // -- TLS -------------------------------------------------------------------------------------

  /** The TLS facts: `{secure, protocol, cipher, servername}` (a copy; set a whole object). */
  tls(...v: [TlsFacts?]): TlsFacts {
    if (v.length) this.set('tls', v[0] ? { ...NO_TLS, ...v[0] } : undefined);
    const t = this.fields.tls as TlsFacts | undefined;
    return { ...(t ?? NO_TLS) };
  }

  // -- authentication --------------------------------------------------------------------------

  /** The authentication identity (the user name) after a successful AUTH; else undefined. */
  authn_id(...v: [string?]): string | undefined {
    return this.acc('authn_id', v) as string | undefined;
  }

  /**
   * The authorization identity after a successful AUTH: PLAIN's authzid when the client gave
   * one, else the authn_id (RFC 4616: an empty authzid means "act as myself", as KumoMTA has it).
   */
  authz_id(...v: [string?]): string | undefined {
    return this.acc('authz_id', v) as string | undefined;
  }

  /** The SASL mechanism of the successful AUTH, upper case (`PLAIN`, `LOGIN`, `CRAM-MD5`). */
  auth_mechanism(...v: [string?]): string | undefined {
    return this.acc('auth_mechanism', v) as string | undefined;
  }

  /**
   * What the auth plugin handed back for the user (smtp-server's session.user): the third
   * element of its `[OK, message, user]` result, or what it set here; else the authn_id.
   */
  user(...v: [unknown?]): unknown {
    return this.acc('user', v);
  }

  // -- the conversation ------------------------------------------------------------------------

  /** The last command line the client sent (as received; AUTH continuation lines excluded). */
  current_line(...v: [string?]): string | undefined {
    return this.acc('current_line', v) as string | undefined;
  }

  /** The last reply sent, `<code> <last line>`. */
  last_response(...v: [string?]): string | undefined {
    return this.acc('last_response', v) as string | undefined;
  }

  /** The last reply with a code of 400 or more, `<code> <last line>`. */
  last_error(...v: [string?]): string | undefined {
    return this.acc('last_error', v) as string | undefined;
  }

  /** True once the client closed or dropped the connection before the server ended it. */
  remote_closed(...v: [boolean?]): boolean {
    return !!this.acc('remote_closed', v);
  }

  // -- metadata (KumoMTA conn_meta) ------------------------------------------------------------

  /**
   * A meta value: one set with set_meta, else a predefined one computed from the connection
   * (reception_protocol, received_via, received_from, hostname, authn_id, authz_id); undefined
   * when neither exists. The value is a copy.
   */
  get_meta(name: string): MetaValue | undefined {
    if (this._meta.has(name)) return this._meta.get(name);
    return this.predefined_meta()[name];
  }

  /** Sets a meta value; anything that does not survive JSON unchanged throws MetaValueError. */
  set_meta(name: string, value: unknown): MetaValue {
    return this._meta.set(name, value, 'connection.set_meta');
  }

  /** Every meta value (predefined ones first, then those set, which win), as a fresh object. */
  all_meta(): Record<string, MetaValue> {
    return { ...this.predefined_meta(), ...this._meta.all() };
  }

  /** The predefined values that are known now. */
  predefined_meta(): Record<string, MetaValue> {
    const values: Record<(typeof PREDEFINED_META)[number], string | undefined> = {
      reception_protocol: this.transmission_type(),
      received_via: ip_port(this.local_ip(), this.local_port()),
      received_from: ip_port(this.remote_ip(), this.remote_port()),
      hostname: this.local_host(),
      authn_id: this.authn_id(),
      authz_id: this.authz_id(),
    };
    const out: Record<string, MetaValue> = {};
    for (const k of PREDEFINED_META) if (values[k] !== undefined) out[k] = values[k];
    return out;
  }

  notes(key: string): any;
  notes(key: string, value: unknown): any;
  notes(key: string, ...value: unknown[]): any {
    if (!this._notes) this._notes = {};
    if (value.length) this._notes[key] = value[0];
    return this._notes[key];
  }

  /** The notes object itself (shared with clones). */
  all_notes(): Record<string, unknown> {
    if (!this._notes) this._notes = {};
    return this._notes;
  }

  /**
   * A new Connection with the truthy start fields and the same notes object; hello and
   * hello_host (and opening_command) are not copied. The original is reset unless `no_reset` is
   * given (qpsmtpd's STARTTLS path). It is the same connection, so the uuid, counters, TLS,
   * auth and conversation facts, results and meta go along.
   */
  clone(opts: { no_reset?: boolean } = {}): Connection {
    const copy = new (this.constructor as new () => Connection)();
    for (const key of START_FIELDS) {
      const value = this.fields[key];
      if (value) copy.set(key, value);
    }
    for (const key of KEPT_FIELDS) {
      if (key in this.fields) copy.fields[key] = this.fields[key];
    }
    copy._notes = this.all_notes();
    copy.results = this.results;
    copy._meta = this._meta;
    copy.copy_extra_from(this);
    if (!opts.no_reset) this.reset();
    return copy;
  }

  /** qpsmtpd's `reset`: drops the notes. */
  reset(): void {
    this._notes = undefined;
  }

  /** Hook for subclasses that carry more state across a clone. */
  protected copy_extra_from(_other: Connection): void {}

  private set(key: Field, value: unknown): void {
    this.fields[key] = key === 'remote_ip' && typeof value === 'string' ? normalize_ip(value) : value;
  }

  private acc(key: Field, v: unknown[]): unknown {
    if (v.length) this.set(key, v[0]);
    return this.fields[key];
  }
}
