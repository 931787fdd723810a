// Messages between the master and its workers (child_process IPC; sockets travel as handles).

export interface WorkerConfig {
  config_dir?: string;
  no_rdns: boolean;
  debug: boolean;
}

/** A PROXY header the master read: the real client, and the proxy that sent it. */
export interface Proxied {
  version: 1 | 2;
  peer_ip: string;
  src_ip?: string;
  src_port?: number;
  dst_ip?: string;
  dst_port?: number;
}

export type ToWorker =
  /**
   * notes: connection notes set by pre-connection hooks in the master (JSON values);
   * listener: the listener's address and flags; proxied: the PROXY header the master read
   * (listeners marked /proxy); head: base64 of bytes read past that header.
   */
  | {
      t: 'conn';
      id: number;
      tls: boolean;
      notes?: Record<string, unknown>;
      listener?: { host: string; port: number; tls?: boolean; proxy?: boolean; lmtp?: boolean };
      proxied?: Proxied;
      head?: string;
    }
  /** The answer to a `readdress` request. */
  | { t: 'readdress_ok'; req: number; ok: boolean }
  | { t: 'retire' }
  | { t: 'shutdown'; grace_ms: number };

export type FromWorker =
  | { t: 'ready' }
  | { t: 'done'; id: number }
  | { t: 'load_error'; message: string }
  /** XCLIENT gave session `id` a new client address: count it there if the per-IP limit allows. */
  | { t: 'readdress'; id: number; req: number; ip: string };

export const WORKER_ENV = 'QPSMTPD_TS_WORKER';
