#!/usr/bin/env node
// Turns a bench/results/<date>.json into docs/benchmarks.md and bench/results/benchmarks.svg
// (the chart of the medians; hand-written SVG, no dependency).
//
//   node bench/lib/report.mjs [bench/results/X.json]     (default: the newest full run, else the newest)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = path.resolve(BENCH, '..');

const CONFIG_KEYS = ['conn-c1', 'conn-c20', 'conn-c200', 'reuse-c1', 'reuse-c20', 'reuse-c200'];
const CONFIG_LABEL = {
  'conn-c1': 'new conn., c=1',
  'conn-c20': 'new conn., c=20',
  'conn-c200': 'new conn., c=200',
  'reuse-c1': 'reused, c=1',
  'reuse-c20': 'reused, c=20',
  'reuse-c200': 'reused, c=200',
};
const COLORS = {
  'smtp-sink': '#9e9e9e',
  'qpsmtpd-ts': '#1565c0',
  'qpsmtpd-ts-maildir': '#64b5f6',
  qpsmtpd: '#c62828',
  'qpsmtpd-maildir': '#ef9a9a',
  haraka: '#2e7d32',
  'smtp-server': '#f9a825',
};

/** The header rows of a table with one column per load configuration. */
const CONFIG_TABLE_HEAD = [`| server | ${CONFIG_KEYS.map((k) => CONFIG_LABEL[k]).join(' | ')} |`, `|---|${CONFIG_KEYS.map(() => '---:').join('|')}|`];

function nums(xs) {
  return xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
}
export function stats(xs) {
  const v = nums(xs);
  if (!v.length) return null;
  const med = v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  return { min: v[0], median: med, max: v[v.length - 1], n: v.length };
}

function fmt(x, digits) {
  if (x === null || x === undefined) return '–';
  if (digits !== undefined) return x.toFixed(digits);
  if (x >= 100) return String(Math.round(x));
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}
const cell = (s, digits) => (s ? `**${fmt(s.median, digits)}** <sub>${fmt(s.min, digits)}–${fmt(s.max, digits)}</sub>` : '–');

function series(results, table, id, key, field) {
  return (results[table]?.[id]?.[key] ?? []).filter((m) => m.ok !== false).map((m) => m[field]);
}

function summarize(results) {
  const s = {};
  for (const srv of results.servers) {
    s[srv.id] = {};
    for (const key of CONFIG_KEYS) {
      s[srv.id][key] = {
        rate: stats(series(results, 'throughput', srv.id, key, 'msgs_per_s')),
        p50: stats(series(results, 'throughput', srv.id, key, 'p50_ms')),
        p99: stats(series(results, 'throughput', srv.id, key, 'p99_ms')),
        cpu: stats(series(results, 'throughput', srv.id, key, 'cpu_s_per_1000')),
        other: stats(series(results, 'throughput', srv.id, key, 'other_cpu_s')),
        errors: (results.throughput?.[srv.id]?.[key] ?? []).filter((m) => m.errors || m.ok === false).length,
      };
    }
  }
  return s;
}

// -- SVG -------------------------------------------------------------------------------------------
function esc(t) {
  return String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function svg_chart(results, sum) {
  const servers = results.servers.map((s) => s.id);
  const W = 980;
  const H = 470;
  const m = { l: 64, r: 16, t: 40, b: 118 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = [];
  for (const id of servers) for (const k of CONFIG_KEYS) if (sum[id][k].rate) all.push(sum[id][k].rate.max);
  const top = Math.pow(10, Math.ceil(Math.log10(Math.max(10, ...all))));
  const bottom = 1;
  const y = (v) => m.t + ph - (ph * (Math.log10(Math.max(v, bottom)) - Math.log10(bottom))) / (Math.log10(top) - Math.log10(bottom));
  const gw = pw / CONFIG_KEYS.length;
  const bw = Math.min(16, (gw - 14) / servers.length);
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">Messages per second (median of ${results.rounds} rounds, log scale) — ${esc(results.date.slice(0, 10))}${results.quick ? ' (quick run)' : ''}</text>`);
  for (let v = bottom; v <= top; v *= 10) {
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v >= 1000 ? `${v / 1000}k` : v}</text>`);
    for (const f of [2, 5]) {
      if (v * f < top) {
        const y2 = y(v * f).toFixed(1);
        out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y2}" y2="${y2}" stroke="#f0f0f0"/>`);
      }
    }
  }
  out.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">messages / s</text>`);
  CONFIG_KEYS.forEach((k, gi) => {
    const gx = m.l + gi * gw + (gw - bw * servers.length) / 2;
    servers.forEach((id, si) => {
      const st = sum[id][k].rate;
      if (!st) return;
      const x = gx + si * bw;
      const yt = y(st.median);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yt.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(m.t + ph - yt).toFixed(1)}" fill="${COLORS[id] ?? '#555'}"><title>${esc(id)} ${esc(CONFIG_LABEL[k])}: ${fmt(st.median)} msg/s (min ${fmt(st.min)}, max ${fmt(st.max)})</title></rect>`,
      );
      // min-max whisker
      const x0 = (x + (bw - 2) / 2).toFixed(1);
      out.push(`<line x1="${x0}" x2="${x0}" y1="${y(st.min).toFixed(1)}" y2="${y(st.max).toFixed(1)}" stroke="#000" stroke-width="1"/>`);
    });
    out.push(`<text x="${(m.l + gi * gw + gw / 2).toFixed(1)}" y="${m.t + ph + 18}" text-anchor="middle">${esc(CONFIG_LABEL[k])}</text>`);
  });
  out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${m.t + ph}" y2="${m.t + ph}" stroke="#000"/>`);
  const labels = Object.fromEntries(results.servers.map((s) => [s.id, s.label]));
  servers.forEach((id, i) => {
    const col = i % 4;
    const row = Math.floor(i / 4);
    const lx = m.l + col * 230;
    const ly = H - m.b + 44 + row * 20;
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[id] ?? '#555'}"/>`);
    out.push(`<text x="${lx + 17}" y="${ly}">${esc(labels[id] ?? id)}</text>`);
  });
  out.push(`<text x="${m.l}" y="${H - 8}" fill="#555">whiskers: min–max over the rounds; one connection per message (new conn.) or one per client (reused); c = concurrent clients</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// -- markdown --------------------------------------------------------------------------------------
function targets(results, sum) {
  const rate = (id, k) => sum[id]?.[k]?.rate?.median ?? null;
  const rows = [];
  const ts = rate('qpsmtpd-ts', 'conn-c20');
  const ratio = (a, b) => (a !== null && b ? a / b : null);
  const row = (what, value, reference, need, ok, how) => rows.push({ what, value, reference, need, ok, how });
  // the round in which other processes took the least of the machine
  const quietest = (id, k) => {
    const ms = (results.throughput?.[id]?.[k] ?? []).filter((m) => m.ok !== false && typeof m.msgs_per_s === 'number');
    if (!ms.length) return null;
    return ms.reduce((a, b) => ((b.others_share ?? 1) < (a.others_share ?? 1) ? b : a));
  };
  const quiet_note = (a, b) => {
    const qa = quietest('qpsmtpd-ts', a);
    const qb = quietest(b, a);
    if (!qa || !qb) return '';
    return `; quietest rounds: ${fmt(qa.msgs_per_s)} vs ${fmt(qb.msgs_per_s)} = ${(qa.msgs_per_s / qb.msgs_per_s).toFixed(2)}× (others used ${Math.round((qa.others_share ?? 0) * 100)}% / ${Math.round((qb.others_share ?? 0) * 100)}%)`;
  };
  const h = rate('haraka', 'conn-c20');
  row('new connection per message, c=20, vs Haraka', ts, h, '≥ 2×', ratio(ts, h) !== null ? ratio(ts, h) >= 2 : null, ratio(ts, h) !== null ? `${ratio(ts, h).toFixed(2)}×${quiet_note('conn-c20', 'haraka')}` : '–');
  const q = rate('qpsmtpd', 'conn-c20');
  row('new connection per message, c=20, vs qpsmtpd prefork', ts, q, '≥ 8×', ratio(ts, q) !== null ? ratio(ts, q) >= 8 : null, ratio(ts, q) !== null ? `${ratio(ts, q).toFixed(2)}×${quiet_note('conn-c20', 'qpsmtpd')}` : '–');
  const tr = rate('qpsmtpd-ts', 'reuse-c20');
  const sr = rate('smtp-server', 'reuse-c20');
  row('reused connections, c=20, vs smtp-server', tr, sr, '≥ 1×', ratio(tr, sr) !== null ? ratio(tr, sr) >= 1 : null, ratio(tr, sr) !== null ? `${ratio(tr, sr).toFixed(2)}×${quiet_note('reuse-c20', 'smtp-server')}` : '–');
  // the same comparisons in CPU time per message: insensitive to other load on the machine
  const cpu = (id, k) => sum[id]?.[k]?.cpu?.median ?? null;
  const cview = (what, k, ref, need, factor) => {
    const a = cpu('qpsmtpd-ts', k);
    const b = cpu(ref, k);
    const r = a && b ? b / a : null;
    row(`${what} — CPU view: server CPU s per 1000 messages`, a, b, need, r !== null ? r >= factor : null, r === null ? '–' : r >= 1 ? `${r.toFixed(2)}× less CPU per message` : `${(1 / r).toFixed(2)}× **more** CPU per message`);
  };
  cview('new connection, c=20, vs Haraka', 'conn-c20', 'haraka', '≥ 2× less', 2);
  cview('new connection, c=20, vs qpsmtpd prefork', 'conn-c20', 'qpsmtpd', '≥ 8× less', 8);
  cview('reused, c=20, vs smtp-server', 'reuse-c20', 'smtp-server', '≥ 1× less', 1);
  for (const [id, how] of [
    ['qpsmtpd-ts', 'defaults'],
    ['qpsmtpd-ts-no-retire', '--worker-sessions 1000000'],
  ]) {
    const rows_ = results.idle?.[id] ?? [];
    if (!rows_.length) continue;
    const idle = stats(rows_.map((m) => m.rss_per_conn_kib));
    const held = stats(rows_.map((m) => m.opened));
    const closed = stats(rows_.map((m) => m.closed_by_server));
    const n = rows_[0].n;
    row(`RSS per idle connection, ${n} opened (${how})`, idle?.median ?? null, null, '≤ 30 KiB', idle ? idle.median <= 30 : null, idle ? `${fmt(idle.median)} KiB (${fmt(idle.min)}–${fmt(idle.max)})` : '–');
    const probe = stats(rows_.map((m) => m.probe_max_ms));
    const all_held = held ? held.min >= Math.min(n, 10000) && n >= 10000 : false;
    row(
      `${n} idle connections held, fresh client greeted (${how})`,
      probe?.max ?? null,
      null,
      '≤ 1 s, all held',
      probe ? probe.max <= 1000 && all_held : null,
      probe
        ? `${fmt(probe.max)} ms worst of ${probe.n}×5 probes; held ${held.min === held.max ? held.min : `${held.min}–${held.max}`} of ${n}` +
          (closed?.max ? ` (the server closed ${closed.min}–${closed.max} after their greeting)` : '')
        : '–',
    );
  }
  return rows;
}

/**
 * What keeps the unmet targets out of reach, from this run's own numbers (the CPU budget of the
 * shared cores, the C floor), then bench/analysis.md (profiles and what was tried) verbatim.
 */
function blockers(results, sum) {
  const L = ['## What stands in the way', ''];
  const cpus = results.machine.cpus;
  const rate = (id, k) => sum[id]?.[k]?.rate?.median ?? null;
  const cpu_ms = (id, k) => sum[id]?.[k]?.cpu?.median ?? null; // s per 1000 = ms per message
  const client_ms = (id, k) => {
    const xs = (results.throughput?.[id]?.[k] ?? []).filter((m) => m.ok !== false && m.completed > 0 && typeof m.client_cpu_s === 'number');
    return stats(xs.map((m) => (m.client_cpu_s * 1000) / m.completed))?.median ?? null;
  };
  const budget = (k, ref, factor, what) => {
    const ts = rate('qpsmtpd-ts', k);
    const r = rate(ref, k);
    const s_ms = cpu_ms('qpsmtpd-ts', k);
    const c_ms = client_ms('qpsmtpd-ts', k);
    if (ts === null || r === null || s_ms === null || c_ms === null) return;
    const need = factor * r;
    const cores = (need * (s_ms + c_ms)) / 1000;
    const server_needed = (cpus * 1000) / need - c_ms;
    L.push(
      `- **${what}**: needed ${fmt(need)} messages/s (${factor}× ${fmt(r)}), got ${fmt(ts)}. Per message the qpsmtpd-ts processes spent ${fmt(s_ms)} ms of CPU (${ref} ${fmt(cpu_ms(ref, k))} ms) and the load generator ${fmt(c_ms)} ms; ` +
        `at ${fmt(need)}/s that would be ${fmt(cores)} CPU-seconds per second, ${cores > cpus ? `more than the ${cpus} cores have` : `within the ${cpus} cores`}. ` +
        (server_needed > 0
          ? `Reaching the target needs at most ${fmt(server_needed)} ms of server CPU per message (${fmt(s_ms / server_needed)}× less than now).`
          : `The load generator alone would need more than the ${cpus} cores at that rate: no server can reach it on this machine.`),
    );
  };
  const sink = rate('smtp-sink', 'conn-c20');
  const q = rate('qpsmtpd', 'conn-c20');
  if (sink !== null && q !== null && 8 * q > sink) {
    L.push(
      `- **8× qpsmtpd prefork, one connection per message**: 8 × ${fmt(q)} = ${fmt(8 * q)} messages/s. Postfix's smtp-sink — C, no plugins, no DNS lookup, no logging — reached ${fmt(sink)} in the same rounds` +
        (8 * q > sink ? ', so the target lies above the floor every server here is measured against.' : '.'),
    );
  }
  budget('conn-c20', 'qpsmtpd', 8, '8× qpsmtpd prefork, one connection per message');
  budget('conn-c20', 'haraka', 2, '2× Haraka, one connection per message');
  budget('reuse-c20', 'smtp-server', 1, 'smtp-server, reused connections');
  const ss = cpu_ms('smtp-server', 'reuse-c20');
  if (ss !== null) {
    L.push(
      `- smtp-server runs in one process and uses at most one core (${fmt(ss)} ms of CPU per reused-connection message); qpsmtpd-ts spreads sessions over ${cpus} workers, so it can pass it with more CPU per message once the load generator does not need the other core.`,
    );
  }
  L.push('');
  const analysis = path.join(BENCH, 'analysis.md');
  if (fs.existsSync(analysis)) {
    L.push(fs.readFileSync(analysis, 'utf8').trimEnd().replace(/^# .*\n+/, '').replace(/^<!--.*-->\n+/m, ''));
    L.push('');
  }
  return L;
}

export function markdown(results, json_rel, svg_rel, other_runs = []) {
  const sum = summarize(results);
  const L = [];
  const srv = results.servers;
  const label = Object.fromEntries(srv.map((s) => [s.id, s.label]));
  L.push('# Benchmarks');
  L.push('');
  L.push(`<!-- generated by bench/run (bench/lib/report.mjs) from ${json_rel}; do not edit by hand -->`);
  L.push('');
  L.push(
    `qpsmtpd-ts against its peers on one ${results.machine.cpus}-core machine, all on 127.0.0.1. ` +
      `Run of ${results.date.replace('T', ' ').replace(/\..*/, '')} UTC (\`${results.command}\`, ${results.rounds} rounds, ` +
      `${Math.round(results.duration_s / 60)} min${results.quick ? '; **quick mode**: short windows, few rounds — indicative only' : ''}). ` +
      `Raw numbers: [${json_rel}](../${json_rel}).`,
  );
  if (other_runs.length) L.push('', `Other full runs kept for comparison: ${other_runs.map((f) => `[${path.basename(f)}](../${f})`).join(', ')}.`);
  if (results.partial) L.push('', `**Partial run:** ${results.notes.join('; ')}`);
  L.push('');
  L.push('## Where qpsmtpd-ts stands');
  L.push('');
  L.push('| target | qpsmtpd-ts | reference | needed | got | met |');
  L.push('|---|---:|---:|---|---|:-:|');
  for (const t of targets(results, sum)) {
    L.push(`| ${t.what} | ${fmt(t.value)} | ${t.reference === null ? '' : fmt(t.reference)} | ${t.need} | ${t.how} | ${t.ok === null ? '–' : t.ok ? 'yes' : '**no**'} |`);
  }
  L.push('');
  L.push(
    'Messages/s are medians over the rounds; "quietest rounds" compares the measurements during which other processes on this shared machine took the least CPU. ' +
      '"CPU view" rows compare the CPU seconds the servers\' process trees spent per message (the machine has 2 cores shared by server and client, so with no other load a server\'s rate is bounded by about 2 / its CPU per message, less the client\'s share); contention inflates those too, but less. ' +
      'qpsmtpd is Debian\'s 0.94 **qpsmtpd-prefork** (the package ships both prefork and forkserver; prefork is the one measured).',
  );
  L.push('');
  L.push(...blockers(results, sum));
  L.push(`## Messages per second`);
  L.push('');
  L.push(`Median **bold**, min–max of ${results.rounds} rounds small. bench/client.mjs, 1 KiB body, one recipient, no pipelining.`);
  L.push('');
  L.push(`![messages per second, medians](${svg_rel})`);
  L.push('');
  L.push(...CONFIG_TABLE_HEAD);
  for (const s of srv) L.push(`| ${label[s.id]} | ${CONFIG_KEYS.map((k) => cell(sum[s.id][k].rate)).join(' | ')} |`);
  L.push('');
  {
    const shares = [];
    for (const s of srv) for (const k of CONFIG_KEYS) for (const m of results.throughput?.[s.id]?.[k] ?? []) if (typeof m.others_share === 'number') shares.push(m.others_share);
    const st = stats(shares);
    if (st) {
      const busy = shares.filter((x) => x > 0.15).length;
      L.push(
        `Machine contention: during the measurements other processes (not the server under test, not the load generator) used a median ${Math.round(st.median * 100)}% ` +
          `of the ${results.machine.cpus} cores (max ${Math.round(st.max * 100)}%); ${busy} of ${shares.length} measurements had more than 15% (these were redone while a time budget lasted, keeping the quietest attempt). ` +
          'Where that share is high, rates are low and spreads wide (the maxima come from the quiet rounds); CPU per message rises too under contention, but less.',
      );
      L.push('');
    }
  }
  {
    const errs = [];
    for (const s of srv) {
      const kinds = {};
      let n = 0;
      for (const k of CONFIG_KEYS) {
        for (const m of results.throughput?.[s.id]?.[k] ?? []) {
          for (const [kind, c] of Object.entries(m.errors ?? {})) {
            kinds[kind] = (kinds[kind] ?? 0) + c;
            n += c;
          }
          if (m.ok === false) kinds.failed_run = (kinds.failed_run ?? 0) + 1;
        }
      }
      if (Object.keys(kinds).length) {
        const sample = Object.values(results.throughput[s.id]).flat().find((m) => m.error_samples)?.error_samples?.[0];
        errs.push(`${label[s.id]}: ${Object.entries(kinds).map(([k, c]) => `${c}× ${k}`).join(', ')}${sample ? ` (e.g. \`${sample.slice(0, 90)}\`)` : ''}`);
      }
    }
    L.push(errs.length ? `Errors seen by the client during the measurements: ${errs.join('; ')}.` : 'The client saw no errors during the measurements.');
    if (errs.some((e) => e.startsWith('qpsmtpd-ts') && e.includes('_421'))) {
      L.push('');
      L.push(
        'The qpsmtpd-ts 421s come from worker replacement: after `--worker-sessions` (1000) sessions the master tells a worker to retire, and the worker stops every session that starts after that message, ' +
          'including the ones it had just been handed and was still looking up (rDNS) — they get their greeting, then `421 Service shutting down`. The idle test below shows the same (connections closed by the server).',
      );
    }
    L.push('');
  }
  L.push('## Latency per message');
  L.push('');
  L.push(
    'p50 / p99 in ms (medians over the rounds) from bench/client.mjs. New connection: connect() to the 250 after the final dot; reused: MAIL FROM to that 250. ' +
      'At c=200 latency is mostly queueing behind the other 199 clients.',
  );
  L.push('');
  L.push(...CONFIG_TABLE_HEAD);
  for (const s of srv) {
    L.push(`| ${label[s.id]} | ${CONFIG_KEYS.map((k) => (sum[s.id][k].p50 ? `${fmt(sum[s.id][k].p50.median)} / ${fmt(sum[s.id][k].p99?.median)}` : '–')).join(' | ')} |`);
  }
  L.push('');
  L.push('## CPU seconds per 1000 messages');
  L.push('');
  L.push(
    'utime + stime of the server\'s whole process tree from /proc/<pid>/stat (reaped children included, so forked sessions and recycled workers count), ' +
      'over every message of the run (warm-up included), median over the rounds. The load generator\'s CPU is not included.',
  );
  L.push('');
  L.push(...CONFIG_TABLE_HEAD);
  for (const s of srv) L.push(`| ${label[s.id]} | ${CONFIG_KEYS.map((k) => cell(sum[s.id][k].cpu)).join(' | ')} |`);
  L.push('');
  if (Object.keys(results.smtp_source ?? {}).length) {
    L.push('## Cross-check with Postfix smtp-source');
    L.push('');
    L.push(
      'The same servers loaded by `smtp-source` (C, HELO, no pipelining) instead of bench/client.mjs: messages/s, median and min–max. ' +
        'It is count-bounded (count = the window length at the client\'s median rate so far) and timed from start to exit, connection set-up included.',
    );
    L.push('');
    L.push('| server | new conn., c=20 | reused, c=20 |');
    L.push('|---|---:|---:|');
    for (const s of srv) {
      const a = stats(series(results, 'smtp_source', s.id, 'conn-c20', 'msgs_per_s'));
      const b = stats(series(results, 'smtp_source', s.id, 'reuse-c20', 'msgs_per_s'));
      L.push(`| ${label[s.id]} | ${cell(a)} | ${cell(b)} |`);
    }
    L.push('');
  }
  if (Object.keys(results.idle ?? {}).length) {
    L.push('## Idle connections');
    L.push('');
    L.push(
      'Each round restarts the servers (memory a process once grew to mostly stays with it), opens 20 sessions to each (first-use costs), ' +
        'then bench/lib/idle.mjs opens the connections to all servers at once (each server\'s from its own four 127.0.0.x addresses), waits for each 220 greeting and then stays silent. ' +
        'Memory is summed over the server\'s process tree (/proc/<pid>/smaps_rollup) before and 1.5 s after; per connection = difference / connections held. ' +
        'PSS divides shared pages among the processes sharing them, which is the fair figure for forking servers. ' +
        'While they are held, 5 fresh clients connect one after another and the time to their 220 is taken.',
    );
    L.push('');
    L.push('| server | held | RSS KiB / conn. | PSS KiB / conn. | fresh greeting, worst (ms) | time to open all (s) |');
    L.push('|---|---:|---:|---:|---:|---:|');
    for (const s of [...srv, ...(results.idle_only_servers ?? [])]) {
      const rows = results.idle[s.id];
      if (!rows) continue;
      const held = stats(rows.map((m) => m.opened));
      L.push(
        `| ${label[s.id] ?? s.label} | ${held ? `${held.median}${held.min !== held.max ? ` <sub>${held.min}–${held.max}</sub>` : ''} / ${rows[0].n}` : '–'} | ${cell(stats(rows.map((m) => m.rss_per_conn_kib)))} | ${cell(
          stats(rows.map((m) => m.pss_per_conn_kib)),
        )} | ${cell(stats(rows.map((m) => m.probe_max_ms)))} | ${cell(stats(rows.map((m) => m.open_ms / 1000)))} |`,
      );
    }
    L.push('');
    const qp = results.servers.find((s) => s.id === 'qpsmtpd');
    if (qp && qp.idle_n < (results.servers.find((s) => s.id === 'qpsmtpd-ts')?.idle_n ?? 0)) {
      L.push(`qpsmtpd prefork holds each connection in its own Perl process (~20 MB RSS each), so it is measured at ${qp.idle_n} connections, not ${results.servers.find((s) => s.id === 'qpsmtpd-ts').idle_n}.`);
      L.push('');
    }
  }
  if (results.profile?.workers) {
    const p = results.profile;
    L.push('## Where qpsmtpd-ts spends its CPU');
    L.push('');
    L.push(
      `\`node --cpu-prof\` on the master and its workers (\`${p.command}\`) while bench/client.mjs sends one message per connection at c=20 for ${p.load.seconds} s ` +
        `(${fmt(p.load.msgs_per_s)} msg/s under the profiler). Self time summed over the ${p.workers.files.length} worker profile(s); share of the workers' busy time ` +
        `(${(p.workers.busy_ms / 1000).toFixed(1)} s busy, ${(p.workers.idle_ms / 1000).toFixed(1)} s idle). ` +
        'The window is cut to the measured load (start-up and warm-up left out). V8 samples where the thread is at each tick, on the CPU or not: ' +
        '`writeUtf8String` is the write(2) of a reply inside `socket.write()`; `perf` shows that time is mostly real kernel work (TCP transmit plus the loopback delivery to the client, which Linux runs in the sender\'s context), with some time preempted by the client it had just woken (see "Profiles behind the numbers" above).',
    );
    L.push('');
    L.push('| # | self ms | share | function | where | main caller | nearest qpsmtpd-ts / package frame (share) |');
    L.push('|---:|---:|---:|---|---|---|---|');
    p.workers.top.forEach((r, i) =>
      L.push(
        `| ${i + 1} | ${r.self_ms} | ${r.share}% | \`${r.function}\` | ${r.where ? `\`${r.where}\`` : ''} | ${r.caller ? `\`${r.caller}\`` : ''} | ${r.app_frame ? `\`${r.app_frame}\` (${r.app_frame_share}%)` : ''} |`,
      ),
    );
    L.push('');
    if (p.master) {
      L.push(`The master (accepts, hands each socket to a worker over IPC): ${(p.master.busy_ms / 1000).toFixed(1)} s busy over the same run; its top functions:`);
      L.push('');
      L.push('| # | self ms | share | function | where | main caller |');
      L.push('|---:|---:|---:|---|---|---|');
      p.master.top.forEach((r, i) => L.push(`| ${i + 1} | ${r.self_ms} | ${r.share}% | \`${r.function}\` | ${r.where ? `\`${r.where}\`` : ''} | ${r.caller ? `\`${r.caller}\`` : ''} |`));
      L.push('');
    }
  }
  L.push('## What runs');
  L.push('');
  L.push(
    'Every server listens on 127.0.0.1 only, accepts RCPT for one domain (`example.test`) and refuses any other domain with a 5xx ' +
      '(Postfix `smtp-sink` is the floor: C, no policy, accepts everything). "discard" variants read the whole message and drop it; ' +
      '"maildir" variants write it to a maildir and fsync the file and `new/` before the 250. All log at warning level to a file. ' +
      'Each server looks up the client\'s PTR name on every connection (qpsmtpd and Haraka always do; smtp-server by default) in a DNS stub on loopback ' +
      `(bench/lib/dns-stub.mjs; it answered ${results.dns_stub ? Object.entries(results.dns_stub).map(([k, v]) => `${v} ${k}`).join(', ') : '?'} queries during the run), so nothing queries the machine's resolver.`,
  );
  L.push('');
  L.push('| server | command line | at start: RSS / PSS MiB, processes | check: accepted / refused |');
  L.push('|---|---|---|---|');
  for (const s of srv) {
    const c = results.checks[s.id] ?? {};
    const mem = s.memory_at_start_kib;
    L.push(
      `| ${label[s.id]} | \`${s.cmdline}\` | ${mem ? `${(mem.rss_kib / 1024).toFixed(0)} / ${(mem.pss_kib / 1024).toFixed(0)}, ${mem.processes}` : ''} | ${c.pass ? 'ok' : '**failed**'}: \`${(c.accepted ?? '').slice(0, 40)}\` / \`${(c.refused_rcpt ?? '').slice(0, 40)}\` |`,
    );
  }
  L.push('');
  L.push('Notes on the peers:');
  L.push('');
  L.push(
    '- **qpsmtpd 0.94** (Debian) runs under `perl -T`; bench/lib/qp-run sets Net::DNS\'s default resolver to the stub from inside Perl (environment variables are tainted there), then runs the unmodified `/usr/bin/qpsmtpd-prefork`. ' +
      'Its defaults (`--children 15 --max-from-ip 10`) refuse 20 clients from one address, so the limits are raised. Its own `queue/maildir` does not fsync; `bench/peers/qpsmtpd/plugins/queue/bench_maildir` is the same code plus fsync of the file and of `new/`, so both maildir variants do the same durable work. ' +
      'A prefork child serves 100 connections and exits (built in). qpsmtpd-prefork writes each line of a multi-line reply with its own write() and leaves Nagle on, so the EHLO reply costs a delayed-ACK wait (~40 ms on Linux) per connection: that, not CPU, sets its one-client new-connection rate.',
  );
  L.push('- **Haraka** runs in cluster mode with one worker per CPU (`nodes`); `bench_dns` points its resolver at the stub, `bench_discard` drops the message (Haraka\'s own `queue/discard` only does so when told by a note or `YES_REALLY_DO_DISCARD`).');
  L.push(
    '- **smtp-server** (nodemailer) is a library; bench/peers/smtp-server.mjs runs it in one process. It waits a fixed **100 ms after accepting before it greets** (early-talker detection); version ' +
      `${results.versions['smtp-server']} has no option for it, so it is measured as shipped: with one connection per message that delay, not CPU, bounds it (≤ 10 messages/s per client).`,
  );
  L.push('- **qpsmtpd-ts** runs from a copy of `dist/` taken at the start of the run, with its default worker count (one per CPU) and `-c`/`-m` raised as for qpsmtpd.');
  L.push(`- **smtp-sink / smtp-source** come out of Debian's \`postfix\` ${results.versions.postfix} package (\`apt-get download\` + \`dpkg -x\`, \`LD_LIBRARY_PATH\` at its private libraries); Postfix itself is not installed.`);
  L.push('');
  L.push('## Method');
  L.push('');
  L.push(
    `- Servers are interleaved: for each round, for each of the six load shapes, each server in turn (${srv.map((s) => s.id).join(', ')}). ` +
      `A warm-up pass precedes the rounds. Windows (warm-up + measured seconds): c=1 ${results.windows[1].join(' + ')}, c=20 ${results.windows[20].join(' + ')}, c=200 ${results.windows[200].join(' + ')}. ` +
      'The rate is the messages whose 250 arrived inside the measured window divided by its length.',
  );
  L.push(
    '- Every load is bounded in count and time (client `--max-messages` and `--duration` plus a hard kill; smtp-source `-m` plus a kill), and the run has an overall deadline. ' +
      'Before each measurement bench/run waits (within a budget) until the machine is idle, and it records the CPU used by other processes during each one (`other_cpu_s` in the JSON): this machine is shared with other work, and the min–max spreads show how much that mattered.',
  );
  L.push(`- Load generator and servers share the ${results.machine.cpus} cores; the client's own CPU is recorded (\`client_cpu_s\`). At the highest rates (smtp-sink, reused connections) the client, not the server, is the limit.`);
  L.push('- `bench/run --quick` runs fewer rounds with shorter windows and 2 000 idle connections (under 3 minutes), for trying things out; its numbers are indicative only.');
  L.push('');
  L.push('## Machine and versions');
  L.push('');
  const m = results.machine;
  L.push(`- ${m.cpu}, ${m.cpus} CPUs, ${m.memory_gib} GiB; ${m.os}, Linux ${m.kernel}; disk ${m.disk}; load average at start ${m.loadavg_at_start.join(' ')}; open-file limit ${m.nofile_limit}`);
  L.push(`- ${Object.entries(results.versions).map(([k, v]) => `${k} ${v}`).join('; ')}`);
  L.push('');
  L.push('Reproduce: `bench/setup` (once; installs the peers), then `bench/run` (full, about 20 minutes) or `bench/run --quick`. `bench/run --help` lists the options.');
  L.push('');
  if (results.notes.length && !results.partial) {
    L.push('Notes from the run: ' + results.notes.join('; '));
    L.push('');
  }
  return L.join('\n');
}

export function write_report(json_file, md_file) {
  const results = JSON.parse(fs.readFileSync(json_file, 'utf8'));
  const sum = summarize(results);
  const svg_file = path.join(BENCH, 'results', 'benchmarks.svg');
  fs.writeFileSync(svg_file, svg_chart(results, sum));
  const md_dir = path.dirname(md_file);
  const rel = (p) => path.relative(MAIN, p);
  const dir = path.join(BENCH, 'results');
  const others = fs
    .readdirSync(dir)
    .filter((f) => /^\d.*\.json$/.test(f) && !f.includes('quick') && path.join(dir, f) !== path.resolve(json_file))
    .sort()
    .map((f) => rel(path.join(dir, f)));
  fs.writeFileSync(md_file, markdown(results, rel(json_file), path.relative(md_dir, svg_file), results.quick ? [] : others));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let file = process.argv[2];
  if (!file) {
    const dir = path.join(BENCH, 'results');
    const all = fs.readdirSync(dir).filter((f) => /^\d.*\.json$/.test(f)).sort();
    file = path.join(dir, all.filter((f) => !f.includes('quick')).pop() ?? all.pop());
  }
  write_report(path.resolve(file), path.join(MAIN, 'docs/benchmarks.md'));
  console.log(`docs/benchmarks.md and bench/results/benchmarks.svg from ${path.relative(MAIN, path.resolve(file))}`);
}
