// pre-connection hooks, run by the worker that accepted the socket before any session exists,
// as qpsmtpd-prefork's children run them. The notes they set go on to the session.
import { DENY, DENYSOFT, DENYSOFT_DISCONNECT, DENY_DISCONNECT, LOGERROR } from '../constants.js';
import { describe_error } from '../hooks.js';
import { Qpsmtpd } from '../qpsmtpd.js';
import type { Runtime } from '../runtime.js';

export interface PreConnectionArgs {
  remote_ip: string;
  remote_port: number | undefined;
  local_ip: string;
  local_port: number | undefined;
  /** `-m N` (0: no limit). */
  max_conn_ip: number;
  /** The client address of every session in the pool, this one included. */
  child_addrs: string[];
}

export interface PreConnectionOutcome {
  /** The line to send before closing, when a hook refused (or failed). */
  refusal?: string;
  notes: Record<string, unknown>;
}

export async function run_pre_connection(runtime: Runtime, args: PreConnectionArgs): Promise<PreConnectionOutcome> {
  const qp = new Qpsmtpd(runtime);
  let refusal: string | undefined;
  try {
    const r = await qp.run_hooks('pre-connection', args);
    if (r.fault) refusal = '451 4.3.0 Internal error - try again later';
    else if (r.rc === DENYSOFT || r.rc === DENYSOFT_DISCONNECT) refusal = `451 ${r.msg[0] || 'Sorry, try again later'}`;
    else if (r.rc === DENY || r.rc === DENY_DISCONNECT) refusal = `550 ${r.msg[0] || 'Sorry, service not available for you'}`;
  } catch (err) {
    runtime.server_qp.log(LOGERROR, `pre-connection: ${describe_error(err)}`);
    refusal = '451 4.3.0 Internal error - try again later';
  }
  return { ...(refusal ? { refusal } : {}), notes: qp.connection.all_notes() };
}
