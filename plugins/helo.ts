// helo: validate the name a client gives in HELO/EHLO.
//
//   helo [policy lenient|rfc|strict] [reject 0|1|naughty] [reject_type disconnect|perm|temp|temp_disconnect]
//        [timeout N] [dns_timeout N] [loglevel N]
//
// Tests run by policy, in this order; the first that fails lowers karma by 1 and rejects
// (through get_reject, so `reject 0` only logs and `reject naughty` defers to naughty):
//
//   lenient  is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip
//   rfc      + is_not_fqdn, no_forward_dns, no_reverse_dns
//   strict   + is_address_literal, no_matching_dns
//
// The default rejection is DENY_DISCONNECT: `550 <message>` and the connection closes.
// DNS tests use the server's resolver (`dns_servers`) with `timeout` seconds (default 5).
// An empty HELO name costs 2 karma and is let through; immune clients (relay clients,
// whitelisted hosts) are not checked. At data_post the `X-HELO` header is replaced by one
// with the HELO name, at the top of the header.
//
// `badhelo` lines are host names (compared case-insensitively) or, when they contain any of
// `{}[]()^$|*+?\!`, Perl regular expressions matched against the lower-cased name; a leading
// `!` negates the pattern (the name must match it). A pattern that does not compile is
// logged at LOGERROR (at start-up and when it is met) and skipped.
//
// Deliberate differences from qpsmtpd (docs/plugins/helo.md lists them):
// * is_forged_literal checks bracketed literals (`[1.2.3.4]`, `[IPv6:…]`) against the client
//   IP, as documented; qpsmtpd applied it to bare IPs, so every bare IP got "Forged IPs…"
//   and bracketed forgeries passed. Bare IPs now get is_plain_ip's message.
// * IPs containing `255` count as IPs (qpsmtpd's is_valid_ip refused them).
// * `reject_type` is honoured (default `disconnect`); qpsmtpd always forced `disconnect`.
// * no_forward_dns asks for A and AAAA; a name without addresses (NODATA) fails with
//   "HELO hostname did not resolve" (qpsmtpd asked for A only and let NODATA pass).
// * IPv6 address literals (`[IPv6:…]`) count as address literals everywhere.
// * Unknown arguments and an unknown policy stop the server at start-up.
import ipaddr from 'ipaddr.js';
import {
  DECLINED,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  LOGNOTICE,
  Plugin,
  PluginArgumentError,
  type Transaction,
} from '../lib/index.js';
import { perl_regex } from '../lib/perl-regex.js';
import { reverse_name, type DnsAnswer } from '../lib/dns.js';

/** A failed test: [smtp message, log message]. */
export type HeloError = [smtp: string, log: string];
type TestResult = HeloError | undefined;

const POLICIES = ['lenient', 'rfc', 'strict'] as const;
const TESTS: Record<(typeof POLICIES)[number], readonly string[]> = {
  lenient: ['is_in_badhelo', 'invalid_localhost', 'is_forged_literal', 'is_plain_ip'],
  rfc: ['is_not_fqdn', 'no_forward_dns', 'no_reverse_dns'],
  strict: ['is_address_literal', 'no_matching_dns'],
};

/** Characters that make a badhelo line a regular expression (qpsmtpd's list). */
const REGEX_CHARS = /[{}[\]()^$|*+?\\!]/;

/** The IP inside an address literal (`[1.2.3.4]`, `[IPv6:2001:db8::1]`), if it is one. */
function literal_ip(host: string): string | undefined {
  const m = /^\[(?:IPv6:)?(.*)\]$/i.exec(host);
  return m ? m[1] : undefined;
}

function same_ip(a: string, b: string | undefined): boolean {
  if (!b) return false;
  if (a === b) return true;
  if (!ipaddr.isValid(a) || !ipaddr.isValid(b)) return false;
  return ipaddr.process(a).toString() === ipaddr.process(b).toString();
}

export default class extends Plugin {
  _helo_tests: string[] = [];

  override register(...args: string[]): void {
    const a = this.parse_args(args, {
      policy: 'lenient',
      reject: 1,
      reject_type: 'disconnect',
      timeout: undefined,
      dns_timeout: undefined,
    });
    if (!(POLICIES as readonly string[]).includes(a.policy)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: policy must be lenient, rfc or strict, not '${a.policy}'`);
    }
    const t = a.dns_timeout ?? a.timeout ?? 5;
    if (!/^\d+(\.\d+)?$/.test(String(t)) || !(Number(t) > 0)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: timeout must be a positive number of seconds, not '${t}'`);
    }
    a.dns_timeout = Number(t);
    this.populate_tests();
    // a broken pattern is reported now, not only when a client meets it
    for (const bad of this.config_list('badhelo')) if (REGEX_CHARS.test(bad)) this.compile_badhelo(bad);
  }

  populate_tests(): void {
    const policy = this._args.policy as (typeof POLICIES)[number];
    this._helo_tests = [...TESTS.lenient];
    if (policy === 'rfc' || policy === 'strict') this._helo_tests.push(...TESTS.rfc);
    if (policy === 'strict') this._helo_tests.push(...TESTS.strict);
  }

  hook_helo(transaction: Transaction, host: string): Promise<number | [number, string]> {
    return this.helo_handler(transaction, host);
  }

  hook_ehlo(transaction: Transaction, host: string): Promise<number | [number, string]> {
    return this.helo_handler(transaction, host);
  }

  async helo_handler(_transaction: Transaction | undefined, host: string | undefined): Promise<number | [number, string]> {
    const results = this.connection.results;
    if (!host) {
      this.log(LOGINFO, 'fail, tolerated, no helo host');
      results.add(this, { fail: 'no helo host' });
      this.adjust_karma(-2);
      return DECLINED;
    }
    if (this.is_immune()) {
      results.add(this, { skip: 'immune' });
      return DECLINED;
    }
    for (const test of this._helo_tests) {
      const fn = (this as unknown as Record<string, (h: string) => TestResult | Promise<TestResult>>)[test]!;
      const err = await fn.call(this, host);
      if (err) {
        results.add(this, { fail: test, msg: err[1] });
        this.adjust_karma(-1);
        return this.get_reject(err[0], err[1]);
      }
      results.add(this, { pass: test });
    }
    this.log(LOGINFO, 'pass');
    return DECLINED;
  }

  hook_data_post(transaction: Transaction): number {
    const header = transaction.header();
    const helo = this.connection.hello_host();
    if (header) {
      header.delete('X-HELO');
      if (helo) header.add('X-HELO', helo, 0);
    }
    return DECLINED;
  }

  // -- the tests: each returns [smtp message, log message] on failure -------------------------

  is_in_badhelo(host: string): TestResult {
    const error = `I do not believe you are ${host}.`;
    const lc = host.toLowerCase();
    for (const bad of this.config_list('badhelo')) {
      if (REGEX_CHARS.test(bad) && this.is_regex_match(lc, bad)) return [error, 'in badhelo'];
      if (lc === bad.toLowerCase()) return [error, 'in badhelo'];
    }
    return undefined;
  }

  /** `pattern` must match `host`; with a leading `!` it must not. Broken patterns never match. */
  is_regex_match(host: string, pattern: string): TestResult {
    const error = 'Your HELO hostname is not allowed';
    const negated = pattern.startsWith('!');
    const re = this.compile_badhelo(pattern);
    if (!re) return undefined;
    if (negated ? !re.test(host) : re.test(host)) return [error, `badhelo pattern match (${pattern})`];
    return undefined;
  }

  compile_badhelo(pattern: string): RegExp | undefined {
    const src = pattern.startsWith('!') ? pattern.slice(1) : pattern;
    try {
      return perl_regex(src);
    } catch (e) {
      this.log(LOGERROR, `error, badhelo pattern '${pattern}' is not a valid regular expression (${(e as Error).message}); skipped`);
      return undefined;
    }
  }

  invalid_localhost(host: string | undefined): TestResult {
    if (this.is_localhost(this.connection.remote_ip())) {
      this.log(LOGDEBUG, 'pass, is localhost');
      return undefined;
    }
    if (host && host.toLowerCase() !== 'localhost') {
      this.log(LOGDEBUG, 'pass, host is not localhost');
      return undefined;
    }
    return ['You are not localhost', 'invalid localhost'];
  }

  is_plain_ip(host: string): TestResult {
    if (!this.is_valid_ip(host)) return undefined;
    this.log(LOGDEBUG, 'fail, plain IP');
    return ['Plain IP is invalid HELO hostname (RFC 2821)', 'plain IP'];
  }

  is_address_literal(host: string): TestResult {
    const ip = literal_ip(host);
    if (!ip || !this.is_valid_ip(ip)) return undefined;
    this.log(LOGDEBUG, 'fail, bracketed IP');
    return ['RFC 2821 allows an address literal, but we do not', 'bracketed IP'];
  }

  /** An address literal must name the client's own IP. */
  is_forged_literal(host: string): TestResult {
    const ip = literal_ip(host);
    if (!ip || !this.is_valid_ip(ip)) return undefined;
    if (same_ip(ip, this.connection.remote_ip())) return undefined;
    return ['Forged IPs not accepted here', 'forged IP literal'];
  }

  is_not_fqdn(host: string): TestResult {
    if (/^\[(\d{1,3}\.){3}\d{1,3}\]$/.test(host) || /^\[IPv6:[0-9a-f:.]+\]$/i.test(host)) return undefined;
    if (!host.includes('.')) return ['HELO name is not fully qualified. Read RFC 2821', 'not FQDN'];
    if (/[^a-zA-Z0-9\-.]/.test(host)) return ['HELO name contains invalid FQDN characters. Read RFC 1035', 'invalid FQDN chars'];
    return undefined;
  }

  private dns_query<T>(name: string, type: 'A' | 'AAAA' | 'PTR'): Promise<DnsAnswer<T>> {
    return this.get_resolver().query<T>(name, type, {
      timeout_ms: Number(this._args.dns_timeout ?? 5) * 1000,
      ...(this.signal ? { signal: this.signal } : {}),
    });
  }

  async no_forward_dns(host: string): Promise<TestResult> {
    if (this.is_address_literal(host)) return undefined;
    const name = host.replace(/\.$/, '');
    const [a, aaaa] = await Promise.all([this.dns_query<string>(name, 'A'), this.dns_query<string>(name, 'AAAA')]);
    const addrs = [...a.records, ...aaaa.records];
    if (addrs.length) {
      for (const ip of addrs) {
        this.check_ip_match(ip);
        if (this.connection.notes('helo_forward_match')) break;
      }
      this.log(LOGDEBUG, 'pass, forward DNS');
      return undefined;
    }
    if (a.error === 'NXDOMAIN' || aaaa.error === 'NXDOMAIN') return ['HELO hostname does not exist', 'no such host'];
    const failed = [a, aaaa].find((r) => r.error && r.error !== 'NODATA');
    if (failed) {
      this.log(LOGERROR, `skip, query failed (${failed.error}${failed.message ? `: ${failed.message}` : ''})`);
      return undefined;
    }
    return ['HELO hostname did not resolve', 'no forward DNS'];
  }

  async no_reverse_dns(host: string, ip?: string): Promise<TestResult> {
    const addr = ip || this.connection.remote_ip() || '';
    if (!ipaddr.isValid(addr)) return [`no rDNS for ${addr}`, 'no rDNS'];
    const r = await this.dns_query<string>(reverse_name(addr), 'PTR');
    if (!r.records.length) {
      if (r.error === 'NXDOMAIN') return [`no rDNS for ${addr}`, 'no rDNS'];
      if (r.error && r.error !== 'NODATA') {
        this.log(LOGINFO, r.error);
        return [`error getting reverse DNS for ${addr}`, `rDNS ${r.error}`];
      }
      return [`no reverse DNS for ${addr}`, 'no rDNS'];
    }
    for (const ptr of r.records) {
      const name = ptr.replace(/\.$/, '');
      this.log(LOGDEBUG, `PTR: ${name}`);
      this.check_name_match(name.toLowerCase(), host.toLowerCase());
    }
    this.log(LOGDEBUG, 'has rDNS');
    return undefined;
  }

  /** FCrDNS on the HELO name, from the notes that no_forward_dns and no_reverse_dns set. */
  no_matching_dns(_host: string): TestResult {
    const c = this.connection;
    if (c.notes('helo_forward_match') && c.notes('helo_reverse_match')) {
      this.log(LOGDEBUG, 'forward and reverse match');
      this.adjust_karma(1);
      return undefined;
    }
    if (c.notes('helo_forward_match')) {
      this.log(LOGDEBUG, 'name matches IP');
      return undefined;
    }
    if (c.notes('helo_reverse_match')) {
      this.log(LOGDEBUG, 'reverse matches name');
      return undefined;
    }
    this.log(LOGINFO, 'fail, no forward or reverse DNS match');
    return ['That HELO hostname fails FCrDNS', 'no matching DNS'];
  }

  /** An address of the HELO name equal to the client IP, or in its /24 (IPv6: first 96 bits). */
  check_ip_match(ip: string | undefined): void {
    if (!ip) return;
    const rip = this.connection.remote_ip();
    if (!rip) return;
    if (same_ip(ip, rip)) {
      this.log(LOGDEBUG, 'forward ip match');
      this.connection.notes('helo_forward_match', 1);
      return;
    }
    if (!ipaddr.isValid(ip) || !ipaddr.isValid(rip)) return;
    const a = ipaddr.process(ip);
    const b = ipaddr.process(rip);
    if (a.kind() !== b.kind()) return;
    const bits = a.kind() === 'ipv4' ? 24 : 96;
    if (a.match(b, bits)) {
      this.log(LOGNOTICE, 'forward network match');
      this.connection.notes('helo_forward_match', 1);
    }
  }

  /** A PTR name equal to the HELO name, or sharing its last two labels. */
  check_name_match(dns_name: string | undefined, helo_name: string): void {
    if (!dns_name) return;
    const dots = dns_name.split('.');
    if (dots.length < 2) return;
    if (dns_name === helo_name) {
      this.log(LOGDEBUG, 'reverse name match');
      this.connection.notes('helo_reverse_match', 1);
      return;
    }
    const dns_dom = dots.slice(-2).join('.');
    const helo_dom = helo_name.split('.').slice(-2).join('.');
    if (dns_dom === helo_dom) {
      this.log(LOGNOTICE, 'reverse domain match');
      this.connection.notes('helo_reverse_match', 1);
    }
  }
}
