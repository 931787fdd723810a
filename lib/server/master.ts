// The master: owns the listeners, enforces the connection limits, runs pre-connection hooks,
// and hands each accepted socket to the least busy worker process. HUP rolls the workers to
// a new generation; TERM/INT drain them; a dead worker is replaced with backoff.
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  DENY,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  LOGCRIT,
  LOGERROR,
  LOGINFO,
  LOGNOTICE,
  LOGWARN,
} from '../constants.js';
import { normalize_ip } from '../connection.js';
import { describe_error } from '../hooks.js';
import { Qpsmtpd } from '../qpsmtpd.js';
import { Runtime } from '../runtime.js';
import { WORKER_ENV, type FromWorker, type Proxied, type ToWorker, type WorkerConfig } from './ipc.js';
import type { DaemonOptions, ListenSpec } from './options.js';
import { claim_pid_file, remove_pid_file } from './pidfile.js';
import { accept_proxy } from './serve.js';

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

interface Pending {
  id: number;
  ip: string;
  socket: net.Socket;
  spec: ListenSpec;
  notes?: Record<string, unknown>;
  /** The PROXY header of a /proxy listener, read here so limits and hooks see the real client. */
  proxied?: Proxied;
  head?: Buffer;
}

/** Connection notes that survive the trip to the worker (JSON values only). */
function json_notes(notes: Record<string, unknown>): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(notes)) {
    try {
      if (v !== undefined && JSON.stringify(v) !== undefined) out[k] = JSON.parse(JSON.stringify(v));
    } catch {
      /* not serialisable: stays in the master */
    }
  }
  return Object.keys(out).length ? out : undefined;
}

export class Master {
  runtime!: Runtime;
  private servers: net.Server[] = [];
  private workers = new Set<Worker>();
  private per_ip = new Map<string, number>();
  private total = 0;
  private next_id = 1;
  private generation = 0;
  private stopping = false;
  private quick_deaths = 0;
  private respawn_timer?: NodeJS.Timeout;
  private waiting: Pending[] = [];
  private exit_resolve?: () => void;
  private mark_ready!: () => void;
  private readonly ready = new Promise<void>((r) => (this.mark_ready = r));
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
   * workers. Throws on any failure, with nothing left listening.
   */
  async start(): Promise<void> {
    if (this.opts.pid_file) claim_pid_file(this.opts.pid_file);
    try {
      for (const spec of this.opts.listen) this.servers.push(await this.bind(spec));
      if (this.opts.user) drop_privileges(this.opts.user);
      this.runtime = await this.load_runtime();
    } catch (err) {
      for (const s of this.servers) s.close();
      if (this.opts.pid_file) remove_pid_file(this.opts.pid_file);
      throw err;
    }
    for (const a of this.addresses()) this.log(LOGINFO, `Listening on ${a.host}:${a.port}`);
    this.mark_ready();
    for (let i = 0; i < this.opts.workers; i++) this.spawn();
    process.on('SIGHUP', () => void this.reload());
    process.on('SIGTERM', () => void this.shutdown('TERM'));
    process.on('SIGINT', () => void this.shutdown('INT'));
  }

  /** Addresses actually bound (port 0 resolves to the kernel's choice). */
  addresses(): Array<{ host: string; port: number }> {
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo;
      return { host: a.address, port: a.port };
    });
  }

  private bind(spec: ListenSpec): Promise<net.Server> {
    // sockets accepted before the plugins are loaded wait for them (still paused)
    const server = net.createServer({ pauseOnConnect: true }, (socket) => void this.ready.then(() => this.accept(socket, spec)));
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`Creating TCP socket ${spec.host}:${spec.port}: ${err.message}`)));
      server.listen({ host: spec.host, port: spec.port, backlog: 511 }, () => {
        server.on('error', (err) => this.log(LOGERROR, `listener ${spec.host}:${spec.port}: ${err.message}`));
        resolve(server);
      });
    });
  }

  // -- workers -------------------------------------------------------------------------------------

  private spawn(): void {
    const config: WorkerConfig = { no_rdns: this.opts.no_rdns, debug: this.opts.debug, ...(this.opts.config_dir ? { config_dir: this.opts.config_dir } : {}) };
    const child = fork(WORKER_FILE, [], { env: { ...process.env, [WORKER_ENV]: JSON.stringify(config) }, stdio: 'inherit' });
    const w: Worker = { child, generation: this.generation, ready: false, retiring: false, served: 0, started: Date.now(), sessions: new Map() };
    this.workers.add(w);
    child.on('message', (msg: FromWorker) => this.on_worker_message(w, msg));
    child.on('exit', (code, signal) => this.on_worker_exit(w, code, signal));
    child.on('error', (err) => this.log(LOGERROR, `worker ${child.pid}: ${err.message}`));
  }

  private on_worker_message(w: Worker, msg: FromWorker): void {
    if (msg.t === 'ready') {
      w.ready = true;
      this.quick_deaths = 0;
      this.flush_waiting();
    } else if (msg.t === 'done') this.release(w, msg.id);
    else if (msg.t === 'readdress') this.readdress(w, msg.id, msg.req, msg.ip);
    else if (msg.t === 'load_error') this.log(LOGCRIT, `worker ${w.child.pid} could not load: ${msg.message}`);
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
    const answer: ToWorker = { t: 'readdress_ok', req, ok };
    if (w.child.connected) w.child.send(answer);
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

  private pick(): Worker | undefined {
    let best: Worker | undefined;
    for (const w of this.workers) {
      if (!w.ready || w.retiring || w.generation !== this.generation || !w.child.connected) continue;
      if (!best || w.sessions.size < best.sessions.size) best = w;
    }
    return best;
  }

  // -- connections ---------------------------------------------------------------------------------

  private quick_reply(socket: net.Socket, text: string): void {
    socket.on('error', () => {});
    socket.end(`${text}\r\n`);
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  private async accept(socket: net.Socket, spec: ListenSpec): Promise<void> {
    socket.on('error', () => {});
    let ip = normalize_ip(socket.remoteAddress ?? '');
    if (this.stopping) return this.quick_reply(socket, '421 4.3.2 Service shutting down');
    if (this.total >= this.opts.limit_connections) {
      this.log(LOGWARN, `Too many connections: ${this.total} >= ${this.opts.limit_connections}`);
      return this.quick_reply(socket, '421 4.7.0 Too many connections, try again later');
    }
    // A /proxy listener: the header is read here, before the limits and pre-connection hooks,
    // so they judge the real client; the worker gets the parsed header with the socket.
    let proxied: Proxied | undefined;
    let head: Buffer | undefined;
    if (spec.proxy) {
      const r = await accept_proxy(this.runtime, socket);
      if ('refusal' in r) return this.quick_reply(socket, r.refusal);
      proxied = r.header;
      head = r.rest;
      if (proxied.src_ip) ip = proxied.src_ip;
      if (this.stopping) return this.quick_reply(socket, '421 4.3.2 Service shutting down');
    }
    const from_ip = this.per_ip.get(ip) ?? 0;
    if (this.opts.max_from_ip && from_ip >= this.opts.max_from_ip) {
      this.log(LOGINFO, `too many connections from ${ip} (${from_ip + 1} > ${this.opts.max_from_ip})`);
      return this.quick_reply(socket, `451 too many connections from ${ip}, try again later`);
    }
    // counted from here on, so concurrent accepts see it while hooks run
    const conn: Pending = { id: this.next_id++, ip, socket, spec, ...(proxied ? { proxied } : {}), ...(head?.length ? { head } : {}) };
    this.count(ip, +1);
    let refusal: string | undefined;
    try {
      refusal = await this.pre_connection(socket, ip, conn);
    } catch (err) {
      this.log(LOGERROR, `pre-connection: ${describe_error(err)}`);
      refusal = '451 4.3.0 Internal error - try again later';
    }
    if (refusal) {
      this.count(ip, -1);
      return this.quick_reply(socket, refusal);
    }
    this.dispatch(conn);
  }

  private count(ip: string, delta: number): void {
    this.total += delta;
    const n = (this.per_ip.get(ip) ?? 0) + delta;
    if (n > 0) this.per_ip.set(ip, n);
    else this.per_ip.delete(ip);
  }

  /** pre-connection hooks in the master, as qpsmtpd-forkserver runs them. */
  private async pre_connection(socket: net.Socket, ip: string, conn: Pending): Promise<string | undefined> {
    if (!this.runtime.hooks.has('pre-connection')) return undefined;
    const qp = new Qpsmtpd(this.runtime);
    const child_addrs: string[] = [];
    for (const w of this.workers) child_addrs.push(...w.sessions.values());
    const px = conn.proxied?.src_ip ? conn.proxied : undefined;
    const r = await qp.run_hooks('pre-connection', {
      remote_ip: ip,
      remote_port: px ? px.src_port : socket.remotePort,
      local_ip: px?.dst_ip ?? normalize_ip(socket.localAddress ?? ''),
      local_port: px ? px.dst_port : socket.localPort,
      max_conn_ip: this.opts.max_from_ip,
      child_addrs,
    });
    conn.notes = json_notes(qp.connection.all_notes());
    if (r.fault) return '451 4.3.0 Internal error - try again later';
    if (r.rc === DENYSOFT || r.rc === DENYSOFT_DISCONNECT) return `451 ${r.msg[0] || 'Sorry, try again later'}`;
    if (r.rc === DENY || r.rc === DENY_DISCONNECT) return `550 ${r.msg[0] || 'Sorry, service not available for you'}`;
    return undefined;
  }

  private dispatch(conn: Pending): void {
    const { id, ip, socket, spec } = conn;
    if (socket.destroyed) return this.count(ip, -1);
    const w = this.pick();
    if (!w) {
      // every worker is starting or restarting: hold the socket (the kernel would, too)
      this.waiting.push(conn);
      return;
    }
    w.sessions.set(id, ip);
    w.served++;
    const listener = { host: spec.host, port: spec.port, ...(spec.tls ? { tls: true } : {}), ...(spec.proxy ? { proxy: true } : {}), ...(spec.lmtp ? { lmtp: true } : {}) };
    const msg: ToWorker = {
      t: 'conn',
      id,
      tls: !!spec.tls,
      listener,
      ...(conn.notes ? { notes: conn.notes } : {}),
      ...(conn.proxied ? { proxied: conn.proxied } : {}),
      ...(conn.head ? { head: conn.head.toString('base64') } : {}),
    };
    w.child.send(msg, socket, { keepOpen: false }, (err) => {
      if (err) {
        this.log(LOGERROR, `handing a connection to worker ${w.child.pid}: ${err.message}`);
        this.release(w, id);
        socket.destroy();
      }
    });
    if (this.opts.worker_sessions && w.served >= this.opts.worker_sessions) this.retire(w, 'served its sessions');
  }

  private flush_waiting(): void {
    const queued = this.waiting;
    this.waiting = [];
    for (const conn of queued) this.dispatch(conn);
  }

  private retire(w: Worker, why: string): void {
    if (w.retiring) return;
    w.retiring = true;
    this.log(LOGINFO, `retiring worker ${w.child.pid}: ${why}`);
    const msg: ToWorker = { t: 'retire' };
    if (w.child.connected) w.child.send(msg);
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
    for (const s of this.servers) s.close();
    for (const { socket, ip } of this.waiting) {
      this.count(ip, -1);
      this.quick_reply(socket, '421 4.3.2 Service shutting down');
    }
    this.waiting = [];
    clearTimeout(this.respawn_timer);
    const grace_ms = this.opts.shutdown_timeout * 1000;
    const msg: ToWorker = { t: 'shutdown', grace_ms };
    for (const w of this.workers) if (w.child.connected) w.child.send(msg);
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
