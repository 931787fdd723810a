// Messages between the master and its workers (child_process IPC; sockets travel as handles).

export interface WorkerConfig {
  config_dir?: string;
  no_rdns: boolean;
  debug: boolean;
}

export type ToWorker =
  /** notes: connection notes set by pre-connection hooks in the master (JSON values). */
  | { t: 'conn'; id: number; tls: boolean; notes?: Record<string, unknown> }
  | { t: 'retire' }
  | { t: 'shutdown'; grace_ms: number };

export type FromWorker = { t: 'ready' } | { t: 'done'; id: number } | { t: 'load_error'; message: string };

export const WORKER_ENV = 'QPSMTPD_TS_WORKER';
