#!/usr/bin/env node
// bench/run's orchestrator (started by bench/run, which raises the fd limit and cleans up
// after a crash). Starts the DNS stub and every server on 127.0.0.1, checks each accepts mail
// for the domain and refuses others, then measures, interleaving the servers
// (A B C D A B C D ...):
//   1. messages/s and latency with bench/client.mjs: one connection per message and reused
//      connections, at concurrency 1, 20, 200; CPU seconds of each server's process tree
//   2. the same at concurrency 20 with Postfix's smtp-source as the load generator
//   3. memory per idle connection with N open connections, and a fresh greeting meanwhile
//   4. a CPU profile of qpsmtpd-ts under load (node --cpu-prof)
// and writes bench/results/<date>.json, then docs/benchmarks.md (bench/lib/report.mjs).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { top_self } from './cpuprofile.mjs';
import {
  CLK_TCK,
  cpu_seconds,
  greet_once,
  kill_all_sync,
  memory_kib,
  port_free,
  sleep,
  start_process,
  stop_all,
  stop_process,
  wait_for_greeting,
} from './proc.mjs';
import { write_report } from './report.mjs';
import { DOMAIN, definitions, versions } from './servers.mjs';

const BENCH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.resolve(BENCH, '..');

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    servers: { type: 'string' },
    'idle-n': { type: 'string' },
    'idle-rounds': { type: 'string' },
    'no-idle': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'no-smtp-source': { type: 'boolean', default: false },
    'no-doc': { type: 'boolean', default: false },
    'no-snapshot': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'pids-file': { type: 'string' },
    out: { type: 'string' },
    'port-base': { type: 'string', default: '26000' },
    'max-minutes': { type: 'string' },
    nice: { type: 'string', default: '0' },
    redo: { type: 'string' },
  },
});

const quick = o.quick;
const rounds = Number(o.rounds ?? (quick ? 2 : 5));
const idle_n = Number(o['idle-n'] ?? (quick ? 2000 : 10000));
// qpsmtpd prefork holds each idle connection in a Perl process of its own
const idle_n_forking = quick ? 50 : 200;
const idle_rounds = Number(o['idle-rounds'] ?? (quick ? 1 : 5));
const deadline = Date.now() + Number(o['max-minutes'] ?? (quick ? 2.7 : 25)) * 60000;
// time kept for the idle-connection test and the profile at the end
const reserve_ms = (o['no-idle'] ? 0 : quick ? 30000 : idle_rounds * 70000) + (o['no-profile'] ? 0 : quick ? 15000 : 30000);
const nice = Number(o.nice);
// a measurement during which other processes used more than this share of the machine is redone
const NOISY = 0.15;
let redo_budget_ms = Number(o.redo ?? (quick ? 0 : 60)) * 1000;
const t_run0 = Date.now();
const cpus = os.availableParallelism?.() ?? os.cpus().length;

// measured window per concurrency: [warm-up s, window s]
const WINDOWS = quick ? { 1: [0.1, 0.3], 20: [0.2, 0.5], 200: [0.3, 0.5] } : { 1: [0.3, 1], 20: [0.5, 1.5], 200: [1, 1.5] };
const CONFIGS = [];
for (const mode of ['conn', 'reuse']) for (const c of [1, 20, 200]) CONFIGS.push({ key: `${mode}-c${c}`, mode, c, warmup: WINDOWS[c][0], duration: WINDOWS[c][1] });
// smtp-source is a cross-check of the c=20 numbers: fewer rounds
const SMTP_SOURCE_ROUNDS = 3;
const SOURCES_MANY = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];

const log = (...a) => process.stderr.write(`[${((Date.now() - t_run0) / 1000).toFixed(0).padStart(4)}s] ${a.join(' ')}\n`);
const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const r2 = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Number(x.toFixed(d)));

// -- bookkeeping so bench/run's trap can clean up after a crash ------------------------------------
function note_pid(rec) {
  if (!o['pids-file'] || !rec.pid) return;
  try {
    const st = fs.readFileSync(`/proc/${rec.pid}/stat`, 'latin1');
    const start = st.slice(st.lastIndexOf(')') + 2).split(' ')[19];
    fs.appendFileSync(o['pids-file'], `${rec.pid} ${start}\n`);
  } catch {}
}
function own(cmd, args, opts) {
  const rec = start_process(cmd, args, opts);
  note_pid(rec);
  return rec;
}

let cleaning = false;
async function cleanup() {
  if (cleaning) return;
  cleaning = true;
  await stop_all();
}
process.on('exit', () => kill_all_sync());
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`${sig}: stopping every server started`);
    cleanup().finally(() => process.exit(130));
  });
}

// -- machine ---------------------------------------------------------------------------------------
function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const osr = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  const nofile = /Max open files\s+(\d+)\s+(\d+)/.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return {
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? 'unknown',
    cpus,
    memory_gib: r2(os.totalmem() / 2 ** 30, 1),
    kernel: os.release(),
    os: /PRETTY_NAME="?([^"\n]*)/.exec(osr)?.[1] ?? 'unknown',
    loadavg_at_start: os.loadavg().map((x) => r2(x)),
    nofile_limit: nofile ? Number(nofile[1]) : null,
    disk: (() => {
      try {
        return execFileSync('df', ['-h', '--output=source,fstype', BENCH]).toString().trim().split('\n').pop().replace(/\s+/g, ' ');
      } catch {
        return 'unknown';
      }
    })(),
  };
}

/** Busy CPU seconds of the whole machine (all processes), from /proc/stat. */
function machine_busy_s() {
  const f = fs.readFileSync('/proc/stat', 'latin1').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return (total - f[3] - f[4]) / CLK_TCK;
}

let quiet_budget_ms = quick ? 0 : 20000;
/**
 * Waits (bounded: a budget for the whole run) until the machine is not busy with other work,
 * such as other people's test suites or our last server still winding down.
 */
async function wait_quiet() {
  if (quiet_budget_ms <= 0) return { waited_ms: 0, load: null };
  const t0 = Date.now();
  for (;;) {
    const b0 = machine_busy_s();
    await sleep(200);
    const load = (machine_busy_s() - b0) / 0.2;
    if (load < 0.25 || quiet_budget_ms <= 0 || Date.now() - t0 > 2000) return { waited_ms: Date.now() - t0 - 200, load: r2(load) };
    quiet_budget_ms -= 200;
  }
}

// -- helpers ---------------------------------------------------------------------------------------
function run_json(cmd, args, timeout_ms, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout_ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      try {
        resolve({ ok: true, ...JSON.parse(out.trim().split('\n').pop()) });
      } catch {
        resolve({ ok: false, code, stderr: err.slice(-500) });
      }
    });
  });
}

/** One SMTP dialogue, no pipelining: returns the first line of every reply. */
function dialogue(port, commands, timeout_ms = 10000) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const replies = [];
    let buf = '';
    let i = 0;
    const timer = setTimeout(() => done('timeout'), timeout_ms);
    const done = (why) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ replies, end: why });
    };
    s.setEncoding('latin1');
    s.on('data', (d) => {
      buf += d;
      let k;
      while ((k = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (line[3] === '-') continue;
        replies.push(line);
        if (i < commands.length) s.write(commands[i++]);
        else return done('ok');
      }
    });
    s.on('error', (e) => done(e.code || e.message));
    s.on('close', () => done('closed'));
  });
}

async function equivalence_check(def) {
  const ok = await dialogue(def.port, [
    'EHLO check.bench.test\r\n',
    'MAIL FROM:<check@example.org>\r\n',
    `RCPT TO:<user@${DOMAIN}>\r\n`,
    'DATA\r\n',
    'Subject: check\r\n\r\nbody\r\n.\r\n',
    'QUIT\r\n',
  ]);
  const no = await dialogue(def.port, ['EHLO check.bench.test\r\n', 'MAIL FROM:<check@example.org>\r\n', 'RCPT TO:<user@elsewhere.example>\r\n', 'QUIT\r\n']);
  return {
    accepted: ok.replies[5] ?? null,
    refused_rcpt: no.replies[3] ?? null,
    pass: /^250/.test(ok.replies[5] ?? '') && (def.id === 'smtp-sink' || /^5/.test(no.replies[3] ?? '')),
  };
}

function count_maildir(def) {
  const dir = path.join(def.dir, 'maildir', 'new');
  try {
    return fs.readdirSync(dir).length;
  } catch {
    return null;
  }
}

// -- main ------------------------------------------------------------------------------------------
const started_at = new Date();
const stamp = started_at.toISOString().replace(/[:]/g, '').replace(/\..*/, 'Z');
const work = path.join(BENCH, '.work', `run-${stamp}`);
fs.mkdirSync(work, { recursive: true });
const results = {
  schema: 1,
  date: started_at.toISOString(),
  command: `bench/run ${process.argv.slice(2).filter((a) => !a.startsWith('--pids-file') && !a.includes('/.work/')).join(' ')}`.trim(),
  quick,
  rounds,
  windows: WINDOWS,
  machine: machine(),
  versions: {},
  servers: [],
  checks: {},
  throughput: {},
  smtp_source: {},
  idle: {},
  profile: null,
  notes: [],
  partial: false,
};

function preflight() {
  const need = [
    [path.join(BENCH, 'node_modules/Haraka/package.json'), 'Haraka (bench/setup)'],
    [path.join(BENCH, 'node_modules/smtp-server/package.json'), 'smtp-server (bench/setup)'],
    [path.join(BENCH, 'vendor/postfix/usr/sbin/smtp-sink'), 'smtp-sink (bench/setup)'],
    [path.join(BENCH, 'vendor/postfix/usr/sbin/smtp-source'), 'smtp-source (bench/setup)'],
    ['/usr/bin/qpsmtpd-prefork', 'Debian qpsmtpd (bench/setup)'],
    [path.join(MAIN, 'dist/lib/cli.js'), 'qpsmtpd-ts build (npx tsc -p tsconfig.json)'],
  ];
  const missing = need.filter(([p]) => !fs.existsSync(p)).map(([, what]) => what);
  if (missing.length) throw new Error(`missing: ${missing.join(', ')}`);
}

/** Copies the built qpsmtpd-ts so a rebuild of dist/ during the run changes nothing under us. */
function snapshot_qpsmtpd_ts() {
  if (o['no-snapshot']) return MAIN;
  const dir = path.join(work, 'qpsmtpd-ts-snapshot');
  for (const p of ['bin', 'dist', 'config', 'package.json']) fs.cpSync(path.join(MAIN, p), path.join(dir, p), { recursive: true });
  fs.symlinkSync(path.join(MAIN, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

async function free_ports(n) {
  const ports = [];
  for (let p = Number(o['port-base']); ports.length < n && p < 65000; p++) if (await port_free(p)) ports.push(p);
  return ports;
}

/** measure_once, redone (within a run-wide budget) when other processes took much of the machine. */
async function measure(def, cfg, generator = 'client') {
  let best = null;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const t0 = Date.now();
    const m = await measure_once(def, cfg, generator);
    m.others_share = m.other_cpu_s !== null && m.wall_s ? r2(Math.max(0, m.other_cpu_s) / (m.wall_s * cpus), 2) : null;
    m.attempt = attempt;
    if (!best || (m.others_share ?? 1) < (best.others_share ?? 1)) best = m;
    if ((m.others_share ?? 0) <= NOISY || redo_budget_ms <= 0 || Date.now() > deadline - reserve_ms) break;
    redo_budget_ms -= Date.now() - t0;
  }
  return best;
}

async function measure_once(def, cfg, generator = 'client') {
  const q = await wait_quiet();
  const cpu0 = cpu_seconds(def.rec.pid);
  const busy0 = machine_busy_s();
  const t0 = Date.now();
  let res;
  if (generator === 'client') {
    const args = [
      path.join(BENCH, 'client.mjs'),
      '--port', String(def.port),
      '--mode', cfg.mode,
      '--concurrency', String(cfg.c),
      '--warmup', String(cfg.warmup),
      '--duration', String(cfg.duration),
      '--max-messages', String(quick ? 20000 : 100000),
      '--size', '1024',
      '--rcpt', `user@${DOMAIN}`,
      '--timeout', '15',
      '--grace', '5',
    ];
    if (cfg.mode === 'conn' && cfg.c > 1) args.push('--source', SOURCES_MANY.join(','));
    res = await run_json(process.execPath, args, (cfg.warmup + cfg.duration + 30) * 1000);
    res.generator = 'bench/client.mjs';
  } else {
    // smtp-source: count-bounded; the count aims at ~window seconds from the client's median
    const med = median((results.throughput[def.id]?.[`${cfg.mode}-c${cfg.c}`] ?? []).map((x) => x.msgs_per_s)) ?? 100;
    const count = Math.max(20, Math.min(quick ? 5000 : 30000, Math.round(med * cfg.duration)));
    const sargs = ['-s', String(cfg.c), '-m', String(count), '-l', '1024', '-f', 'bench@example.org', '-t', `user@${DOMAIN}`, '-M', 'source.bench.test'];
    if (cfg.mode === 'reuse') sargs.unshift('-d');
    sargs.push(`127.0.0.1:${def.port}`);
    const env = { ...process.env, LD_LIBRARY_PATH: path.join(BENCH, 'vendor/postfix/usr/lib/postfix') };
    const ts = performance.now();
    const r = await new Promise((resolve) => {
      const child = spawn(path.join(BENCH, 'vendor/postfix/usr/sbin/smtp-source'), sargs, { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const limit = setTimeout(() => child.kill('SIGKILL'), Math.max(20, cfg.duration * 10) * 1000);
      child.on('close', (code, sig) => {
        clearTimeout(limit);
        resolve({ code, sig, err: err.slice(-300) });
      });
    });
    const secs = (performance.now() - ts) / 1000;
    res = {
      ok: r.code === 0,
      generator: 'smtp-source',
      messages: count,
      completed: r.code === 0 ? count : null,
      msgs_per_s: r.code === 0 ? r2(count / secs, 1) : null,
      window_s: r2(secs, 3),
      error: r.code === 0 ? undefined : `exit ${r.code ?? r.sig}: ${r.err.trim()}`,
      command: `smtp-source ${sargs.join(' ').replace(/127\.0\.0\.1:\d+/, '127.0.0.1:PORT')}`,
    };
  }
  await sleep(100); // let the server finish its last sessions' bookkeeping
  const server_cpu = cpu_seconds(def.rec.pid) - cpu0;
  const machine_cpu = machine_busy_s() - busy0;
  const client_cpu = res.client_cpu_s ?? null;
  const completed = res.completed ?? res.messages ?? 0;
  return {
    ok: res.ok !== false,
    msgs_per_s: res.msgs_per_s ?? null,
    messages: res.messages ?? null,
    completed,
    p50_ms: res.latency_ms?.p50 ?? null,
    p99_ms: res.latency_ms?.p99 ?? null,
    server_cpu_s: r2(server_cpu, 3),
    cpu_s_per_1000: completed > 0 ? r2((server_cpu / completed) * 1000, 3) : null,
    client_cpu_s: client_cpu,
    other_cpu_s: client_cpu !== null ? r2(machine_cpu - server_cpu - client_cpu, 2) : r2(machine_cpu - server_cpu, 2),
    wall_s: r2((Date.now() - t0) / 1000, 2),
    quiet_wait_ms: q.waited_ms,
    errors: res.errors && Object.keys(res.errors).length ? res.errors : undefined,
    error_samples: res.error_samples?.length ? res.error_samples : undefined,
    error: res.ok === false ? res.error ?? res.stderr ?? `exit ${res.code}` : undefined,
  };
}

/** Starts (or restarts) a prepared server and waits for its greeting. */
async function launch(def) {
  const sp = def.spawn();
  const t0 = Date.now();
  def.rec = own(sp.cmd, sp.args, { cwd: sp.cwd, env: sp.env, detached: sp.detached, log: path.join(work, `${def.id}.log`), name: def.id });
  def.greeting = await wait_for_greeting(def.port, 90000, def.rec);
  def.startup_ms = Date.now() - t0;
}

/** A bench/lib/idle.mjs process holding one server's idle connections, driven line by line. */
function holder_for(def, sources) {
  const child = spawn(
    process.execPath,
    [path.join(BENCH, 'lib/idle.mjs'), '--port', String(def.port), '--n', String(def.idle_n), '--source', sources.join(','), '--max-seconds', '170'],
    { stdio: ['pipe', 'pipe', 'ignore'] },
  );
  const lines = [];
  let waiter = null;
  let buf = '';
  let exited = false;
  child.stdout.on('data', (d) => {
    buf += d;
    let k;
    while ((k = buf.indexOf('\n')) >= 0) {
      try {
        lines.push(JSON.parse(buf.slice(0, k)));
      } catch {}
      buf = buf.slice(k + 1);
      waiter?.();
    }
  });
  child.on('exit', () => {
    exited = true;
    waiter?.();
  });
  return {
    async next(ms) {
      const until = Date.now() + ms;
      while (!lines.length && !exited && Date.now() < until) await new Promise((r) => ((waiter = r), setTimeout(r, 200)));
      waiter = null;
      return lines.shift() ?? null;
    },
    say(line) {
      if (!exited) child.stdin.write(`${line}\n`);
    },
    kill() {
      if (!exited) child.kill('SIGKILL');
    },
  };
}

/**
 * One round of the idle-connection test for all servers at once (memory is per process tree,
 * so they do not disturb each other): N connections to each, greeted and then silent; memory
 * before and after; then, one server at a time, fresh greetings while its N are held.
 */
async function idle_round(defs) {
  // a few sessions first, so that code run once per process (lazy compilation, first-use
  // allocations) is not counted as per-connection memory
  for (const def of defs) for (let i = 0; i < 20; i++) await greet_once(def.port, 5000).catch(() => null);
  await sleep(1500);
  const before = new Map(defs.map((d) => [d, memory_kib(d.rec.pid)]));
  // each holder connects from its own four 127.0.0.x addresses (ephemeral ports are per address)
  const holders = new Map(defs.map((d, i) => [d, holder_for(d, [0, 1, 2, 3].map((j) => `127.0.0.${10 + 4 * i + j}`))]));
  const out = new Map();
  try {
    const opened = new Map();
    await Promise.all(defs.map(async (d) => opened.set(d, await holders.get(d).next(180000))));
    await sleep(1500);
    const after = new Map(defs.map((d) => [d, memory_kib(d.rec.pid)]));
    for (const d of defs) {
      const o1 = opened.get(d);
      if (!o1) {
        out.set(d, { ok: false, n: d.idle_n, error: 'the connection holder gave no answer' });
        continue;
      }
      holders.get(d).say('probe');
      const probe = await holders.get(d).next(60000);
      const b = before.get(d);
      const a = after.get(d);
      const k = o1.opened || 1;
      out.set(d, {
        ok: o1.opened > 0,
        n: d.idle_n,
        opened: o1.opened,
        failed: o1.failed,
        fail_kinds: Object.keys(o1.fail_kinds ?? {}).length ? o1.fail_kinds : undefined,
        open_ms: o1.ms,
        rss_before_kib: b.rss_kib,
        rss_after_kib: a.rss_kib,
        pss_before_kib: b.pss_kib,
        pss_after_kib: a.pss_kib,
        processes_before: b.processes,
        processes_after: a.processes,
        rss_per_conn_kib: r2((a.rss_kib - b.rss_kib) / k, 2),
        pss_per_conn_kib: r2((a.pss_kib - b.pss_kib) / k, 2),
        probe_ms: probe?.probe_ms ?? null,
        probe_max_ms: probe?.probe_ms?.length && probe.probe_ms.every((x) => x !== null) ? Math.max(...probe.probe_ms) : null,
        closed_by_server: probe?.closed_by_server ?? null,
      });
    }
    for (const d of defs) holders.get(d).say('close');
    await Promise.all(defs.map((d) => holders.get(d).next(20000)));
  } finally {
    for (const h of holders.values()) h.kill();
  }
  return out;
}

async function profile_qpsmtpd_ts(ctx, port) {
  const prof_dir = path.join(work, 'cpu-prof');
  fs.mkdirSync(prof_dir, { recursive: true });
  const pctx = { ...ctx, cpu_prof_dir: prof_dir, work: path.join(work, 'profile'), ts_args: ['--worker-sessions', '1000000'] };
  fs.mkdirSync(pctx.work, { recursive: true });
  const def = definitions(pctx).find((d) => d.id === 'qpsmtpd-ts');
  def.prepare(port);
  const sp = def.spawn();
  def.rec = own(sp.cmd, sp.args, { cwd: sp.cwd, env: sp.env, detached: sp.detached, log: path.join(work, 'profile.log'), name: 'qpsmtpd-ts --cpu-prof' });
  await wait_for_greeting(port, 30000, def.rec);
  const master_pid = def.rec.pid;
  const secs = quick ? 4 : 10;
  const warm = 1;
  // the profile is cut to the measured window (start-up and warm-up left out)
  const t_load = Number(process.hrtime.bigint() / 1000n);
  const load = await measure_once(def, { mode: 'conn', c: 20, warmup: warm, duration: secs });
  await stop_process(def.rec, 15000);
  const files = fs.readdirSync(prof_dir).filter((f) => f.endsWith('.cpuprofile'));
  const worker_files = files.filter((f) => !f.includes(`.${master_pid}.`)).map((f) => path.join(prof_dir, f));
  const master_files = files.filter((f) => f.includes(`.${master_pid}.`)).map((f) => path.join(prof_dir, f));
  const roots = [[`${ctx.main}/`, ''], [`${MAIN}/`, ''], ['node:', 'node:']];
  // client start-up (~0.1 s) + warm-up, to the end of the window
  const win = { from_us: t_load + (warm + 0.3) * 1e6, to_us: t_load + (warm + 0.3 + secs) * 1e6 };
  const out = {
    load: { generator: 'bench/client.mjs', mode: 'conn', concurrency: 20, seconds: secs, msgs_per_s: load.msgs_per_s, server_cpu_s: load.server_cpu_s },
    command: 'node --cpu-prof bin/qpsmtpd-ts start ... --worker-sessions 1000000 (the workers inherit --cpu-prof)',
    window_us: win,
    workers: worker_files.length ? top_self(worker_files, { roots, limit: 15, ...win }) : null,
    master: master_files.length ? top_self(master_files, { roots, limit: 10, ...win }) : null,
  };
  // keep the raw profiles next to the results (git-ignored), for a closer look
  const keep = path.join(BENCH, 'results', `${stamp}-cpuprofiles`);
  fs.mkdirSync(keep, { recursive: true });
  for (const f of [...worker_files, ...master_files]) fs.copyFileSync(f, path.join(keep, path.basename(f)));
  out.saved = path.relative(BENCH, keep);
  return out;
}

const extra_defs = [];
async function main() {
  preflight();
  const ts_root = snapshot_qpsmtpd_ts();
  const ports = await free_ports(12);
  const dns_port = ports.shift();
  const ctx = { bench: BENCH, main: ts_root, work, dns_port, node: process.execPath, postfix_dir: path.join(BENCH, 'vendor/postfix'), idle_n, idle_n_forking, cpus };
  results.versions = versions({ ...ctx, main: MAIN });
  let defs = definitions(ctx);
  if (o.servers) {
    const want = o.servers.split(',');
    defs = defs.filter((d) => want.includes(d.id));
  }
  const nofile = results.machine.nofile_limit ?? 1024;
  if (nofile < idle_n + 1000) {
    results.notes.push(`open-file limit ${nofile} is below ${idle_n + 1000}: idle test reduced (start through bench/run, which raises it)`);
  }

  log(`work dir ${path.relative(MAIN, work)}; DNS stub on udp 127.0.0.1:${dns_port}`);
  const dns = own(process.execPath, [path.join(BENCH, 'lib/dns-stub.mjs'), String(dns_port)], { log: path.join(work, 'dns-stub.log'), name: 'dns-stub' });
  {
    const { Resolver } = await import('node:dns/promises');
    const r = new Resolver({ timeout: 500, tries: 1 });
    r.setServers([`127.0.0.1:${dns_port}`]);
    let names = null;
    for (let i = 0; i < 50 && !names; i++) {
      await sleep(100);
      names = await r.resolvePtr('1.0.0.127.in-addr.arpa').catch(() => null);
    }
    if (names?.[0] !== 'localhost') throw new Error(`the DNS stub does not answer (${names})`);
  }

  // all start at once (start-up time is not measured closely: it is only reported)
  await Promise.all(
    defs.map(async (def) => {
      def.prepare(ports.shift());
      await launch(def);
    }),
  );
  for (const def of defs) def.first_startup_ms = def.startup_ms;
  await sleep(1000);
  for (const def of defs) {
    def.idle_mem = memory_kib(def.rec.pid);
    results.checks[def.id] = { greeting: def.greeting, ...(await equivalence_check(def)) };
    log(`${def.id} up on ${def.port} (${def.startup_ms} ms); check ${results.checks[def.id].pass ? 'ok' : 'FAILED'}`);
    if (!results.checks[def.id].pass) results.notes.push(`${def.id}: equivalence check failed: ${JSON.stringify(results.checks[def.id])}`);
  }
  results.servers = defs.map((d) => ({
    id: d.id,
    label: d.label,
    family: d.family,
    variant: d.variant,
    cmdline: d.cmdline,
    startup_ms: d.first_startup_ms,
    memory_at_start_kib: d.idle_mem,
    idle_n: d.idle_n,
  }));

  // warm-up: JIT, prefork children, worker pools
  log('warm-up pass');
  for (const def of defs) {
    for (const mode of quick ? ['conn'] : ['conn', 'reuse']) await measure_once(def, { mode, c: 20, warmup: 0, duration: quick ? 0.3 : 1 });
  }

  const out_of_time = () => Date.now() > deadline - reserve_ms;
  for (let round = 1; round <= rounds && !out_of_time(); round++) {
    log(`round ${round}/${rounds}: throughput`);
    for (const cfg of CONFIGS) {
      for (const def of defs) {
        if (out_of_time()) break;
        const m = await measure(def, cfg);
        ((results.throughput[def.id] ??= {})[cfg.key] ??= []).push({ round, ...m });
      }
      log(`  ${cfg.key}: ${defs.map((d) => `${d.id} ${results.throughput[d.id]?.[cfg.key]?.at(-1)?.msgs_per_s}`).join(', ')}`);
    }
    if (!o['no-smtp-source'] && !quick && round <= SMTP_SOURCE_ROUNDS) {
      for (const key of ['conn-c20', 'reuse-c20']) {
        const cfg = CONFIGS.find((c) => c.key === key);
        for (const def of defs) {
          if (out_of_time()) break;
          const m = await measure(def, cfg, 'smtp-source');
          ((results.smtp_source[def.id] ??= {})[key] ??= []).push({ round, ...m });
        }
      }
    }
  }

  if (!o['no-idle']) {
    const idle_defs = defs.filter((d) => d.variant === 'discard');
    // qpsmtpd-ts replaces a worker after --worker-sessions (1000) sessions, and a replaced worker
    // lives on until its sessions end: with thousands of idle connections that is one more
    // Node process per 1000. This instance shows the per-session cost without that.
    if (idle_defs.some((d) => d.id === 'qpsmtpd-ts')) {
      const xctx = { ...ctx, ts_args: ['--worker-sessions', '1000000'], work: path.join(work, 'no-retire') };
      fs.mkdirSync(xctx.work, { recursive: true });
      const x = definitions(xctx).find((d) => d.id === 'qpsmtpd-ts');
      x.id = 'qpsmtpd-ts-no-retire';
      x.variant = 'idle-only';
      x.label = 'qpsmtpd-ts, --worker-sessions 1000000';
      x.prepare(ports.shift());
      x.cmdline += ' --worker-sessions 1000000';
      idle_defs.splice(idle_defs.findIndex((d) => d.id === 'qpsmtpd-ts') + 1, 0, x);
      extra_defs.push(x);
      results.idle_only_servers = [{ id: x.id, label: x.label, family: x.family, variant: x.variant, cmdline: x.cmdline, idle_n: x.idle_n }];
    }
    const idle_deadline = deadline - (o['no-profile'] ? 0 : quick ? 15000 : 30000);
    for (let round = 1; round <= idle_rounds && Date.now() < idle_deadline; round++) {
      log(`round ${round}/${idle_rounds}: idle connections (servers restarted first)`);
      // Memory a process once grew to mostly stays (malloc arenas, V8 heap, prefork's children):
      // every round starts from freshly started servers so that it is really measured.
      await Promise.all(idle_defs.map((def) => (def.rec ? stop_process(def.rec) : null)));
      await Promise.all(idle_defs.map((def) => launch(def)));
      const got = await idle_round(idle_defs);
      for (const def of idle_defs) {
        const m = got.get(def);
        (results.idle[def.id] ??= []).push({ round, ...m });
        log(`  ${def.id}: ${m.opened}/${m.n} open, ${m.rss_per_conn_kib} KiB RSS/conn, fresh greeting ${m.probe_max_ms} ms`);
      }
    }
  }

  for (const def of defs) {
    if (def.variant === 'maildir') results.checks[def.id].maildir_messages = count_maildir(def);
  }
  log('stopping the servers');
  await Promise.all([...defs, ...extra_defs].map((def) => (def.rec ? stop_process(def.rec) : null)));

  if (!o['no-profile'] && Date.now() < deadline && (!o.servers || defs.some((d) => d.id === 'qpsmtpd-ts'))) {
    log('CPU profile of qpsmtpd-ts');
    try {
      results.profile = await profile_qpsmtpd_ts(ctx, ports.shift());
    } catch (e) {
      results.notes.push(`profile failed: ${e.message}`);
    }
  }
  await stop_process(dns);
  const dns_log = fs.readFileSync(path.join(work, 'dns-stub.log'), 'utf8');
  results.dns_stub = /answered (\{.*\})/.exec(dns_log)?.[1] ? JSON.parse(/answered (\{.*\})/.exec(dns_log)[1]) : null;
  const missing_rounds = CONFIGS.some((c) => defs.some((d) => (results.throughput[d.id]?.[c.key]?.length ?? 0) < rounds));
  const missing_idle = !o['no-idle'] && defs.some((d) => d.variant === 'discard' && (results.idle[d.id]?.length ?? 0) < idle_rounds);
  if (missing_rounds || missing_idle) {
    results.partial = true;
    results.notes.push('the time limit ended the run early: some measurements are missing');
  }
}

if (nice) {
  // our servers and load generators inherit it: less disturbed by other work on a shared machine
  os.setPriority(0, nice);
  results.notes.push(`run at nice ${nice}`);
}
results.nice = nice;
let failed = null;
try {
  await main();
} catch (e) {
  failed = e;
  results.partial = true;
  results.notes.push(`run failed: ${e.message}`);
  log(`FAILED: ${e.stack ?? e.message}`);
}
await cleanup();
results.duration_s = Math.round((Date.now() - t_run0) / 1000);
const results_dir = path.join(BENCH, 'results');
fs.mkdirSync(results_dir, { recursive: true });
// a failed run's results stay in its work dir, which is kept
const out_file = failed ? path.join(work, 'results.json') : o.out ?? path.join(results_dir, `${stamp}${quick ? '-quick' : ''}.json`);
fs.writeFileSync(out_file, JSON.stringify(results, null, 1) + '\n');
log(`results: ${path.relative(MAIN, out_file)} (${results.duration_s} s)`);
if (!o['no-doc'] && !failed) {
  write_report(out_file, path.join(MAIN, 'docs/benchmarks.md'));
  log('docs/benchmarks.md regenerated');
}
if (!o.keep && !failed) fs.rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
