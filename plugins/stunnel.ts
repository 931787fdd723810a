// stunnel: the client's address from the PROXY line stunnel sends in front of the session
// (stunnel's `protocol = proxy`), qpsmtpd's plugins/stunnel.
//
//   stunnel proxy on
//
// Without `proxy on` the plugin does nothing. With it, a `PROXY TCP4|TCP6 <src> <dst> <sport>
// <dport>` line, read as a command, sets remote_ip, remote_port, remote_info (`[<src>]`) and
// remote_host (the PTR name, `Unknown` without one), the connection notes `proxy` (`YES`),
// `protocol`, `remote_ip`, `remote_port`, `local_ip` and `local_port`, and connection.proxy()
// (type `stunnel`), and answers nothing (stunnel already passed our greeting on). A PROXY
// line from anywhere but 127.0.0.1 (or an address in `trusted_proxies`), a second one, or a
// malformed one closes the connection with `521 Unrecognized command, closing connection`.
//
// A /proxy listener (docs/listeners.md) does the same job in the server, before the greeting
// and before the limits, and also takes stunnel's header; prefer it for new set-ups.
//
// Differences from qpsmtpd: the addresses and ports must be valid (qpsmtpd took any words);
// other unknown commands are left to later plugins (qpsmtpd answered OK for them, which kept
// plugins such as tls and count_unrecognized_commands from ever seeing them); addresses in
// `trusted_proxies` may send the line too.
import net from 'node:net';
import { DECLINED, DENY_DISCONNECT, DONE, LOGINFO, LOGWARN, Plugin, PluginArgumentError, normalize_ip } from '../lib/index.js';
import { remote_host_for } from '../lib/server/serve.js';
import { is_trusted_proxy } from '../lib/smtp/xclient.js';

export default class Stunnel extends Plugin {
  proxy_enabled = false;

  override register(...args: string[]): void {
    if (args.length % 2) throw new PluginArgumentError(`plugin ${this.plugin_name()}: arguments come in pairs (proxy on), got '${args.join(' ')}'`);
    for (let i = 0; i < args.length; i += 2) {
      const key = args[i]!.toLowerCase();
      if (key !== 'proxy') throw new PluginArgumentError(`plugin ${this.plugin_name()}: unknown argument '${args[i]}' (known: proxy)`);
      this.proxy_enabled = args[i + 1]!.toUpperCase() === 'ON';
    }
    if (this.proxy_enabled) this.log(LOGINFO, 'proxy protocol enabled');
  }

  async hook_unrecognized_command(_transaction: unknown, cmd: string, rest?: string): Promise<number> {
    if (!this.proxy_enabled || String(cmd).toLowerCase() !== 'proxy') return DECLINED;
    const c = this.connection;
    const peer = c.remote_ip();
    if (peer !== '127.0.0.1' && !is_trusted_proxy(this.qp, peer)) {
      this.log(LOGWARN, `PROXY from ${peer ?? '?'}, which is not stunnel on 127.0.0.1`);
      return DENY_DISCONNECT;
    }
    if (c.notes('proxy')) {
      this.log(LOGWARN, 'a second PROXY line');
      return DENY_DISCONNECT;
    }
    // TCP4 192.168.41.227 10.27.11.106 50060 465
    const m = /^(TCP[46]) (\S+) (\S+) (\d{1,5}) (\d{1,5})$/.exec(String(rest ?? '').trim());
    const family = m?.[1] === 'TCP4' ? 4 : 6;
    if (!m || net.isIP(m[2]!) !== family || net.isIP(m[3]!) !== family || Number(m[4]) > 65535 || Number(m[5]) > 65535) {
      this.log(LOGWARN, `malformed PROXY line: ${String(rest ?? '').slice(0, 100)}`);
      return DENY_DISCONNECT;
    }
    const [, protocol, src, dst, sport, dport] = m as unknown as [string, string, string, string, string, string];
    const remote_ip = normalize_ip(src);
    c.remote_ip(remote_ip);
    c.remote_port(Number(sport));
    c.remote_info(`[${remote_ip}]`);
    c.notes('proxy', 'YES');
    c.notes('protocol', protocol);
    c.notes('remote_ip', remote_ip);
    c.notes('remote_port', sport);
    c.notes('local_ip', normalize_ip(dst));
    c.notes('local_port', dport);
    c.proxy({ ...c.proxy(), ...(peer ? { ip: peer } : {}), type: 'stunnel' });
    this.log(LOGINFO, `stunnel : ${remote_ip}:${sport}`);
    c.remote_host(await remote_host_for(this.qp.runtime, remote_ip));
    return DONE;
  }
}
