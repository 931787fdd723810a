// relay: decide at connect whether the client may relay (connection->relay_client).
//
//   relay [only 1] [loglevel N]
//
// Checked in this order, the first decision wins (the hook itself always returns DECLINED):
//   1. `norelayclients` (IP or prefix): a match forbids relaying, even with RELAYCLIENT set.
//   2. The environment variable RELAYCLIENT (set, even empty): relaying allowed.
//   3. `relayclients`: CIDR blocks (`10.1.0.0/24`, `2001:db8:e431:ae06::/64`, matched
//      inclusively), full IPs, and prefixes (`192.168.42.`, `2001:db8:e431:ae06:`, or
//      expanded-nibble prefixes such as `2001:0db8`); `::1` always relays.
//   4. `morerelayclients` (CDB map of IPs and prefixes, as in relayclients but without CIDR).
// Relay clients are "immune" for most other plugins and may send to any domain.
//
// With `only 1` the plugin also joins the rcpt hook: relay clients get OK for every recipient,
// everyone else `550 relaying denied`. Load it before the other rcpt plugins.
//
// Prefix matching: an IPv4 prefix ends with a dot (`192.168.`); an IPv6 prefix is whole
// groups ending with a colon (`2001:db8:`, compared by value, so `2001:0db8:` is the same), or
// a prefix of the fully expanded form (`2001:0db8:00`, as qpsmtpd matched). Full IPv6 entries
// match in any notation.
//
// Differences from qpsmtpd: CIDR blocks include their first and last address (qpsmtpd
// matched only strictly inside a block, so a /32 or /128 never matched); IPv6 prefixes
// ending in `:` work as documented (qpsmtpd never matched them); norelayclients prefixes
// work for IPv6 too; RELAYCLIENT is read from the server's environment and never deleted
// (qpsmtpd deleted it in the forked child on a norelayclients match; here one process
// serves many sessions, so the match simply wins over RELAYCLIENT for this session).
import ipaddr from 'ipaddr.js';
import { DECLINED, DENY, LOGDEBUG, LOGERROR, LOGINFO, OK, Plugin, type Transaction } from '../lib/index.js';

/** Perl truth for an argument value. */
function truthy(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && v !== '0' && v !== 0 && v !== false;
}

/**
 * Every string an entry for `ip` may be written as: the address (as given, canonical, and for
 * IPv6 also unpadded-uncompressed and fully expanded) and its prefixes.
 */
export function ip_candidates(ip: string): Set<string> {
  const out = new Set<string>();
  const given = ip.toLowerCase();
  out.add(given);
  if (!ipaddr.isValid(ip)) return out;
  const addr = ipaddr.process(ip);
  if (addr.kind() === 'ipv4') {
    const octets = (addr as ipaddr.IPv4).octets;
    out.add(octets.join('.'));
    for (let n = 3; n >= 1; n--) out.add(octets.slice(0, n).join('.') + '.');
    return out;
  }
  const v6 = addr as ipaddr.IPv6;
  out.add(v6.toString());
  out.add(v6.toNormalizedString());
  const expanded = v6.parts.map((g) => g.toString(16).padStart(4, '0')).join(':');
  out.add(expanded);
  // qpsmtpd: strip one nibble at a time from the expanded form (never leaving a trailing colon)
  for (let len = expanded.length - 1; len > 0; len--) {
    const p = expanded.slice(0, len);
    out.add(p.endsWith(':') ? p.slice(0, -1) : p);
  }
  // whole groups with a trailing colon, padded and unpadded: `2001:0db8:`, `2001:db8:`
  for (let n = 1; n <= 7; n++) {
    out.add(v6.parts.slice(0, n).map((g) => g.toString(16).padStart(4, '0')).join(':') + ':');
    out.add(v6.parts.slice(0, n).map((g) => g.toString(16)).join(':') + ':');
  }
  return out;
}

/** A list entry in the form ip_candidates produces: full IPs canonical, the rest lower-cased. */
function normalize_entry(entry: string): string {
  const e = entry.trim().toLowerCase();
  if (ipaddr.IPv4.isValidFourPartDecimal(e)) return ipaddr.parse(e).toString();
  if (e.includes(':') && ipaddr.IPv6.isValid(e)) return ipaddr.process(e).toString();
  return e;
}

export default class extends Plugin {
  override register(...args: string[]): void {
    const a = this.parse_args(args, { only: undefined });
    if (truthy(a.only)) this.register_hook('rcpt', 'relay_only');
  }

  hook_connect(_transaction: Transaction): number {
    const c = this.connection;
    if (this.is_in_norelayclients()) {
      c.relay_client(0);
      this.log(LOGINFO, 'fail, disabled by norelayclients');
      c.results.add(this, { fail: 'norelayclients' });
      return DECLINED;
    }
    if (this.qp.runtime.env.RELAYCLIENT !== undefined) {
      c.relay_client(1);
      this.log(LOGINFO, 'pass, enabled by env');
      c.results.add(this, { pass: 'env' });
      return DECLINED;
    }
    if (this.is_in_cidr_block() || this.is_octet_match()) {
      c.relay_client(1);
      return DECLINED;
    }
    this.log(LOGINFO, 'skip, no match');
    c.results.add(this, { skip: 'no match' });
    return DECLINED;
  }

  relay_only(): number {
    return this.connection.relay_client() ? OK : DENY;
  }

  is_in_norelayclients(): boolean {
    const ip = this.connection.remote_ip();
    if (!ip) return false;
    const entries = new Set(this.config_list('norelayclients').map(normalize_entry));
    for (const cand of ip_candidates(ip)) {
      if (entries.has(cand)) {
        this.log(LOGINFO, `${cand} in norelayclients`);
        return true;
      }
    }
    this.log(LOGDEBUG, 'no match in norelayclients');
    return false;
  }

  /** The CIDR lines of `relayclients` (those with a `/`). */
  cidr_blocks(): string[] {
    return this.config_list('relayclients').filter((l) => l.includes('/'));
  }

  is_in_cidr_block(blocks: readonly string[] = this.cidr_blocks()): boolean {
    const ip = this.connection.remote_ip();
    if (!ip) {
      this.log(LOGINFO, 'err, no remote_ip?');
      return false;
    }
    if (!ipaddr.isValid(ip)) return false;
    const addr = ipaddr.process(ip);
    for (const block of blocks) {
      let net: [ipaddr.IPv4 | ipaddr.IPv6, number];
      try {
        net = ipaddr.parseCIDR(block.trim());
      } catch (e) {
        this.log(LOGERROR, `relayclients: '${block}' is not a valid CIDR block (${(e as Error).message})`);
        continue;
      }
      let a: ipaddr.IPv4 | ipaddr.IPv6 = addr;
      if (net[0].kind() !== a.kind()) {
        if (a.kind() === 'ipv4' && net[0].kind() === 'ipv6') a = (a as ipaddr.IPv4).toIPv4MappedAddress();
        else if (net[0].kind() === 'ipv4' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
        else continue;
      }
      if ((a as ipaddr.IPv4).match(net as [ipaddr.IPv4, number])) {
        this.log(LOGINFO, `pass, cidr match (${ip})`);
        this.connection.results.add(this, { pass: 'relayclients cidr', msg: block.trim() });
        return true;
      }
    }
    this.log(LOGDEBUG, 'no cidr match');
    return false;
  }

  is_octet_match(): boolean {
    const ip = this.connection.remote_ip();
    if (!ip) return false;
    if (ip === '::1' || (ipaddr.IPv6.isValid(ip) && ipaddr.IPv6.parse(ip).range() === 'loopback')) {
      this.log(LOGINFO, `pass, octet matched localhost (${ip})`);
      this.connection.results.add(this, { pass: 'localhost' });
      return true;
    }
    const octets = new Set(
      this.config_list('relayclients')
        .filter((l) => !l.includes('/'))
        .map(normalize_entry),
    );
    const more = this.config_map('morerelayclients');
    for (const cand of ip_candidates(ip)) {
      if (octets.has(cand)) {
        this.log(LOGINFO, `pass, octet match in relayclients (${cand})`);
        this.connection.results.add(this, { pass: 'relayclients', msg: cand });
        return true;
      }
      if (more.has(cand)) {
        this.log(LOGINFO, `pass, octet match in morerelayclients (${cand})`);
        this.connection.results.add(this, { pass: 'morerelayclients', msg: cand });
        return true;
      }
    }
    this.log(LOGDEBUG, 'no octet match');
    return false;
  }
}
