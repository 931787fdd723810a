// Self time per function from V8 .cpuprofile files (node --cpu-prof), summed over several
// profiles, optionally only inside a time window (µs of the monotonic clock, the one
// process.hrtime uses, so a load window taken by bench/run leaves start-up out).
// `(idle)` is left out of the percentages: they are shares of busy time. For each function
// the caller that accounts for most of its self time is given too.
import fs from 'node:fs';
import path from 'node:path';

function short_url(url, roots) {
  let u = url.replace(/^file:\/\//, '');
  for (const [from, to] of roots) if (u.startsWith(from)) u = to + u.slice(from.length);
  return u;
}

/** files: .cpuprofile paths; roots: [[absolute prefix, shown as]] */
export function top_self(files, { roots = [], limit = 15, from_us = -Infinity, to_us = Infinity } = {}) {
  const by = new Map();
  const callers = new Map();
  const app_callers = new Map();
  let busy_ms = 0;
  let idle_ms = 0;
  let wall_ms = 0;
  for (const file of files) {
    const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const parent = new Map();
    for (const nd of prof.nodes) for (const c of nd.children ?? []) parent.set(c, nd.id);
    const self = new Map();
    // a sample's duration is the gap to the next sample (the last one gets the mean)
    const n = prof.samples.length;
    const mean = n ? (prof.endTime - prof.startTime) / n : 0;
    let t = prof.startTime;
    let first = null;
    let last = null;
    for (let i = 0; i < n; i++) {
      t += prof.timeDeltas[i];
      if (t < from_us || t > to_us) continue;
      first ??= t;
      last = t;
      const us = i + 1 < n ? prof.timeDeltas[i + 1] : mean;
      self.set(prof.samples[i], (self.get(prof.samples[i]) ?? 0) + Math.max(0, us));
    }
    if (first !== null) wall_ms += (last - first) / 1000;
    const label = (id) => {
      const cf = nodes.get(id).callFrame;
      const where = cf.url ? `${short_url(cf.url, roots)}:${cf.lineNumber + 1}` : '';
      return `${cf.functionName || '(anonymous)'}\u0000${where}`;
    };
    for (const [id, us] of self) {
      const cf = nodes.get(id).callFrame;
      const ms = us / 1000;
      if (cf.functionName === '(idle)') {
        idle_ms += ms;
        continue;
      }
      busy_ms += ms;
      const key = label(id);
      by.set(key, (by.get(key) ?? 0) + ms);
      const p = parent.get(id);
      if (p !== undefined) {
        const m = callers.get(key) ?? new Map();
        const pk = label(p).replace('\u0000', ' ');
        m.set(pk, (m.get(pk) ?? 0) + ms);
        callers.set(key, m);
      }
      // the nearest frame (itself included) that is the application's, not Node's own
      let a = id;
      while (a !== undefined) {
        const url = nodes.get(a).callFrame.url;
        if (url && !url.startsWith('node:')) break;
        a = parent.get(a);
      }
      if (a !== undefined) {
        const m = app_callers.get(key) ?? new Map();
        const ak = label(a).replace('\u0000', ' ');
        m.set(ak, (m.get(ak) ?? 0) + ms);
        app_callers.set(key, m);
      }
    }
  }
  const rows = [...by.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([key, ms]) => {
      const [fn, where] = key.split('\u0000');
      const top_caller = [...(callers.get(key) ?? new Map()).entries()].sort((a, b) => b[1] - a[1])[0];
      const top_app = [...(app_callers.get(key) ?? new Map()).entries()].sort((a, b) => b[1] - a[1])[0];
      return {
        function: fn,
        where,
        self_ms: Number(ms.toFixed(1)),
        share: Number(((100 * ms) / busy_ms).toFixed(1)),
        caller: top_caller ? top_caller[0].trim() : null,
        app_frame: top_app ? top_app[0].trim() : null,
        app_frame_share: top_app ? Number(((100 * top_app[1]) / ms).toFixed(0)) : null,
      };
    });
  return { files: files.map((f) => path.basename(f)), wall_ms: Math.round(wall_ms), busy_ms: Math.round(busy_ms), idle_ms: Math.round(idle_ms), top: rows };
}

// CLI: node bench/lib/cpuprofile.mjs FILE... -> the top 15 as a table
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = top_self(process.argv.slice(2), { roots: [[process.cwd() + '/', '']] });
  console.log(`busy ${r.busy_ms} ms, idle ${r.idle_ms} ms over ${r.files.length} profile(s)`);
  for (const row of r.top) console.log(`${String(row.share).padStart(5)}%  ${String(row.self_ms).padStart(9)} ms  ${row.function}  ${row.where}  <- ${row.caller}  [app: ${row.app_frame} ${row.app_frame_share}%]`);
}
