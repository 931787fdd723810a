// Per-listener parameters (KumoMTA's `via` and smtp_server_get_dynamic_parameters): the
// `listener_parameters` hook returns config values for one connection, which win over the
// `via/<local ip>/<name>` overlay files and the plain config files (Qpsmtpd#config_list).
import { LOGERROR, OK } from '../constants.js';
import type { Qpsmtpd } from '../qpsmtpd.js';

/** The listener a connection came in on, as `-l ADDR[:PORT][/flags]` named it. */
export interface ListenerInfo {
  host?: string;
  port?: number;
  /** Implicit TLS (SMTPS). */
  tls?: boolean;
  /** A PROXY protocol header opens each connection. */
  proxy?: boolean;
  /** LMTP (RFC 2033) instead of SMTP. */
  lmtp?: boolean;
}

/** What `hook_listener_parameters(transaction, args)` receives. */
export interface ListenerParametersArgs extends ListenerInfo {
  local_ip?: string;
  local_port?: number | string;
  remote_ip?: string;
  remote_port?: number | string;
}

/**
 * Runs the `listener_parameters` hook for `qp`'s connection and keeps what the first plugin
 * returning `[OK, {name: value, …}]` gave (a value may be a string, a number or an array of
 * them; null/undefined leave the name alone). Anything else keeps no overrides.
 */
export async function load_listener_parameters(qp: Qpsmtpd, listener: ListenerInfo = {}): Promise<void> {
  qp.listener_params = undefined;
  if (!qp.hooks.has('listener_parameters')) return;
  const c = qp.connection;
  const args: ListenerParametersArgs = {
    ...listener,
    local_ip: c.local_ip(),
    local_port: c.local_port(),
    remote_ip: c.remote_ip(),
    remote_port: c.remote_port(),
  };
  const r = await qp.run_hooks_no_respond('listener_parameters', args);
  if (r[0] !== OK) return;
  const obj = r[1];
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    qp.log(LOGERROR, 'listener_parameters: a plugin returned OK without an object of config values; ignored');
    return;
  }
  const out: Record<string, string[]> = {};
  for (const [name, value] of Object.entries(obj as Record<string, unknown>)) {
    if (value === undefined || value === null) continue;
    out[name] = (Array.isArray(value) ? value : [value]).map(String);
  }
  qp.listener_params = out;
}
