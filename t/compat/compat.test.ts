// Differential check: the scenarios of scenarios.ts are played against Debian's qpsmtpd 0.94
// (the `qpsmtpd` package, run here as `qpsmtpd-forkserver`) and against qpsmtpd-ts with the same
// plugins and config. Every reply (and every stored message) must be identical after
// normalisation, or be listed in differences.ts with its reason. `.ci/run` installs the package;
// without it this file FAILS (it never skips).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start_dns, type TestDns } from '../lib/dns-server.js';
import { DIFFERENCES, KNOWN_BUGS, type Difference } from './differences.js';
import { APPENDIX_CONFIG, APPENDIX_PLUGINS, delivered, start_ours, type OurServer } from './lib/ours.js';
import { reference_unavailable, start_reference, type ReferenceServer } from './lib/reference.js';
import { normalise, run_scenario, type Exchange, type Scenario } from './lib/transcript.js';
import { SCENARIOS } from './scenarios.js';
import { DOC_HEADING, docs_section, render_section, write_docs_section } from './lib/docs.js';

interface Pair {
  ours: OurServer;
  ref: ReferenceServer;
}

interface Mismatch {
  scenario: string;
  step: string;
  ours: string;
  theirs: string;
}

const unavailable = reference_unavailable();
let dns: TestDns;
const pairs: Partial<Record<'main' | 'timeout', Pair>> = {};
/** Allow-list entries that explained at least one difference. */
const used = new Set<Difference>();
/** Scenarios on the `timeout` pair start early and run in the background (each waits 2 s). */
const background = new Map<string, Promise<Mismatch[]>>();

function need_reference(): void {
  if (unavailable) throw new Error(`differential check against qpsmtpd 0.94 cannot run: ${unavailable}`);
}

async function start_pair(files: Record<string, string>): Promise<Pair> {
  const [ours, ref] = await Promise.all([
    start_ours(dns.port, files),
    start_reference({ dns_port: dns.port, plugins: APPENDIX_PLUGINS, files: { ...APPENDIX_CONFIG, ...files } }),
  ]);
  return { ours, ref };
}

/** Messages that reached `maildir/new` during `run`, normalised, as one comparable string. */
async function with_stored(maildir: string, run: () => Promise<Exchange[]>): Promise<Exchange[]> {
  const before = delivered(maildir);
  const out = await run();
  const fresh = [...delivered(maildir)].filter(([n]) => !before.has(n)).map(([, body]) => normalise(body));
  out.push({ step: '(stored messages)', reply: fresh.length ? fresh.join('\n=====\n') : '(nothing stored)' });
  return out;
}

async function play(pair: Pair, s: Scenario): Promise<[Exchange[], Exchange[]]> {
  const one = (port: number, maildir: string) => (s.stored ? with_stored(maildir, () => run_scenario(port, s)) : run_scenario(port, s));
  return Promise.all([one(pair.ours.port, pair.ours.maildir), one(pair.ref.port, pair.ref.maildir)]);
}

/** `text` with every occurrence of `d.theirs` replaced by `d.ours`. */
function substitute(text: string, d: Difference): string {
  if (typeof d.theirs === 'string') return text.split(d.theirs).join(d.ours);
  const re = d.theirs.global ? d.theirs : new RegExp(d.theirs.source, d.theirs.flags + 'g');
  re.lastIndex = 0;
  return text.replace(re, d.ours);
}

/**
 * The entries that turn qpsmtpd 0.94's reply into ours, or undefined when the difference is
 * not (fully) explained. Entries for the scenario and step are applied in list order.
 */
function explain(m: Mismatch): Difference[] | undefined {
  let text = m.theirs;
  const applied: Difference[] = [];
  for (const d of [...DIFFERENCES, ...KNOWN_BUGS]) {
    if (!d.scenarios.includes(m.scenario) || !d.steps.includes(m.step)) continue;
    const next = substitute(text, d);
    if (next !== text) {
      applied.push(d);
      text = next;
    }
  }
  return text === m.ours ? applied : undefined;
}

function compare(s: Scenario, ours: Exchange[], theirs: Exchange[]): Mismatch[] {
  const out: Mismatch[] = [];
  const n = Math.max(ours.length, theirs.length);
  for (let i = 0; i < n; i++) {
    const a = ours[i];
    const b = theirs[i];
    if (a?.step !== b?.step) throw new Error(`${s.name}: transcripts out of step at ${i}: ${a?.step} / ${b?.step}`);
    if (a!.reply !== b!.reply) out.push({ scenario: s.name, step: a!.step, ours: a!.reply, theirs: b!.reply });
  }
  return out;
}

function report(s: Scenario, ours: Exchange[], theirs: Exchange[], unexplained: Mismatch[]): string {
  const lines = [
    `scenario ${s.name} (${s.about}): ${unexplained.length} unexplained difference(s).`,
    'Fix qpsmtpd-ts, or, only if the difference is intended, add an entry to t/compat/differences.ts:',
  ];
  for (const m of unexplained) {
    lines.push(`  { scenarios: [${JSON.stringify(m.scenario)}], steps: [${JSON.stringify(m.step)}],`);
    lines.push(`    theirs: ${JSON.stringify(m.theirs)},`);
    lines.push(`    ours: ${JSON.stringify(m.ours)},`);
    lines.push("    reason: '…', source: '…' },");
  }
  lines.push('  full transcript (step | qpsmtpd-ts | qpsmtpd 0.94):');
  for (let i = 0; i < ours.length; i++) lines.push(`    ${ours[i]!.step} | ${JSON.stringify(ours[i]!.reply)} | ${JSON.stringify(theirs[i]?.reply)}`);
  return lines.join('\n');
}

async function check(pair: Pair, s: Scenario): Promise<Mismatch[]> {
  const [ours, theirs] = await play(pair, s);
  const diffs = compare(s, ours, theirs);
  const unexplained: Mismatch[] = [];
  for (const m of diffs) {
    const entries = explain(m);
    if (entries) for (const d of entries) used.add(d);
    else unexplained.push(m);
  }
  if (unexplained.length) {
    const log = pair.ref.output();
    throw new Error(`${report(s, ours, theirs, unexplained)}\n  qpsmtpd 0.94 log (tail):\n${log.slice(-3000)}`);
  }
  return diffs;
}

beforeAll(async () => {
  if (unavailable) return;
  dns = await start_dns(); // NXDOMAIN for every name: both servers see the client as "Unknown"
  const [main, slow] = await Promise.all([start_pair({}), start_pair({ timeout: '2' })]);
  pairs.main = main;
  pairs.timeout = slow;
  for (const s of SCENARIOS.filter((x) => x.server === 'timeout')) {
    const p = check(slow, s);
    p.catch(() => {}); // reported by the scenario's own test
    background.set(s.name, p);
  }
}, 60000);

afterAll(async () => {
  await Promise.allSettled([...background.values()]);
  await Promise.all(
    Object.values(pairs).flatMap((p) => [p.ours.close(), p.ref.stop()]),
  );
  await dns?.close();
});

describe('differential check against qpsmtpd 0.94', () => {
  it('the reference (Debian package qpsmtpd 0.94) is installed and running', async () => {
    need_reference();
    expect(pairs.main!.ref.version).toBe('0.94');
  });

  for (const s of SCENARIOS) {
    it(`${s.name}: ${s.about}`, async () => {
      need_reference();
      if (s.server === 'timeout') await background.get(s.name);
      else await check(pairs.main!, s);
    });
  }

  it('both servers asked only the loopback DNS stub for the client PTR', () => {
    need_reference();
    // one per qpsmtpd connection (a new process each time), and at least one from qpsmtpd-ts
    expect(dns.queries.filter((q) => q === 'PTR 1.0.0.127.in-addr.arpa').length).toBeGreaterThan(SCENARIOS.length);
  });

  it('every allow-list entry is still needed (no stale entries)', () => {
    need_reference();
    const stale = DIFFERENCES.filter((d) => !used.has(d));
    expect(stale.map((d) => `${d.scenarios.join(',')} / ${d.steps.join(',')}: ${d.reason}`)).toEqual([]);
  });

  // Known bugs of qpsmtpd-ts found by this check (differences.ts KNOWN_BUGS). Each test states
  // the correct behaviour and is marked as failing; once the bug is fixed vitest reports it,
  // and the entry (and the `.fails`) must go.
  for (const bug of KNOWN_BUGS) {
    it.fails(`known bug, still present: ${bug.bug}`, () => {
      need_reference();
      expect(used.has(bug), `${bug.scenarios.join(', ')} / ${bug.steps.join(', ')}`).toBe(false);
    });
  }

  it(`docs/compat.md "${DOC_HEADING}" is generated from differences.ts and scenarios.ts`, () => {
    if (process.env.QPTS_UPDATE_DOCS === '1') write_docs_section();
    const section = docs_section();
    expect(section, `docs/compat.md has no section "${DOC_HEADING}"; run QPTS_UPDATE_DOCS=1 npx vitest run t/compat -t docs`).toBeDefined();
    expect(section, 'docs/compat.md is out of date; run QPTS_UPDATE_DOCS=1 npx vitest run t/compat -t docs').toBe(render_section());
  });
});
