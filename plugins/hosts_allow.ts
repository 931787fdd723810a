// hosts_allow: decide before the greeting whether a host may connect at all.
//
//   hosts_allow [loglevel N]
//
// Runs at `pre-connection`, in the master process (qpsmtpd-forkserver/prefork only, as in
// qpsmtpd). Two checks:
//
// 1. Concurrent connections per IP. When the daemon runs with `-m`/`--max-from-ip N`, the
//    count is 1 (this connection) + the running sessions from the same address; above N →
//    `451 too many connections from <ip>, try again later`. If another pre-connection plugin
//    (karma) set the connection note `karma_history`, the limit becomes N+3 for karma > 5
//    and 1 for karma <= 0. (The master also enforces `-m` by itself before any hook runs.)
// 2. The `hosts_allow` config file, one rule per line: `<ipv4>[/<bits>] <CONSTANT> [message]`.
//    The first line whose network equals the client's address masked to <bits> (default 32)
//    decides: its constant (`DENY`, `DENYSOFT`, `OK`, `DECLINED`…; unknown names count as
//    DECLINED) and message are the hook's result. So
//        192.168.3.4    DECLINED
//        192.168.3.0/24 DENY Sorry, known spam only source
//    refuses the /24 (`550 Sorry, known spam only source`) except 192.168.3.4.
//    As in qpsmtpd the network must be written with its host bits zero (`10.0.0.0/8`, not
//    `10.1.2.3/8`), and only IPv4 clients and rules are considered.
import ipaddr from 'ipaddr.js';
import {
  DECLINED,
  DENY,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  LOGDEBUG,
  LOGINFO,
  Plugin,
  return_code,
  type Transaction,
} from '../lib/index.js';

const DENIALS = new Set([DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT]);

export interface PreConnectionArgs {
  remote_ip?: string;
  remote_port?: number;
  local_ip?: string;
  local_port?: number;
  max_conn_ip?: number;
  /** IPs of the running sessions (the master's view). */
  child_addrs?: Array<string | undefined | null>;
}

/** The address in canonical form (IPv4-mapped IPv6 as IPv4), or undefined if not an IP. */
function canonical(ip: string | undefined | null): string | undefined {
  if (!ip || !ipaddr.isValid(ip)) return undefined;
  let a = ipaddr.parse(ip);
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address();
  return a.kind() === 'ipv4' ? a.toString() : (a as ipaddr.IPv6).toNormalizedString();
}

/** A strict dotted quad (inet_aton's shorthand forms are not client addresses). */
function ipv4_octets(ip: string): number[] | undefined {
  const c = canonical(ip);
  if (!c || !ipaddr.IPv4.isValidFourPartDecimal(c)) return undefined;
  return ipaddr.IPv4.parse(c).octets;
}

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_pre_connection(_transaction: Transaction, args: PreConnectionArgs = {}): number | [number, string] | [number] {
    const remote = args.remote_ip ?? '';
    let max = Number(args.max_conn_ip) || 0;
    const karma = this.connection.notes('karma_history');

    if (max) {
      let num_conn = 1; // this connection
      const me = canonical(remote);
      for (const rip of args.child_addrs ?? []) {
        if (me !== undefined && canonical(rip) === me) num_conn++;
      }
      if (karma !== undefined && karma !== null) max = this.karma_bump(Number(karma), max);
      if (num_conn > max) {
        const err = `too many connections from ${remote}`;
        this.log(LOGINFO, `fail: ${err} (${num_conn} > ${max})`);
        return [DENYSOFT, `${err}, try again later`];
      }
    }

    const r = this.in_hosts_allow(remote);
    if (r) return r;

    this.log(LOGDEBUG, 'pass');
    return DECLINED;
  }

  /** The first `hosts_allow` rule matching `remote`: `[code, message]`, else undefined. */
  in_hosts_allow(remote: string): [number, string] | [number] | undefined {
    const octets = ipv4_octets(remote);
    if (!octets) return undefined;
    for (const raw of this.config_list('hosts_allow')) {
      const [ipmask = '', name, message] = split3(raw.replace(/^\s+/, ''));
      if (name === undefined) continue;
      const slash = ipmask.indexOf('/');
      const net = slash < 0 ? ipmask : ipmask.slice(0, slash);
      const bits_text = slash < 0 ? '32' : ipmask.slice(slash + 1);
      if (!/^\d+$/.test(bits_text)) continue;
      const bits = Math.min(32, Number(bits_text));
      if (masked(octets, bits) !== net) continue;
      const v = return_code(name); // by name only; a number or an unknown name is DECLINED
      const code = typeof v === 'number' ? v : DECLINED;
      if (DENIALS.has(code)) this.log(LOGINFO, `fail, ${message ?? ''}`);
      else this.log(LOGDEBUG, `pass, ${name}, ${message ?? ''}`);
      return message === undefined ? [code] : [code, message];
    }
    return undefined;
  }

  /** The per-IP limit adjusted by the karma history of the client. */
  karma_bump(karma: number, max: number): number {
    if (karma > 5) {
      this.log(LOGDEBUG, 'connect limit +3 for positive karma');
      return max + 3;
    }
    if (karma <= 0) {
      this.log(LOGINFO, `connect limit 1, karma ${karma}`);
      return 1;
    }
    return max;
  }
}

/** Perl's `split /\s+/, $_, 3`. */
function split3(line: string): [string?, string?, string?] {
  const m = /^(\S*)(?:\s+(\S*))?(?:\s+([\s\S]*))?$/.exec(line);
  if (!m) return [line];
  const out: [string?, string?, string?] = [m[1]];
  if (m[2] !== undefined) out[1] = m[2];
  if (m[3] !== undefined) out[2] = m[3];
  return out;
}

/** The dotted quad of `octets` with only the first `bits` bits kept. */
function masked(octets: number[], bits: number): string {
  return octets
    .map((o, i) => {
      const keep = Math.max(0, Math.min(8, bits - i * 8));
      const mask = keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff;
      return o & mask;
    })
    .join('.');
}
