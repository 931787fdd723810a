// Live DNS lookups for the core and plugins: node:dns/promises Resolver with an overall
// deadline per lookup (c-ares retries on its own, so a per-try timeout alone is not a bound).
import { Resolver } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

export type DnsErrorCode = 'NXDOMAIN' | 'NODATA' | 'SERVFAIL' | 'TIMEOUT' | 'REFUSED' | 'ERROR';

export interface DnsAnswer<T> {
  records: T[];
  error?: DnsErrorCode;
  message?: string;
}

export interface DnsOptions {
  /** `ip` or `ip:port` / `[v6]:port`; empty means the system's resolv.conf servers. */
  servers?: string[];
  /** Overall deadline of one lookup, all retries included. */
  timeout_ms?: number;
  tries?: number;
}

export interface MxRecord {
  exchange: string;
  priority: number;
}

type RrType = 'A' | 'AAAA' | 'MX' | 'NS' | 'PTR' | 'TXT' | 'CNAME';

function classify(code: string | undefined): DnsErrorCode {
  switch (code) {
    case 'ENOTFOUND':
      return 'NXDOMAIN';
    case 'ENODATA':
      return 'NODATA';
    case 'ESERVFAIL':
      return 'SERVFAIL';
    case 'ETIMEOUT':
    case 'ECANCELLED':
      return 'TIMEOUT';
    case 'EREFUSED':
    case 'ECONNREFUSED':
      return 'REFUSED';
    default:
      return 'ERROR';
  }
}

/** `1.2.3.4` -> `4.3.2.1.in-addr.arpa`, IPv6 -> nibble form under ip6.arpa. */
export function reverse_name(ip: string): string {
  const addr = ipaddr.parse(ip);
  if (addr.kind() === 'ipv4') return (addr as ipaddr.IPv4).octets.slice().reverse().join('.') + '.in-addr.arpa';
  const hex = (addr as ipaddr.IPv6).parts.map((p) => p.toString(16).padStart(4, '0')).join('');
  return hex.split('').reverse().join('.') + '.ip6.arpa';
}

export class DnsClient {
  readonly servers: string[];
  readonly timeout_ms: number;
  readonly tries: number;

  constructor(opts: DnsOptions = {}) {
    this.servers = opts.servers ?? [];
    this.timeout_ms = opts.timeout_ms ?? 5000;
    this.tries = opts.tries ?? 2;
  }

  private resolver?: Resolver;

  /** One Resolver per client: building one per lookup cost ~10% of a worker's CPU. */
  private shared(): Resolver {
    if (!this.resolver) {
      this.resolver = new Resolver({ timeout: Math.max(1, Math.ceil(this.timeout_ms / this.tries)), tries: this.tries });
      if (this.servers.length) this.resolver.setServers(this.servers);
    }
    return this.resolver;
  }

  /**
   * One lookup with a hard deadline; never throws. A lookup past its deadline is abandoned, not
   * cancelled (cancel() would end every lookup in flight); c-ares' own timeout ends it later.
   */
  async query<T = unknown>(name: string, type: RrType, opts: { timeout_ms?: number; signal?: AbortSignal } = {}): Promise<DnsAnswer<T>> {
    const deadline = opts.timeout_ms ?? this.timeout_ms;
    let timer: NodeJS.Timeout | undefined;
    let on_abort: (() => void) | undefined;
    try {
      const lookup = this.shared().resolve(name, type) as Promise<T[]>;
      lookup.catch(() => {}); // it may settle after we gave up on it
      const expiry = new Promise<never>((_, reject) => {
        const fail = () => reject(Object.assign(new Error(`DNS ${type} ${name}: no answer within ${deadline} ms`), { code: 'ETIMEOUT' }));
        timer = setTimeout(fail, deadline);
        on_abort = fail;
        opts.signal?.addEventListener('abort', fail, { once: true });
      });
      const records = await Promise.race([lookup, expiry]);
      return { records };
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      return { records: [], error: classify(e.code), message: e.message };
    } finally {
      clearTimeout(timer);
      if (on_abort) opts.signal?.removeEventListener('abort', on_abort);
    }
  }

  async resolve_a(name: string): Promise<string[]> {
    return (await this.query<string>(name, 'A')).records;
  }
  async resolve_aaaa(name: string): Promise<string[]> {
    return (await this.query<string>(name, 'AAAA')).records;
  }
  async resolve_mx(name: string): Promise<MxRecord[]> {
    return (await this.query<MxRecord>(name, 'MX')).records;
  }
  async resolve_ns(name: string): Promise<string[]> {
    return (await this.query<string>(name, 'NS')).records;
  }
  async resolve_txt(name: string): Promise<string[]> {
    return (await this.query<string[]>(name, 'TXT')).records.map((parts) => parts.join(''));
  }
  /** PTR names of an IP address or of an in-addr/ip6.arpa name. */
  async resolve_ptr(ipOrName: string): Promise<string[]> {
    const name = ipaddr.isValid(ipOrName) ? reverse_name(ipOrName) : ipOrName;
    return (await this.query<string>(name, 'PTR')).records;
  }
}

/** `QPSMTPD_DNS_SERVERS` (comma or space separated) wins over the `dns_servers` config lines. */
export function dns_servers_from(env: Record<string, string | undefined>, configLines: string[]): string[] {
  const fromEnv = env.QPSMTPD_DNS_SERVERS?.split(/[\s,]+/).filter(Boolean);
  return fromEnv?.length ? fromEnv : configLines;
}
