// whitelist: exempt chosen hosts, HELO names, senders and recipients from later checks.
//
//   whitelist [per_recipient 0|1] [merge 0|1] [loglevel N]
//
// Load it before the plugins it should override. Each match returns OK, which ends that hook
// for the SMTP command (a whitelisted host skips every later `connect` plugin; an OK at
// `rcpt` accepts the recipient), and leaves a note later plugins can test:
//
// connect    env WHITELISTCLIENT set → connection note `whitelistclient`, karma +5.
//            `whitelisthosts` (an IP, an IP prefix such as `192.168.`, or a CIDR block such as
//            `10.0.0.0/8` or `2001:db8::/32`) → connection note `whitelisthost`, karma +5.
// helo/ehlo  `whitelisthelo` (HELO names, any case) → connection note `whitelisthelo`.
// mail       `whitelistsenders` (addresses or domains, any case) → transaction note
//            `whitelistsender`. The null sender never matches.
// rcpt       `whitelistrcpt` (addresses or domains) → transaction note `whitelistrcpt`, the
//            number of whitelisted recipients.
//
// `per_recipient 1` moves every check to `rcpt` (host, HELO, sender, recipient, in that
// order) and looks the lists up per recipient: through the `user_config` hooks (the
// user_config plugin) with the recipient's address, merged with the global files unless
// `merge 0`. Without a user_config plugin that answers, the global files decide.
import ipaddr from 'ipaddr.js';
import {
  DECLINED,
  LOGCRIT,
  LOGDEBUG,
  OK,
  Plugin,
  type Address,
  type Transaction,
} from '../lib/index.js';

/** Does `ip` lie in the CIDR block `entry` (or equal the address `entry`)? */
export function within(ip: string, entry: string): boolean {
  try {
    let addr = ipaddr.process(ip);
    if (entry.includes('/')) {
      const [net, bits] = ipaddr.parseCIDR(entry);
      if (net.kind() === 'ipv6' && addr.kind() === 'ipv4') addr = (addr as ipaddr.IPv4).toIPv4MappedAddress();
      if (net.kind() !== addr.kind()) return false;
      return addr.kind() === 'ipv4'
        ? (addr as ipaddr.IPv4).match(net as ipaddr.IPv4, bits)
        : (addr as ipaddr.IPv6).match(net as ipaddr.IPv6, bits);
    }
    if (!ipaddr.isValid(entry)) return false;
    const other = ipaddr.process(entry);
    return other.kind() === addr.kind() && other.toString() === addr.toString();
  } catch {
    return false;
  }
}

export default class extends Plugin {
  _per_recipient = false;
  _merge = true;
  /** per_recipient mode: the HELO name of this connection (kept on the session's view). */
  _whitelist_soft_helo?: string;

  override register(...args: string[]): void {
    const a = this.parse_args(args, { per_recipient: undefined, merge: undefined });
    this._per_recipient = truthy(a.per_recipient);
    if (a.merge !== undefined) this._merge = truthy(a.merge);

    if (!this._per_recipient) {
      // normal mode: whitelist per hook
      this.register_hook('connect', 'check_host');
      this.register_hook('helo', 'check_helo');
      this.register_hook('ehlo', 'check_helo');
      this.register_hook('mail', 'check_sender');
      this.register_hook('rcpt', 'check_rcpt');
    } else {
      // per recipient mode: defer all whitelisting to the rcpt hook
      this.register_hook('rcpt', 'check_host');
      this.register_hook('helo', 'helo_helper');
      this.register_hook('ehlo', 'helo_helper');
      this.register_hook('rcpt', 'check_helo');
      this.register_hook('rcpt', 'check_sender');
      this.register_hook('rcpt', 'check_rcpt');
    }
  }

  /** A whitelist: the global file, or in per_recipient mode the recipient's (and the global). */
  lookup(name: string, rcpt?: Address): string[] {
    if (!this._per_recipient || !rcpt || typeof rcpt.address !== 'function') return this.config_list(name);
    const own = this.config_list(name, rcpt);
    if (!this._merge) return own;
    const all = [...own];
    for (const v of this.config_list(name)) if (!all.includes(v)) all.push(v);
    return all;
  }

  check_host(_transaction: Transaction, rcpt?: Address): number {
    const ip = this.connection.remote_ip();
    if (!ip) return DECLINED;

    // from tcpserver
    if (this.qp.runtime.env.WHITELISTCLIENT !== undefined) {
      this.connection.notes('whitelistclient', 1);
      this.log(LOGCRIT, `pass, ${ip} is whitelisted client`);
      this.connection.results.add(this, { pass: 'whitelistclient' });
      this.adjust_karma(5);
      return OK;
    }

    for (const h of this.lookup('whitelisthosts', rcpt)) {
      if (!h) continue;
      if (h === ip || ip.startsWith(h)) {
        this.connection.notes('whitelisthost', 1);
        this.log(LOGCRIT, `pass, ${ip} is a whitelisted host`);
        this.connection.results.add(this, { pass: 'whitelisthosts', msg: h });
        this.adjust_karma(5);
        return OK;
      }
      if (within(ip, h)) {
        this.connection.notes('whitelisthost', 1);
        this.log(LOGCRIT, `pass, ${ip} is in a whitelisted block`);
        this.connection.results.add(this, { pass: 'whitelisthosts', msg: h });
        this.adjust_karma(5);
        return OK;
      }
    }
    this.log(LOGDEBUG, `skip: ${ip} is not whitelisted`);
    this.connection.results.add(this, { skip: 'whitelisthosts' });
    return DECLINED;
  }

  helo_helper(_transaction: Transaction, helo: string): number {
    this._whitelist_soft_helo = helo;
    return DECLINED;
  }

  check_helo(_transaction: Transaction, arg?: string | Address): number {
    // in per_recipient mode this runs at rcpt: the argument is the recipient
    let helo: string | undefined;
    let rcpt: Address | undefined;
    if (this._per_recipient) {
      rcpt = arg as Address | undefined;
      helo = this._whitelist_soft_helo;
    } else {
      helo = arg as string | undefined;
    }
    for (const h of this.lookup('whitelisthelo', rcpt)) {
      if (helo && h.toLowerCase() === helo.toLowerCase()) {
        this.connection.notes('whitelisthelo', 1);
        this.log(LOGCRIT, `helo host ${helo} in whitelisthelo`);
        return OK;
      }
    }
    return DECLINED;
  }

  check_sender(transaction: Transaction, arg?: Address): number {
    let sender: Address | undefined = arg;
    let rcpt: Address | undefined;
    if (this._per_recipient) {
      rcpt = arg;
      sender = transaction.sender();
    }
    if (!sender || sender.format() === '<>') return DECLINED;
    const addr = (sender.address() ?? '').toLowerCase();
    if (!addr) return DECLINED;
    const host = (sender.host() ?? '').toLowerCase();
    if (!host) return DECLINED;

    for (const entry of this.lookup('whitelistsenders', rcpt)) {
      if (!entry || entry === '0') continue;
      const h = entry.toLowerCase();
      if (addr === h || host === h) {
        transaction.notes('whitelistsender', 1);
        this.log(LOGCRIT, `envelope sender ${addr} in whitelistsenders`);
        return OK;
      }
    }
    return DECLINED;
  }

  check_rcpt(transaction: Transaction, rcpt?: Address): number {
    if (!rcpt) return DECLINED;
    const addr = (rcpt.address() ?? '').toLowerCase();
    if (!addr) return DECLINED;
    const host = (rcpt.host() ?? '').toLowerCase();
    if (!host) return DECLINED;

    for (const entry of this.lookup('whitelistrcpt', rcpt)) {
      if (!entry || entry === '0') continue;
      const h = entry.toLowerCase();
      if (addr === h || host === h) {
        const note = (Number(transaction.notes('whitelistrcpt')) || 0) + 1;
        transaction.notes('whitelistrcpt', note);
        this.log(LOGCRIT, `recipient ${addr} in whitelistrcpt`);
        return OK;
      }
    }
    return DECLINED;
  }
}

/** Perl truth of an argument value. */
function truthy(v: unknown): boolean {
  return v !== undefined && v !== null && v !== '' && v !== '0';
}

