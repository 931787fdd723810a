// A pool worker: loads config and plugins once, then serves the sockets the master hands it,
// many sessions at a time. It exits when told to retire (after its sessions) or to shut down.
import type net from 'node:net';
import { LOGCRIT, LOGDEBUG, LOGERROR } from '../constants.js';
import { describe_error } from '../hooks.js';
import { Runtime } from '../runtime.js';
import type { SmtpSession } from '../smtp/session.js';
import { WORKER_ENV, type FromWorker, type ToWorker, type WorkerConfig } from './ipc.js';
import { serve_socket } from './serve.js';
import { tls_base_for, type TlsBase } from './tls-context.js';

const cfg = JSON.parse(process.env[WORKER_ENV] ?? '{}') as WorkerConfig;
const sessions = new Set<SmtpSession>();
let active = 0;
let retiring = false;
/** Set by shutdown only: retiring finishes every session handed over, stopping does not. */
let stopping = false;
let runtime: Runtime | undefined;
let tls_base: TlsBase | undefined;
/** Pending XCLIENT re-addressing questions to the master. */
const readdress_waiting = new Map<number, (ok: boolean) => void>();
let next_req = 1;

/** Asks the master whether session `id` may take `ip` as its client (per-IP limit); 2 s, then yes. */
function readdress(id: number, ip: string): Promise<boolean> {
  if (!process.connected) return Promise.resolve(true);
  const req = next_req++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      readdress_waiting.delete(req);
      resolve(true);
    }, 2000);
    readdress_waiting.set(req, (ok) => {
      clearTimeout(timer);
      readdress_waiting.delete(req);
      resolve(ok);
    });
    send({ t: 'readdress', id, req, ip });
  });
}

function send(msg: FromWorker): void {
  if (process.connected) process.send!(msg);
}


function maybe_exit(): void {
  if ((retiring || !process.connected) && active === 0) {
    void (runtime ? runtime.close() : Promise.resolve()).finally(() => process.exit(0));
  }
}

async function serve(msg: Extract<ToWorker, { t: 'conn' }>, socket: net.Socket): Promise<void> {
  const { id, tls: use_tls, notes } = msg;
  let session: SmtpSession | undefined;
  active++;
  try {
    if (!runtime) throw new Error('worker not ready');
    if (use_tls && !tls_base) {
      runtime.server_qp.log(LOGERROR, 'implicit TLS listener but no certificate: set tls_cert and tls_key (or load plugins/tls)');
      socket.destroy();
      return;
    }
    await serve_socket(runtime, socket, {
      no_rdns: cfg.no_rdns,
      ...(notes ? { notes } : {}),
      ...(use_tls && tls_base ? { tls_base } : {}),
      ...(msg.listener ? { listener: msg.listener } : {}),
      ...(msg.proxied ? { proxied: { ...msg.proxied } } : {}),
      ...(msg.head ? { head: Buffer.from(msg.head, 'base64') } : {}),
      readdress: (ip: string) => readdress(id, ip),
      on_session: (s) => {
        session = s;
        sessions.add(s);
        // a session handed over before the master saw us retire is served normally
        if (stopping) s.request_stop();
      },
    });
  } finally {
    if (session) sessions.delete(session);
    active--;
    // at once: a client that reconnects right after the close must find its slot free
    send({ t: 'done', id });
    maybe_exit();
  }
}

function shutdown(grace_ms: number): void {
  retiring = stopping = true;
  for (const s of sessions) s.request_stop();
  setTimeout(() => {
    for (const s of sessions) s.request_stop(true);
    setTimeout(() => process.exit(0), 2000).unref();
  }, grace_ms).unref();
  maybe_exit();
}

process.on('message', (msg: ToWorker, handle?: net.Socket) => {
  if (msg.t === 'conn' && handle) void serve(msg, handle);
  else if (msg.t === 'readdress_ok') readdress_waiting.get(msg.req)?.(msg.ok);
  else if (msg.t === 'retire') {
    retiring = true;
    maybe_exit();
  } else if (msg.t === 'shutdown') shutdown(msg.grace_ms);
});

// The master went away (F10): finish what we have, accept nothing new.
process.on('disconnect', () => {
  retiring = true;
  maybe_exit();
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
