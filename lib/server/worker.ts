// A pool worker: loads config and plugins once, then accepts on the listening sockets the master
// shares with it (as qpsmtpd-prefork's children do), many sessions at a time. The master only
// counts: each accepted connection is admitted (total and per-IP limits) by one small message.
// A worker exits when told to retire (after its sessions) or to shut down.
import net from 'node:net';
import { LOGCRIT, LOGDEBUG, LOGERROR } from '../constants.js';
import { normalize_ip } from '../connection.js';
import { describe_error } from '../hooks.js';
import { Runtime } from '../runtime.js';
import type { ListenerInfo } from '../smtp/listener.js';
import type { SmtpSession } from '../smtp/session.js';
import { WORKER_ENV, type FromWorker, type Proxied, type ToWorker, type WorkerConfig } from './ipc.js';
import type { ListenSpec } from './options.js';
import { run_pre_connection } from './pre-connection.js';
import { accept_proxy, refuse_socket, serve_socket } from './serve.js';
import { tls_base_for, type TlsBase } from './tls-context.js';

const cfg = JSON.parse(process.env[WORKER_ENV] ?? '{}') as WorkerConfig;
const sessions = new Set<SmtpSession>();
const listeners: net.Server[] = [];
let active = 0;
let retiring = false;
/** Set by shutdown only: retiring finishes every session admitted, stopping does not. */
let stopping = false;
let runtime: Runtime | undefined;
let tls_base: TlsBase | undefined;
const SHUTTING_DOWN = '421 4.3.2 Service shutting down';

/** Questions to the master, by request number; `lost` answers them if the master goes away. */
const asked = new Map<number, (answer: ToWorker | undefined) => void>();
let next_req = 1;

function send(msg: FromWorker): void {
  if (process.connected) process.send!(msg);
}

function ask(msg: (req: number) => FromWorker, timeout_ms?: number): Promise<ToWorker | undefined> {
  if (!process.connected) return Promise.resolve(undefined);
  const req = next_req++;
  return new Promise((resolve) => {
    const timer = timeout_ms ? setTimeout(() => answer(undefined), timeout_ms) : undefined;
    const answer = (a: ToWorker | undefined) => {
      clearTimeout(timer);
      asked.delete(req);
      resolve(a);
    };
    asked.set(req, answer);
    send(msg(req));
  });
}

/** Asks the master whether session `id` may take `ip` as its client (per-IP limit); 2 s, then yes. */
async function readdress(id: number, ip: string): Promise<boolean> {
  const a = await ask((req) => ({ t: 'readdress', id, req, ip }), 2000);
  return a?.t === 'readdress_ok' ? a.ok : true;
}

// Ended sessions are reported with the next `open` or within END_REPORT_MS, whichever comes
// first: under load that saves one message per connection, and a slot is never held longer.
const END_REPORT_MS = 5;
let ended: number[] = [];
let end_timer: NodeJS.Timeout | undefined;

function take_ended(): { done?: number[] } {
  if (!ended.length) return {};
  const done = ended;
  ended = [];
  return { done };
}

function flush_ended(): void {
  end_timer = undefined;
  if (ended.length) send({ t: 'done', ids: take_ended().done! });
}

function report_end(id: number): void {
  ended.push(id);
  end_timer ??= setTimeout(flush_ended, END_REPORT_MS);
}

function maybe_exit(): void {
  if ((retiring || !process.connected) && active === 0) {
    flush_ended();
    void (runtime ? runtime.close() : Promise.resolve()).finally(() => process.exit(0));
  }
}

function stop_listening(): void {
  for (const s of listeners.splice(0)) s.close();
}

function listen_on(index: number, spec: ListenSpec, handle: unknown): void {
  if (retiring) return;
  // what sessions are told about their listener (via overlays, listener_parameters): the bound port
  const info: ListenerInfo = { host: spec.host, port: spec.port, ...(spec.tls ? { tls: true } : {}), ...(spec.proxy ? { proxy: true } : {}), ...(spec.lmtp ? { lmtp: true } : {}) };
  const server = net.createServer({ pauseOnConnect: true }, (socket) => void accept(socket, info));
  server.on('error', (err) => send({ t: 'listen_error', index, message: err.message }));
  server.listen(handle, () => {
    const a = server.address() as net.AddressInfo;
    info.port = a.port;
    send({ t: 'listening', index, host: a.address, port: a.port });
  });
  listeners.push(server);
}

/** One accepted connection: PROXY header, admission by the master, pre-connection hooks, the session. */
async function accept(socket: net.Socket, listener: ListenerInfo): Promise<void> {
  socket.on('error', () => {});
  const rt = runtime;
  if (!rt || stopping) return refuse_socket(socket, SHUTTING_DOWN);
  active++;
  let id = 0;
  let session: SmtpSession | undefined;
  try {
    // behind a /proxy listener the limits and hooks judge the real client
    let proxied: Proxied | undefined;
    let head: Buffer | undefined;
    if (listener.proxy) {
      const r = await accept_proxy(rt, socket);
      if ('refusal' in r) return refuse_socket(socket, r.refusal);
      proxied = r.header;
      head = r.rest;
    }
    const ip = proxied?.src_ip ?? normalize_ip(socket.remoteAddress ?? '');
    const pre_hooks = rt.hooks.has('pre-connection');
    let req = 0;
    const admission = await ask((r) => ({ t: 'open', req: (req = r), ip, ...(pre_hooks ? { addrs: true } : {}), ...take_ended() }));
    if (admission?.t !== 'admit') return refuse_socket(socket, SHUTTING_DOWN);
    if (admission.refusal) return refuse_socket(socket, admission.refusal);
    id = req;
    let notes: Record<string, unknown> | undefined;
    if (pre_hooks) {
      const px = proxied?.src_ip ? proxied : undefined;
      const pre = await run_pre_connection(rt, {
        remote_ip: ip,
        remote_port: px ? px.src_port : socket.remotePort,
        local_ip: px?.dst_ip ?? normalize_ip(socket.localAddress ?? ''),
        local_port: px ? px.dst_port : socket.localPort,
        max_conn_ip: cfg.max_from_ip,
        child_addrs: admission.addrs ?? [],
      });
      if (pre.refusal) return refuse_socket(socket, pre.refusal);
      notes = pre.notes;
    }
    if (listener.tls && !tls_base) {
      rt.server_qp.log(LOGERROR, 'implicit TLS listener but no certificate: set tls_cert and tls_key (or load plugins/tls)');
      socket.destroy();
      return;
    }
    await serve_socket(rt, socket, {
      no_rdns: cfg.no_rdns,
      listener,
      ...(notes ? { notes } : {}),
      ...(listener.tls && tls_base ? { tls_base } : {}),
      ...(proxied ? { proxied } : {}),
      ...(head?.length ? { head } : {}),
      readdress: (to: string) => readdress(id, to),
      on_session: (s) => {
        session = s;
        sessions.add(s);
        if (stopping) s.request_stop();
      },
    });
  } catch (err) {
    rt.server_qp.log(LOGERROR, `accepting a connection: ${describe_error(err)}`);
    socket.destroy();
  } finally {
    if (session) sessions.delete(session);
    active--;
    if (id) report_end(id);
    maybe_exit();
  }
}

function retire(): void {
  retiring = true;
  stop_listening();
  maybe_exit();
}

function shutdown(grace_ms: number): void {
  retiring = stopping = true;
  stop_listening();
  for (const s of sessions) s.request_stop();
  setTimeout(() => {
    for (const s of sessions) s.request_stop(true);
    setTimeout(() => process.exit(0), 2000).unref();
  }, grace_ms).unref();
  maybe_exit();
}

process.on('message', (msg: ToWorker, handle?: unknown) => {
  if (msg.t === 'listen' && handle) listen_on(msg.index, msg.spec, handle);
  else if (msg.t === 'admit' || msg.t === 'readdress_ok') asked.get(msg.req)?.(msg);
  else if (msg.t === 'retire') retire();
  else if (msg.t === 'shutdown') shutdown(msg.grace_ms);
});

// The master went away (F10): finish what we have, accept nothing new.
process.on('disconnect', () => {
  for (const answer of [...asked.values()]) answer(undefined);
  retire();
});

process.on('uncaughtException', (err) => {
  runtime?.server_qp.log(LOGCRIT, `worker ${process.pid} crashed: ${err.stack ?? describe_error(err)}`);
  for (const s of sessions) {
    s.respond(421, '4.3.0 Internal error - try again later');
    s.close();
  }
  process.exit(1);
});

// Signals are the master's business; a worker only stops when the master says so.
process.on('SIGHUP', () => {});
process.on('SIGINT', () => {});
process.on('SIGTERM', () => shutdown(0));

try {
  const rt = new Runtime({ ...(cfg.config_dir ? { config_dir: cfg.config_dir } : {}) });
  await rt.load();
  if (cfg.debug) rt.trace_level = 7;
  tls_base = tls_base_for(rt);
  runtime = rt;
  rt.server_qp.log(LOGDEBUG, `worker ${process.pid} ready`);
  send({ t: 'ready' });
} catch (err) {
  send({ t: 'load_error', message: describe_error(err) });
  process.stderr.write(`worker ${process.pid}: ${describe_error(err)}\n`);
  setTimeout(() => process.exit(2), 100);
}
