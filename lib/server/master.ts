// The master: binds the listeners, enforces the connection limits and keeps the worker pool.
// The workers accept on the listening sockets themselves (as qpsmtpd-prefork's children do) and
// ask the master to admit each connection, so no socket crosses a process boundary. HUP rolls the
// workers to a new generation; TERM/INT drain them; a dead worker is replaced with backoff.
import { fork, type ChildProcess } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { getSystemErrorMap } from 'node:util';
import { LOGCRIT, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN } from '../constants.js';
import { describe_error } from '../hooks.js';
import { Runtime } from '../runtime.js';
import { WORKER_ENV, type FromWorker, type ToWorker, type WorkerConfig } from './ipc.js';
import type { DaemonOptions, ListenSpec } from './options.js';
import { claim_pid_file, remove_pid_file } from './pidfile.js';

const WORKER_FILE = fileURLToPath(new URL('./worker.js', import.meta.url));

interface Worker {
  child: ChildProcess;
  generation: number;
  ready: boolean;
  retiring: boolean;
  served: number;
  started: number;
  /** session id -> client IP, for the per-IP count. */
  sessions: Map<number, string>;
}

/** A bound socket that the workers listen and accept on; the master never accepts on it. */
interface ListenHandle {
  close(): void;
  getsockname(out: { address?: string; port?: number }): number;
}

interface Bound {
  handle: ListenHandle;
  host: string;
  port: number;
}

type CreateServerHandle = (address: string, port: number, family: number) => ListenHandle | number;

/**
 * Binds `spec` without listening: Node's cluster module makes its shared handles the same way
 * (`net._createServerHandle`). Once a worker listens, the socket stays in the listening state
 * while the master holds it, so connections wait in the kernel's queue while workers restart.
 */
async function bind_handle(spec: ListenSpec): Promise<Bound> {
  const where = `Creating TCP socket ${spec.host}:${spec.port}`;
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') throw new Error(`${where}: this Node.js has no net._createServerHandle (Node 20 or 22 has it)`);
  let host = spec.host;
  let family = net.isIP(host);
  if (!family) ({ address: host, family } = await lookup(host).catch((err: Error) => Promise.reject(new Error(`${where}: ${err.message}`))));
  const handle = create(host, spec.port, family);
  // libuv holds back EADDRINUSE from bind until listen, which only the workers call: an
  // unbound socket (port 0 after bind) is that error
  const out: { address?: string; port?: number } = {};
  const err = typeof handle === 'number' ? handle : handle.getsockname(out) || (out.port ? 0 : -os.constants.errno.EADDRINUSE);
  if (err) {
    if (typeof handle !== 'number') handle.close();
    const [code, text] = getSystemErrorMap().get(err) ?? [`error ${err}`, 'unknown error'];
    throw new Error(`${where}: ${code} (${text})`);
  }
  return { handle: handle as ListenHandle, host: out.address!, port: out.port! };
}

export class Master {
  runtime!: Runtime;
  private bound: Bound[] = [];
  /** Which listeners a worker accepts on yet (start() waits for all). */
  private accepting: boolean[] = [];
  private workers = new Set<Worker>();
  private per_ip = new Map<string, number>();
  private total = 0;
  private generation = 0;
  private stopping = false;
  private quick_deaths = 0;
  private respawn_timer?: NodeJS.Timeout;
  private exit_resolve?: () => void;
  /** Settled once every listener accepts (a worker listens on each), or a worker fails to start. */
  private listening?: { resolve: () => void; reject: (err: Error) => void };
  readonly exited = new Promise<void>((r) => (this.exit_resolve = r));

  constructor(readonly opts: DaemonOptions) {}

  private log(level: number, msg: string): void {
    this.runtime.server_qp.log(level, msg);
  }

  private async load_runtime(): Promise<Runtime> {
    const rt = new Runtime({ ...(this.opts.config_dir ? { config_dir: this.opts.config_dir } : {}) });
    await rt.load();
    if (this.opts.debug) rt.trace_level = 7;
    return rt;
  }

  /**
   * Binds, drops privileges, loads plugins (as the final user, as qpsmtpd does), starts the
   * workers and returns once they accept. Throws on any failure, with nothing left listening.
   */
  async start(): Promise<void> {
    if (this.opts.pid_file) claim_pid_file(this.opts.pid_file);
    try {
      for (const spec of this.opts.listen) this.bound.push(await bind_handle(spec));
      if (this.opts.user) drop_privileges(this.opts.user);
      this.runtime = await this.load_runtime();
      const accepting = new Promise<void>((resolve, reject) => (this.listening = { resolve, reject }));
      for (let i = 0; i < this.opts.workers; i++) this.spawn();
      await accepting;
    } catch (err) {
      this.stopping = true;
      for (const w of this.workers) w.child.kill('SIGKILL');
      for (const b of this.bound) b.handle.close();
      if (this.opts.pid_file) remove_pid_file(this.opts.pid_file);
      throw err;
    }
    for (const a of this.addresses()) this.log(LOGINFO, `Listening on ${a.host}:${a.port}`);
    process.on('SIGHUP', () => void this.reload());
    process.on('SIGTERM', () => void this.shutdown('TERM'));
    process.on('SIGINT', () => void this.shutdown('INT'));
  }

  /** Addresses actually bound (port 0 resolves to the kernel's choice). */
  addresses(): Array<{ host: string; port: number }> {
    return this.bound.map(({ host, port }) => ({ host, port }));
  }

  /** Start-up failed in the workers: no worker could load or listen. */
  private fail_start(why: string): void {
    const l = this.listening;
    if (!l) return;
    this.listening = undefined;
    l.reject(new Error(why));
  }

  // -- workers -------------------------------------------------------------------------------------

  private spawn(): void {
    const config: WorkerConfig = {
      no_rdns: this.opts.no_rdns,
      debug: this.opts.debug,
      max_from_ip: this.opts.max_from_ip,
      ...(this.opts.config_dir ? { config_dir: this.opts.config_dir } : {}),
    };
    const child = fork(WORKER_FILE, [], { env: { ...process.env, [WORKER_ENV]: JSON.stringify(config) }, stdio: 'inherit' });
    const w: Worker = { child, generation: this.generation, ready: false, retiring: false, served: 0, started: Date.now(), sessions: new Map() };
    this.workers.add(w);
    child.on('message', (msg: FromWorker) => this.on_worker_message(w, msg));
    child.on('exit', (code, signal) => this.on_worker_exit(w, code, signal));
    child.on('error', (err) => this.log(LOGERROR, `worker ${child.pid}: ${err.message}`));
  }

  private send(w: Worker, msg: ToWorker, handle?: ListenHandle): void {
    if (w.child.connected) w.child.send(msg, handle as net.Server | undefined);
  }

  private on_worker_message(w: Worker, msg: FromWorker): void {
    if (msg.t === 'open') {
      if (msg.done) for (const id of msg.done) this.release(w, id);
      this.admit(w, msg.req, msg.ip, !!msg.addrs);
    } else if (msg.t === 'done') for (const id of msg.ids) this.release(w, id);
    else if (msg.t === 'ready') {
      w.ready = true;
      this.bound.forEach((b, index) => this.send(w, { t: 'listen', index, spec: this.opts.listen[index]! }, b.handle));
    } else if (msg.t === 'listening') this.on_listening(w, msg.index, msg.host, msg.port);
    else if (msg.t === 'listen_error') this.listen_failed(w, msg.index, msg.message);
    else if (msg.t === 'readdress') this.readdress(w, msg.id, msg.req, msg.ip);
    else if (msg.t === 'load_error') {
      this.log(LOGCRIT, `worker ${w.child.pid} could not load: ${msg.message}`);
      this.fail_start(`a worker could not load: ${msg.message}`);
    }
  }

  private on_listening(w: Worker, index: number, host: string, port: number): void {
    const b = this.bound[index];
    if (!b || b.port !== port) return this.listen_failed(w, index, `it listens on ${host}:${port} instead`);
    this.accepting[index] = true;
    this.quick_deaths = 0;
    if (this.listening && this.bound.every((_, i) => this.accepting[i])) {
      this.listening.resolve();
      this.listening = undefined;
    }
  }

  private listen_failed(w: Worker, index: number, why: string): void {
    const b = this.bound[index];
    const where = `${this.opts.listen[index]?.host}:${b?.port}`;
    this.log(LOGCRIT, `worker ${w.child.pid} cannot accept on ${where}: ${why}`);
    this.fail_start(`accepting on ${where}: ${why}`);
    // its replacement waits as after a quick death, so a persistent failure cannot spin
    this.quick_deaths++;
    this.retire(w, 'cannot accept');
  }

  /** A worker accepted a connection from `ip`: count it, or give the line that refuses it. */
  private admit(w: Worker, req: number, ip: string, want_addrs: boolean): void {
    const refusal = this.over_limit(ip);
    if (refusal) return this.send(w, { t: 'admit', req, refusal });
    w.sessions.set(req, ip);
    this.count(ip, +1);
    w.served++;
    const addrs = want_addrs ? [...this.workers].flatMap((x) => [...x.sessions.values()]) : undefined;
    this.send(w, { t: 'admit', req, ...(addrs ? { addrs } : {}) });
    if (this.opts.worker_sessions && w.served >= this.opts.worker_sessions) this.retire(w, 'served its sessions');
  }

  private over_limit(ip: string): string | undefined {
    if (this.stopping) return '421 4.3.2 Service shutting down';
    if (this.total >= this.opts.limit_connections) {
      this.log(LOGWARN, `Too many connections: ${this.total} >= ${this.opts.limit_connections}`);
      return '421 4.7.0 Too many connections, try again later';
    }
    const from_ip = this.per_ip.get(ip) ?? 0;
    if (this.opts.max_from_ip && from_ip >= this.opts.max_from_ip) {
      this.log(LOGINFO, `too many connections from ${ip} (${from_ip + 1} > ${this.opts.max_from_ip})`);
      return `451 too many connections from ${ip}, try again later`;
    }
    return undefined;
  }

  private count(ip: string, delta: number): void {
    this.total += delta;
    const n = (this.per_ip.get(ip) ?? 0) + delta;
    if (n > 0) this.per_ip.set(ip, n);
    else this.per_ip.delete(ip);
  }

  private release(w: Worker, id: number): void {
    const ip = w.sessions.get(id);
    if (ip === undefined) return;
    w.sessions.delete(id);
    this.count(ip, -1);
  }

  /** XCLIENT named another client for a session: move its per-IP count there, within the limit. */
  private readdress(w: Worker, id: number, req: number, ip: string): void {
    const old = w.sessions.get(id);
    let ok = true;
    if (old !== undefined && old !== ip) {
      const n = this.per_ip.get(ip) ?? 0;
      if (this.opts.max_from_ip && n >= this.opts.max_from_ip) {
        this.log(LOGINFO, `too many connections from ${ip} (XCLIENT; ${n + 1} > ${this.opts.max_from_ip})`);
        ok = false;
      } else {
        this.count(old, -1);
        this.count(ip, +1);
        w.sessions.set(id, ip);
      }
    }
    this.send(w, { t: 'readdress_ok', req, ok });
  }

  private on_worker_exit(w: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w);
    // its unfinished sessions are lost without a 250 (nothing was acknowledged)
    for (const id of [...w.sessions.keys()]) this.release(w, id);
    if (this.stopping) {
      if (!this.workers.size) this.finish_exit();
      return;
    }
    if (!w.retiring) {
      this.log(LOGERROR, `worker ${w.child.pid} died (${signal ?? `exit ${code}`}); starting another`);
      if (Date.now() - w.started < 10000) this.quick_deaths++;
      if (!w.ready) this.fail_start(`a worker exited while starting (${signal ?? `exit ${code}`})`);
    }
    this.schedule_respawn();
  }

  /** Keeps the current generation at full strength; repeated quick deaths back off (<= 30 s). */
  private schedule_respawn(): void {
    if (this.respawn_timer || this.stopping) return;
    const delay = this.quick_deaths ? Math.min(30000, 250 * 2 ** Math.min(this.quick_deaths, 7)) : 0;
    this.respawn_timer = setTimeout(() => {
      this.respawn_timer = undefined;
      const current = [...this.workers].filter((x) => x.generation === this.generation && !x.retiring).length;
      for (let i = current; i < this.opts.workers; i++) this.spawn();
    }, delay);
  }

  /** Stops `w` accepting; it exits once its sessions end. A replacement starts at once. */
  private retire(w: Worker, why: string): void {
    if (w.retiring) return;
    w.retiring = true;
    this.log(LOGINFO, `retiring worker ${w.child.pid}: ${why}`);
    this.send(w, { t: 'retire' });
    this.schedule_respawn();
  }

  // -- signals ---------------------------------------------------------------------------------------

  /** HUP: reload config and plugins, then roll the workers; sessions in flight finish on the old ones. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    this.log(LOGNOTICE, 'reload requested (HUP)');
    let rt: Runtime;
    try {
      rt = await this.load_runtime();
    } catch (err) {
      this.log(LOGERROR, `reload failed, keeping the running configuration: ${describe_error(err)}`);
      return;
    }
    const old = this.runtime;
    this.runtime = rt;
    void old.close();
    this.generation++;
    for (const w of this.workers) if (w.generation < this.generation) this.retire(w, 'new configuration');
  }

  /** TERM/INT: stop accepting, let sessions finish within the timeout, then 421 the rest. */
  async shutdown(why: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log(LOGNOTICE, `shutting down (${why})`);
    // the workers close theirs on the message; connections still queued are then refused
    for (const b of this.bound) b.handle.close();
    clearTimeout(this.respawn_timer);
    const grace_ms = this.opts.shutdown_timeout * 1000;
    for (const w of this.workers) this.send(w, { t: 'shutdown', grace_ms });
    setTimeout(() => {
      for (const w of this.workers) w.child.kill('SIGKILL');
      this.finish_exit();
    }, grace_ms + 5000).unref();
    if (!this.workers.size) this.finish_exit();
    await this.exited;
  }

  private finish_exit(): void {
    if (this.opts.pid_file) remove_pid_file(this.opts.pid_file);
    void this.runtime.close().finally(() => this.exit_resolve?.());
  }

  /** Live worker pids (tests and status). */
  worker_pids(): number[] {
    return [...this.workers].filter((w) => w.ready).map((w) => w.child.pid!);
  }
}

/** `--user`: switch group and user after binding; ports below 1024 stay bound. */
export function drop_privileges(user: string): void {
  const proc = process as NodeJS.Process & { initgroups?: (user: string, gid: number) => void };
  if (!proc.setuid || !proc.setgid || !proc.initgroups) throw new Error('--user needs a POSIX system');
  if (process.getuid?.() !== 0) throw new Error(`--user ${user}: only root can switch users`);
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === user);
  if (!entry) throw new Error(`--user ${user}: no such user`);
  const gid = Number(entry[3]);
  proc.initgroups(user, gid);
  proc.setgid(gid);
  proc.setuid(user);
}
