// rcpt_ok: accept a recipient whose domain is ours (qmail's rcpthosts / morercpthosts.cdb).
// Load it as the LAST rcpt plugin: whatever no earlier plugin accepted is decided here.
//
//   rcpt_ok [loglevel N]
//
// Immune (relay client, whitelisted host or sender) → OK. Otherwise the recipient's domain
// (lower-cased; for a bare `postmaster`/`abuse` the `me` value) must equal an entry of `me` +
// `rcpthosts`, end with an entry that starts with `.`, or be a key of `morercpthosts.cdb`;
// if not → `550 Relaying denied (#5.7.1)`. A recipient without a domain that is not
// postmaster/abuse is accepted, as in qpsmtpd (the core refuses such addresses earlier).
import { OK, LOGINFO, Plugin, dsn, type Address, type Transaction } from '../lib/index.js';

export default class extends Plugin {
  override register(...args: string[]): void {
    this.parse_args(args, {});
  }

  hook_rcpt(_transaction: Transaction, recipient: Address | undefined): number | [number, string] {
    if (this.is_immune()) {
      this.transaction.results.add(this, { skip: 'immune' });
      return OK;
    }
    const host = this.get_rcpt_host(recipient);
    if (!host) {
      this.transaction.results.add(this, { skip: 'no domain' });
      return OK;
    }
    if (this.is_in_rcpthosts(host)) return OK;
    if (this.is_in_morercpthosts(host)) return OK;
    return dsn.relaying_denied();
  }

  /** `me` and the `rcpthosts` entries: exact (case-insensitive) or `.suffix` matches. */
  is_in_rcpthosts(host: string): boolean {
    const me = this.config('me');
    const allowed_hosts = [...(me !== undefined ? [me] : []), ...this.config_list('rcpthosts')];
    for (const entry of allowed_hosts) {
      const allowed = entry.replace(/^\s+/, '');
      if (!allowed) continue;
      if (host === allowed.toLowerCase()) {
        this.log(LOGINFO, `pass: ${host} in rcpthosts`);
        this.transaction.results.add(this, { pass: 'rcpthosts', msg: host });
        return true;
      }
      if (allowed.startsWith('.') && host.toLowerCase().endsWith(allowed.toLowerCase())) {
        this.log(LOGINFO, `pass: ${host} in rcpthosts as ${allowed}`);
        this.transaction.results.add(this, { pass: 'rcpthosts', msg: host });
        return true;
      }
    }
    return false;
  }

  /** A key of `morercpthosts.cdb` (exact, as qmail-newmrh stores them: lower case). */
  is_in_morercpthosts(host: string): boolean {
    if (this.config_map('morercpthosts').has(host)) {
      this.log(LOGINFO, `pass: ${host} found in morercpthosts`);
      this.transaction.results.add(this, { pass: 'morercpthosts', msg: host });
      return true;
    }
    this.log(LOGINFO, `fail: ${host} not in morercpthosts`);
    this.transaction.results.add(this, { fail: 'rcpthosts', msg: host });
    return false;
  }

  /** The recipient's domain in lower case; `me` for a bare postmaster/abuse; else undefined. */
  get_rcpt_host(recipient: Address | undefined | null): string | undefined {
    if (!recipient) return undefined;
    const host = recipient.host();
    if (host) return host.toLowerCase();
    const user = recipient.user();
    if (!user) return undefined;
    if (/^(postmaster|abuse)$/i.test(user)) return this.config('me')?.toLowerCase();
    return undefined;
  }
}
