// Messages between the master and its workers (child_process IPC). The listening sockets travel
// once, as handles, when a worker is ready; the workers accept on them and ask the master, with
// a small message per connection, whether the limits admit it.
import type { ListenSpec } from './options.js';

export interface WorkerConfig {
  config_dir?: string;
  no_rdns: boolean;
  debug: boolean;
  /** `-m N`, for pre-connection hooks (`max_conn_ip`). */
  max_from_ip: number;
}

/** A PROXY header read from `peer_ip`: the real client, and the proxy that sent it. */
export interface Proxied {
  version: 1 | 2;
  peer_ip: string;
  src_ip?: string;
  src_port?: number;
  dst_ip?: string;
  dst_port?: number;
}

export type ToWorker =
  /** Accept on this listener (the handle comes with the message); `index` is its place in `--listen`. */
  | { t: 'listen'; index: number; spec: ListenSpec }
  /**
   * The answer to `open`: a refusal line for the client, or admitted; `addrs` (when asked for)
   * are the clients of every session in the pool, for pre-connection hooks (`child_addrs`).
   */
  | { t: 'admit'; req: number; refusal?: string; addrs?: string[] }
  /** The answer to a `readdress` request. */
  | { t: 'readdress_ok'; req: number; ok: boolean }
  | { t: 'retire' }
  | { t: 'shutdown'; grace_ms: number };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'listening'; index: number; host: string; port: number }
  | { t: 'listen_error'; index: number; message: string }
  /**
   * A connection from `ip` was accepted: may session `req` start (total and per-IP limits)?
   * `done`: sessions that ended since the last report (they ride along, saving a message).
   */
  | { t: 'open'; req: number; ip: string; addrs?: boolean; done?: number[] }
  /** Sessions (the `req` of their `open`) that ended. */
  | { t: 'done'; ids: number[] }
  | { t: 'load_error'; message: string }
  /** XCLIENT gave session `id` a new client address: count it there if the per-IP limit allows. */
  | { t: 'readdress'; id: number; req: number; ip: string };

export const WORKER_ENV = 'QPSMTPD_TS_WORKER';
