// Process-tree accounting from /proc: CPU seconds and memory of a server and all its
// descendants, process spawning with clean-up, small helpers.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
export const PAGE = Number(execFileSync('getconf', ['PAGESIZE']).toString().trim()) || 4096;

/** /proc/<pid>/stat fields after the `(comm)`: index 0 is field 3 (state). */
function stat_fields(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The pid and every live descendant. */
export function tree(root) {
  const children = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = stat_fields(name);
    if (!f) continue;
    const ppid = Number(f[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const out = [];
  const queue = [root];
  while (queue.length) {
    const p = queue.shift();
    if (!fs.existsSync(`/proc/${p}`)) continue;
    out.push(p);
    for (const c of children.get(p) ?? []) queue.push(c);
  }
  return out;
}

/**
 * CPU seconds (user + system) of the tree, including reaped children (cutime/cstime), so
 * processes that came and went between two readings (forked sessions, recycled workers) count.
 */
export function cpu_seconds(root) {
  let ticks = 0;
  for (const pid of tree(root)) {
    const f = stat_fields(pid);
    if (!f) continue;
    // fields 14..17: utime stime cutime cstime -> indexes 11..14 here
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / CLK_TCK;
}

/** RSS and PSS (KiB) summed over the tree; PSS shares pages between forked processes fairly. */
export function memory_kib(root) {
  let rss = 0;
  let pss = 0;
  const pids = tree(root);
  for (const pid of pids) {
    try {
      const roll = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
      rss += Number(/^Rss:\s+(\d+)/m.exec(roll)?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(roll)?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return { rss_kib: rss, pss_kib: pss, processes: pids.length };
}

const started = new Set();

/** Spawns a process we own; `stop_all` ends every one still running (by pid / group). */
export function start_process(cmd, args, opts = {}) {
  const out = opts.log ? fs.openSync(opts.log, 'a') : 'ignore';
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', out, out],
    detached: opts.detached ?? true,
  });
  if (typeof out === 'number') fs.closeSync(out);
  const rec = { child, pid: child.pid, group: opts.detached ?? true, pid_file: opts.pid_file, exited: false, name: opts.name ?? cmd };
  child.on('exit', () => (rec.exited = true));
  child.on('error', () => (rec.exited = true));
  started.add(rec);
  return rec;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process group to signal: its own (we started it detached) or the one it made (setsid). */
function group_of(rec) {
  const f = stat_fields(rec.pid);
  return f ? Number(f[2]) : null;
}

/** TERM, then KILL after `grace_ms`; also KILLs anything left in its process tree. */
export async function stop_process(rec, grace_ms = 8000) {
  if (!started.has(rec)) return;
  const pids = tree(rec.pid);
  const pgid = group_of(rec);
  const signal = (sig) => {
    // a group is signalled only when the process leads it (never our own group)
    if (pgid && pgid === rec.pid && pgid !== process.pid) {
      try {
        process.kill(-pgid, sig);
      } catch {}
    }
    for (const p of pids) {
      try {
        process.kill(p, sig);
      } catch {}
    }
  };
  signal('SIGTERM');
  const until = Date.now() + grace_ms;
  while (Date.now() < until && pids.some(alive)) await sleep(100);
  if (pids.some(alive)) signal('SIGKILL');
  const until2 = Date.now() + 3000;
  while (Date.now() < until2 && pids.some(alive)) await sleep(50);
  started.delete(rec);
}

export async function stop_all() {
  await Promise.all([...started].map((r) => stop_process(r, 5000)));
}

/** Synchronous last resort for exit handlers. */
export function kill_all_sync() {
  for (const rec of started) {
    for (const p of tree(rec.pid)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {}
    }
  }
  started.clear();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves with the greeting once 127.0.0.1:port answers 220 (or rejects after timeout_ms). */
export async function wait_for_greeting(port, timeout_ms = 60000, rec = null) {
  const until = Date.now() + timeout_ms;
  let last = '';
  while (Date.now() < until) {
    if (rec?.exited) throw new Error(`${rec.name} exited before greeting on port ${port}`);
    try {
      const line = await greet_once(port, 5000);
      if (line.startsWith('220')) return line;
      last = line;
    } catch (e) {
      last = e.message;
    }
    await sleep(200);
  }
  throw new Error(`no 220 greeting on 127.0.0.1:${port} within ${timeout_ms} ms (${last})`);
}

/** Connects, reads the greeting's first line, says QUIT; resolves with the line and the ms it took. */
export function greet_once(port, timeout_ms = 5000, with_time = false) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('greeting timeout'));
    }, timeout_ms);
    s.setEncoding('latin1');
    s.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        clearTimeout(timer);
        const ms = performance.now() - t0;
        s.end('QUIT\r\n');
        setTimeout(() => s.destroy(), 500).unref();
        resolve(with_time ? { line: buf.slice(0, i), ms } : buf.slice(0, i));
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      reject(new Error('closed before greeting'));
    });
  });
}

/** True when nothing listens on 127.0.0.1:port. */
export function port_free(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
