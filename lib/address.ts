// Qpsmtpd::Address (qpsmtpd.md 4.3): an envelope address with qpsmtpd's parsing, formatting
// and ordering, hardened where qpsmtpd let unsafe input through (docs/compat-address.md).
// Every pattern below is built so that no input can make it backtrack more than linearly.

import ipaddr from 'ipaddr.js';

/** The object an address asks for per-recipient config (qpsmtpd's `qp`). */
export interface AddressHost {
  config(name: string, addr?: Address): string | undefined;
}

export interface AddressOptions {
  /** The client asked for SMTPUTF8 (RFC 6531): UTF-8 is allowed in local part and domain. */
  smtputf8?: boolean;
}

/** `[user, host, reason]`; user undefined means the path was refused. */
export type CanonifyResult = [user: string | undefined, host: string | undefined, reason: string | undefined];

const ATEXT = "A-Za-z0-9!#$%&'*+\\-\\/=?^_`{|}~";
const LETDIG = 'A-Za-z0-9';
const QTEXT = '\\x20\\x21\\x23-\\x5b\\x5d-\\x7e'; // RFC 5321 qtextSMTP
const NON_ASCII = '\\u{80}-\\u{10FFFF}';

function patterns(x: string) {
  // A label is runs of letters/digits joined by runs of '-' or '_' (qpsmtpd accepted `b_c`),
  // so it starts and ends with a letter or digit and every position has one parse.
  const label = `[${LETDIG}${x}]+(?:[-_]+[${LETDIG}${x}]+)*`;
  const name = `${label}(?:\\.${label})*`;
  const domain = `(?:\\[[A-Za-z0-9:.]*\\]|${name})`;
  return {
    name: new RegExp(`^${name}$`, 'u'),
    route: new RegExp(`^@${domain}(?:,@${domain})*:`, 'u'),
    atom: new RegExp(`^[${ATEXT}${x}][${ATEXT}.${x}]*$`, 'u'),
    quoted: new RegExp(`^"((?:[${QTEXT}${x}]|\\\\[\\x20-\\x7e])*)"$`, 'u'),
  };
}

const ASCII = { ...patterns(''), bad: /[^\x20-\x7e]/ };
const UTF8 = { ...patterns(NON_ASCII), bad: /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}]/u };
type Patterns = typeof ASCII;

const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;
const LITERAL = /^\[(?:(\d{1,3}(?:\.\d{1,3}){3})|IPv6:([0-9A-Fa-f:.]+))\]$/;

function validIPv4(s: string): boolean {
  return IPV4.test(s) && s.split('.').every((o) => Number(o) <= 255);
}

function validDomain(d: string, re: Patterns): boolean {
  if (!d.startsWith('[')) return re.name.test(d);
  const m = LITERAL.exec(d);
  if (!m) return false;
  if (m[1] !== undefined) return validIPv4(m[1]);
  const v6 = m[2]!;
  // ipaddr.js reads an embedded IPv4 tail with inet_aton rules (hex, octal); RFC 5321 wants Snum.
  const tail = v6.slice(v6.lastIndexOf(':') + 1);
  if (tail.includes('.') && !validIPv4(tail)) return false;
  return ipaddr.IPv6.isValid(v6);
}

/** qpsmtpd's `canonify`: split an RFC 5321 `<path>` into local part and domain. */
export function canonify(path: string | null | undefined, opts: AddressOptions = {}): CanonifyResult {
  if (typeof path !== 'string' || path.length < 2 || !path.startsWith('<') || !path.endsWith('>')) {
    return [undefined, undefined, 'missing delimiters'];
  }
  const re = opts.smtputf8 ? UTF8 : ASCII;
  let p = path.slice(1, -1);
  if (re.bad.test(p)) return [undefined, undefined, 'invalid character'];

  // Source route (`@a,@b:`): dropped when every hop is a valid domain.
  const route = re.route.exec(p);
  if (route && route[0].slice(1, -1).split(',@').every((d) => validDomain(d, re))) {
    p = p.slice(route[0].length);
  }
  if (p === '') return ['', undefined, 'empty path'];
  if (/^postmaster$/i.test(p)) return ['postmaster', undefined, 'bare postmaster'];

  // No domain contains '@', so the last '@' is the only one a valid domain can follow.
  const at = p.lastIndexOf('@');
  const local = p.slice(0, at);
  const domain = p.slice(at + 1);
  if (at < 0 || !validDomain(domain, re)) return [undefined, undefined, undefined];

  if (re.atom.test(local)) return [local, domain, 'local matches atom'];
  const q = re.quoted.exec(local);
  if (q) return [q[1]!.replace(/\\(.)/g, '$1'), domain, undefined];
  return [undefined, undefined, 'fall through'];
}

// Characters format() must quote: everything but atext and '.' (UTF-8 counts as atext, RFC 6531).
const QCHAR = /[^A-Za-z0-9!#$%&'*+\-\/=?^_`{|}~.\u{80}-\u{10FFFF}]/gu;
const BARE_CONTROL = /[\x00-\x1f\x7f]/;

function hasBrackets(s: string): boolean {
  return s.length >= 2 && s.startsWith('<') && s.endsWith('>');
}

function sortKey(x: Address | string | null | undefined): string {
  // qpsmtpd would die on a string that does not parse; we compare its raw text instead.
  const f = x instanceof Address ? x.format() : (Address.parse(x)?.format() ?? String(x));
  return f.split('@').reverse().join('=').replace(/[[<>\]]/g, '');
}

export class Address {
  private _user: string | undefined;
  private _host: string | undefined;
  private _notes = new Map<string, unknown>();
  private _qp: AddressHost | undefined;

  static readonly canonify = canonify;

  /**
   * qpsmtpd `new(user, host)`: with a host, both are stored as given. With only `user`, it is
   * read as `parse(user)` reads it (so `new Address('postmaster')` formats as `<>`); where
   * qpsmtpd would return undef this throws. Prefer `Address.parse` for untrusted input.
   */
  constructor(user?: string, host?: string) {
    if (user !== undefined && host === undefined) {
      const a = Address.parse(user);
      if (!a) throw new TypeError(`invalid address ${JSON.stringify(user)}`);
      [user, host] = [a._user, a._host];
    }
    this._user = user;
    this._host = host;
  }

  /**
   * qpsmtpd `new(x)` / `parse(x)`: null/undefined gives the null address; `<...>` is
   * canonified (undefined if refused); bare text is split at the last '@' without validation.
   */
  static parse(x?: string | null, opts?: AddressOptions): Address | undefined {
    const a = new Address();
    if (x === undefined || x === null) return a;
    if (hasBrackets(x)) {
      const [user, host] = canonify(x, opts);
      if (user === undefined) return undefined;
      a._user = user;
      a._host = host;
    } else {
      if (BARE_CONTROL.test(x)) return undefined;
      const at = x.lastIndexOf('@');
      if (at >= 0) {
        a._user = x.slice(0, at);
        a._host = x.slice(at + 1);
      }
    }
    return a;
  }

  user(v?: string): string | undefined {
    if (v !== undefined) this._user = v;
    return this._user;
  }

  host(v?: string): string | undefined {
    if (v !== undefined) this._host = v;
    return this._host;
  }

  /** `user@host` without quoting or brackets; with an argument, re-canonify it first. */
  address(v?: string, opts?: AddressOptions): string {
    if (v !== undefined) {
      // qpsmtpd's `^<.+>$`: `<>` itself gets wrapped again (and then refused).
      const path = hasBrackets(v) && v.length > 2 ? v : `<${v}>`;
      [this._user, this._host] = canonify(path, opts);
    }
    return (this._user ?? '') + (this._host === undefined ? '' : `@${this._host}`);
  }

  format(): string {
    const user = this._user;
    if (user === undefined) return '<>';
    const quoted = user.replace(QCHAR, '\\$&');
    if (quoted !== user) return `<"${quoted}"${this._host === undefined ? '' : `@${this._host}`}>`;
    return `<${this.address()}>`;
  }

  toString(): string {
    return this.format();
  }

  /** `notes(k)` reads; `notes(k, v)` writes, even when v is undefined. */
  notes(key: string, value?: unknown): any {
    if (arguments.length > 1) this._notes.set(key, value);
    return this._notes.get(key);
  }

  qp(obj?: AddressHost): AddressHost | undefined {
    if (arguments.length > 0) this._qp = obj;
    return this._qp;
  }

  /** Per-address config lookup through `qp` (its `user_config` hooks run first). */
  config(name: string): string | undefined {
    return this._qp?.config(name, this);
  }

  /** qpsmtpd's `_addr_cmp`: order by domain, then local part. */
  static cmp(a: Address | string | null | undefined, b: Address | string | null | undefined): number {
    const ka = sortKey(a);
    const kb = sortKey(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  }

  equals(other: Address | string | null | undefined): boolean {
    return Address.cmp(this, other) === 0;
  }

  static sort(list: readonly Address[]): Address[] {
    return [...list].sort(Address.cmp);
  }
}
