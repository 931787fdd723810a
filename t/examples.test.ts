// examples/ and docs/writing-plugins.md.
// - examples/plugins/greylist_lite.ts, loaded from a temporary copy (a plugin dir outside the
//   package, listed in plugin_dirs), driven through real in-process SMTP sessions, and once in
//   plain node against the built package;
// - every plugin file of the doc (```ts blocks starting with `// file: …`), the checked snippet
//   table and the example plugins type-checked with the TypeScript compiler API against
//   lib/index.ts (`qpsmtpd-ts` mapped there); the doc's plugins loaded and driven too;
// - the hook reference table: it names every hook, and its rows for the SMTP command hooks are
//   replayed (a plugin returning each code without a message) against real sessions.
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it, vi } from 'vitest';
import { DECLINED, DENY, DENYSOFT, DENYSOFT_DISCONNECT, DENY_DISCONNECT, DONE, HOOK_NAMES, OK, type Transaction } from '../lib/index.js';
import type { Runtime } from '../lib/runtime.js';
import { PLUGIN_DIR, REPO, make_runtime, mock_hook, write_config } from './lib/harness.js';
import { start_session, type Reply } from './lib/session.js';

const EXAMPLES = path.join(REPO, 'examples', 'plugins');
const DOC = path.join(REPO, 'docs', 'writing-plugins.md');

const tmp = (prefix: string) => mkdtempSync(path.join(os.tmpdir(), prefix));

// -- the example plugin in SMTP sessions ------------------------------------------------------

interface Setup {
  runtime: Runtime;
  logged: string[];
  db: string;
  plugin_dir: string;
}

/** A copy of examples/plugins in a temp dir (outside the package), listed first in plugin_dirs. */
async function setup(args = '', files: Record<string, string | string[]> = {}): Promise<Setup> {
  const plugin_dir = tmp('qpts-examples-');
  cpSync(EXAMPLES, plugin_dir, { recursive: true });
  const db = tmp('qpts-greylist-');
  const { runtime, logged } = await make_runtime({
    plugin_dirs: [plugin_dir, PLUGIN_DIR],
    plugins: [`greylist_lite db_dir ${db} ${args}`.trim(), 'rcpt_ok', 'queue/discard'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '6',
    ...files,
  });
  return { runtime, logged, db, plugin_dir };
}

interface Attempt {
  rcpt: Reply;
  queued?: Reply;
}

/** One delivery attempt: greeting, EHLO, MAIL, RCPT, and when accepted DATA, then QUIT. */
async function attempt(
  runtime: Runtime,
  { ip = '192.0.2.10', from = 'alice@sender.test', to = 'bob@example.test', conn = {} as Record<string, unknown> } = {},
): Promise<Attempt> {
  const { client, done } = start_session(runtime, { remote_ip: ip, ...conn });
  expect((await client.reply())!.code).toBe(220);
  expect((await client.cmd('EHLO client.test'))!.code).toBe(250);
  expect((await client.cmd(`MAIL FROM:<${from}>`))!.code).toBe(250);
  const rcpt = (await client.cmd(`RCPT TO:<${to}>`))!;
  let queued: Reply | undefined;
  if (rcpt.code === 250) {
    expect((await client.cmd('DATA'))!.code).toBe(354);
    queued = (await client.cmd('Subject: hello\r\n\r\nhi there\r\n.'))!;
  }
  expect((await client.cmd('QUIT'))!.code).toBe(221);
  await done;
  return { rcpt, ...(queued ? { queued } : {}) };
}

/** Moves the mtime of every greylist entry `seconds` into the past. */
function backdate(db: string, seconds: number): void {
  const t = Date.now() / 1000 - seconds;
  for (const f of readdirSync(db)) utimesSync(path.join(db, f), t, t);
}

/** Captures the X-Greylist header of queued messages (the mock runs before queue/discard). */
function capture_header(runtime: Runtime): string[] {
  const seen: string[] = [];
  mock_hook(runtime, 'queue', (txn: Transaction) => {
    seen.push(txn.header()?.get('X-Greylist') ?? '(none)');
    return DECLINED;
  });
  return seen;
}

describe('examples/plugins/greylist_lite from a plugin dir outside the package', () => {
  it('loads from the temporary copy (which imports qpsmtpd-ts by name) with its arguments', async () => {
    const { runtime, plugin_dir } = await setup('black_timeout 60');
    const plugin = runtime.plugins.find((p) => p.plugin_name() === 'greylist_lite')!;
    expect(plugin).toBeDefined();
    expect(plugin._file).toBe(path.join(plugin_dir, 'greylist_lite.ts'));
    expect(plugin._file.startsWith(REPO + path.sep)).toBe(false);
    expect(readFileSync(plugin._file, 'utf8')).toMatch(/from 'qpsmtpd-ts'/);
    expect(plugin._args).toMatchObject({ black_timeout: '60', reject: 1, reject_type: 'temp' });
    expect(runtime.hooks.get('rcpt').map((e) => e.name)).toEqual(['greylist_lite', 'rcpt_ok']);
    expect(runtime.hooks.get('connect').map((e) => e.name)).toEqual(['greylist_lite']);
    expect(runtime.hooks.get('data_post').map((e) => e.name)).toEqual(['greylist_lite']);
  });

  it('defers a new triplet, keeps deferring within black_timeout, accepts the retry after it', async () => {
    const { runtime, logged, db } = await setup('black_timeout 60');
    const headers = capture_header(runtime);

    const first = await attempt(runtime);
    expect(first.rcpt).toMatchObject({ code: 450, text: 'greylisted, please try again later' });
    expect(readdirSync(db)).toHaveLength(1);
    expect(logged.some((l) => /greylist_lite: fail, new triplet 192\.0\.2\.10 <alice@sender\.test> <bob@example\.test>$/.test(l))).toBe(true);

    const too_soon = await attempt(runtime);
    expect(too_soon.rcpt.code).toBe(450);

    backdate(db, 90);
    const retry = await attempt(runtime);
    expect(retry.rcpt).toMatchObject({ code: 250, text: '<bob@example.test>, recipient ok' });
    expect(retry.queued).toMatchObject({ code: 250, text: 'Queued (discarded)' });
    expect(headers).toHaveLength(1);
    expect(headers[0]).toMatch(/^delayed (9\d) seconds by greylist_lite at mx\.example\.test$/);

    // now known: accepted at once, and no X-Greylist header any more
    const again = await attempt(runtime);
    expect(again.rcpt.code).toBe(250);
    expect(headers[1]).toBe('(none)');
  });

  it('treats each (ip, sender, recipient) separately and starts over after grey_timeout', async () => {
    const { runtime, db } = await setup('black_timeout 60 grey_timeout 600');
    expect((await attempt(runtime)).rcpt.code).toBe(450);
    expect((await attempt(runtime, { ip: '192.0.2.11' })).rcpt.code).toBe(450);
    expect((await attempt(runtime, { from: 'carol@sender.test' })).rcpt.code).toBe(450);
    expect(readdirSync(db)).toHaveLength(3);
    backdate(db, 3600); // the retry window has passed
    expect((await attempt(runtime)).rcpt.code).toBe(450);
    backdate(db, 120);
    expect((await attempt(runtime)).rcpt.code).toBe(250);
  });

  it('never greylists whitelisted clients and senders (greylist_lite_whitelist) nor relay clients', async () => {
    const { runtime, logged, db } = await setup('', {
      greylist_lite_whitelist: ['# comment lines are skipped', '198.51.100.   a client prefix', '@partner.test', 'one@vendor.test'],
    });
    expect((await attempt(runtime, { ip: '198.51.100.7' })).rcpt.code).toBe(250);
    expect(logged.some((l) => l.endsWith('greylist_lite: skip, client 198.51.100.7 whitelisted (198.51.100.)'))).toBe(true);
    expect((await attempt(runtime, { from: 'anyone@partner.test' })).rcpt.code).toBe(250);
    expect((await attempt(runtime, { from: 'one@vendor.test' })).rcpt.code).toBe(250);
    expect((await attempt(runtime, { from: 'two@vendor.test' })).rcpt.code).toBe(450);
    expect((await attempt(runtime, { ip: '203.0.113.9', conn: { relay_client: 1 } })).rcpt.code).toBe(250);
    expect(readdirSync(db)).toHaveLength(1); // only two@vendor.test was recorded
  });

  it('`reject 0` only logs; `reject_type perm` refuses with 550', async () => {
    const trial = await setup('reject 0');
    expect((await attempt(trial.runtime)).rcpt.code).toBe(250);
    expect(trial.logged.some((l) => /greylist_lite: fail, tolerated, new triplet /.test(l))).toBe(true);
    expect(readdirSync(trial.db)).toHaveLength(1);

    const perm = await setup('reject_type perm');
    expect((await attempt(perm.runtime)).rcpt).toMatchObject({ code: 550, text: 'greylisted, please try again later' });
  });

  // npm test builds dist/ before running the tests
  it(
    'loads in plain node with the built package (no build step, no node_modules in the plugin dir)',
    async () => {
      const plugin_dir = tmp('qpts-examples-node-');
      cpSync(EXAMPLES, plugin_dir, { recursive: true });
      const cfg = write_config({
        plugin_dirs: plugin_dir,
        plugins: `greylist_lite db_dir ${tmp('qpts-greylist-node-')}`,
        spool_dir: tmp('qpts-sp-'),
      });
      const script = `
        import { Runtime, Qpsmtpd, Connection, DENYSOFT } from ${JSON.stringify(path.join(REPO, 'dist/lib/index.js'))};
        const rt = new Runtime({ config_dir: ${JSON.stringify(cfg)}, package_config_dir: null, env: {} });
        await rt.load();
        const qp = new Qpsmtpd(rt, new Connection().start({ remote_ip: '192.0.2.1' }));
        qp.transaction.sender(qp.address('<a@sender.test>'));
        const r = await qp.run_hooks('rcpt', qp.address('<b@example.test>'), {});
        console.log(JSON.stringify({ deferred: r.rc === DENYSOFT, msg: r.msg }));
      `;
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: os.tmpdir() });
      expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ deferred: true, msg: ['greylisted, please try again later'] });
    },
  );

  it('bad arguments stop start-up with a message naming the plugin and the argument', async () => {
    await expect(setup('black_timeout soon')).rejects.toThrow(/greylist_lite: black_timeout must be a number of seconds, not 'soon'/);
    await expect(setup('blak_timeout 5')).rejects.toThrow(/plugin greylist_lite: unknown argument 'blak_timeout'/);
  });
});

// -- type-checking the documentation ----------------------------------------------------------

interface DocFile {
  name: string;
  code: string;
  line: number;
}

/** Every ```ts block of the doc; each must start with `// file: <name>.ts`. */
function doc_plugin_files(md: string): DocFile[] {
  const out: DocFile[] = [];
  const re = /^```ts\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(md); m; m = re.exec(md)) {
    const line = md.slice(0, m.index).split('\n').length;
    const code = m[1]!;
    const name = /^\/\/ file: ([\w.-]+\.ts)\n/.exec(code)?.[1];
    if (!name) throw new Error(`docs/writing-plugins.md line ${line}: a \`\`\`ts block must start with "// file: <name>.ts"`);
    out.push({ name, code, line });
  }
  return out;
}

/** Code spans of the last column of each row of the tables after `<!-- checked snippets -->`. */
function doc_snippets(md: string): Array<{ code: string; line: number }> {
  const lines = md.split('\n');
  const out: Array<{ code: string; line: number }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.trim() !== '<!-- checked snippets -->') continue;
    let j = i + 1;
    for (j += 2; j < lines.length && lines[j]!.startsWith('|'); j++) {
      const cells = lines[j]!.split(/(?<!\\)\|/).slice(1, -1);
      const last = cells.at(-1)!.replace(/\\\|/g, '|');
      const spans = [...last.matchAll(/`([^`]+)`/g)].map((s) => s[1]!);
      if (!spans.length) throw new Error(`docs/writing-plugins.md line ${j + 1}: no code in the TypeScript column`);
      out.push({ code: spans.join('\n'), line: j + 1 });
    }
  }
  return out;
}

const COMPILER_OPTIONS = ts.convertCompilerOptionsFromJson(
  {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2023'],
    types: ['node'],
    typeRoots: [path.join(REPO, 'node_modules', '@types')],
    strict: true,
    noImplicitOverride: true,
    isolatedModules: true,
    verbatimModuleSyntax: true,
    esModuleInterop: true,
    skipLibCheck: true,
    noEmit: true,
    paths: { 'qpsmtpd-ts': [path.join(REPO, 'lib', 'index.ts')] },
  },
  REPO,
);

/**
 * Type-checks `files` (name -> source) as ES modules in a temp dir, with `qpsmtpd-ts` mapped to
 * the package's source. Returns the formatted diagnostics of those files (the package's own
 * sources are checked by `npm run typecheck`).
 */
function typecheck(files: Record<string, string>): string[] {
  expect(COMPILER_OPTIONS.errors).toEqual([]);
  const dir = tmp('qpts-doc-check-');
  writeFileSync(path.join(dir, 'package.json'), '{ "type": "module" }\n');
  const roots = Object.entries(files).map(([name, code]) => {
    const file = path.join(dir, name);
    writeFileSync(file, code);
    return file;
  });
  const program = ts.createProgram(roots, COMPILER_OPTIONS.options);
  const ours = new Set(roots.map((r) => path.resolve(r)));
  const diags = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...ts.getPreEmitDiagnostics(program)].filter(
    (d) => !d.file || ours.has(path.resolve(d.file.fileName)),
  );
  const host: ts.FormatDiagnosticsHost = {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => dir,
    getNewLine: () => '\n',
  };
  return [...new Set(diags.map((d) => ts.formatDiagnostic(d, host).trim()))];
}

/** The snippet cells wrapped as methods of a Plugin subclass, with the hook arguments in scope. */
async function snippet_module(snippets: Array<{ code: string; line: number }>): Promise<string> {
  const values = Object.keys(await import('../lib/index.js')).sort();
  const methods = snippets.map(
    (s, i) => `  // docs/writing-plugins.md line ${s.line}
  async snippet_${i}(transaction: Transaction, sender: Address, recipient: Address, params: Record<string, string | undefined>) {
    ${s.code}
  }`,
  );
  return `import { ${values.join(', ')} } from 'qpsmtpd-ts';
export default class Snippets extends Plugin {
${methods.join('\n')}
}
`;
}

describe('docs/writing-plugins.md', () => {
  const md = readFileSync(DOC, 'utf8');

  it('every plugin file in the doc, the checked snippets and the example plugins type-check against the package', async () => {
    const files: Record<string, string> = {};
    const blocks = doc_plugin_files(md);
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    for (const b of blocks) {
      expect(files[b.name], `two blocks named ${b.name}`).toBeUndefined();
      files[b.name] = b.code;
    }
    const snippets = doc_snippets(md);
    expect(snippets.length).toBeGreaterThanOrEqual(25);
    files['__doc_snippets.ts'] = await snippet_module(snippets);
    for (const f of readdirSync(EXAMPLES).filter((n) => n.endsWith('.ts'))) {
      files[`example_${f}`] = readFileSync(path.join(EXAMPLES, f), 'utf8');
    }
    expect(typecheck(files)).toEqual([]);
  }, 120_000);

  it('the check catches a plugin that misuses the API', () => {
    const errors = typecheck({
      'bad.ts': `import { DENY, Plugin, type Address } from 'qpsmtpd-ts';
export default class Bad extends Plugin {
  register(...args: string[]): void { this.parse_args(args, {}); }
  hook_rcpt(_t: unknown, rcpt: Address) { return rcpt.domain() === 'x' ? [DENY, 'no'] : this.connection.no_such(); }
}
`,
    });
    expect(errors.join('\n')).toMatch(/override/);
    expect(errors.join('\n')).toMatch(/domain/);
    expect(errors.join('\n')).toMatch(/no_such/);
  }, 120_000);

  it("the doc's plugins load from a plugin dir and answer as the doc says", async () => {
    const dir = tmp('qpts-doc-plugins-');
    for (const b of doc_plugin_files(md)) if (b.name !== 'try_my_check.ts') writeFileSync(path.join(dir, b.name), b.code);
    const { runtime, logged } = await make_runtime({
      plugin_dirs: [dir, PLUGIN_DIR],
      plugins: [
        'my_check',
        'haraka_style',
        'lenient_from',
        'xversion',
        'session_timer',
        'http_policy',
        'rcpt_ok_plus',
        'require_subject',
        'phrase_filter',
        'submission_limits',
        'queue/discard',
      ],
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
      my_check_blocked: ['blocked.test'],
      rcpt_ok_plus_hosts: ['extra.test'],
      phrase_filter: ['Cheap Pills'],
      loglevel: '6',
    });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('EHLO client.test'))!.lines).toContain('XVERSION');
    expect(await client.cmd('XVERSION')).toMatchObject({ code: 250, text: `qpsmtpd-ts ${runtime.version}` });
    expect(await client.cmd('MAIL FROM:<x@flaky.example>')).toMatchObject({ code: 450, text: 'please try again later' });
    const envelope = async () => {
      expect((await client.cmd('MAIL FROM: alice@sender.test'))!.code).toBe(250); // lenient_from
      expect((await client.cmd('RCPT TO:<bob@extra.test>'))!.code).toBe(250); // rcpt_ok_plus
      expect((await client.cmd('RCPT TO:<carol@example.test>'))!.code).toBe(250); // rcpt_ok via isa_plugin
    };
    await envelope();
    expect(await client.cmd('RCPT TO:<x@blocked.test>')).toMatchObject({ code: 550, text: 'mail for blocked.test is not accepted here' });
    expect(await client.cmd('RCPT TO:<d@elsewhere.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect(await client.cmd('From: a@sender.test\r\n\r\nno subject\r\n.')).toMatchObject({ code: 552, text: 'A Subject header is required' });
    await envelope();
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect(await client.cmd('Subject: offer\r\n\r\nbuy cheap pills now\r\n.')).toMatchObject({ code: 552, text: 'Message content refused (#5.6.1)' });
    await envelope();
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect(await client.cmd('Subject: hello\r\n\r\nhi\r\n.')).toMatchObject({ code: 250, text: 'Queued (discarded)' });
    expect((await client.cmd('QUIT'))!.code).toBe(221);
    await done;
    expect(logged.some((l) => /phrase_filter: fail, phrase 'cheap pills' on line 2$/.test(l))).toBe(true);
    // submission_limits: the listener_parameters hook changes databytes on port 587 only
    for (const [port, size] of [[25, undefined], [587, 'SIZE 52428800']] as const) {
      const s2 = start_session(runtime, { local_port: port });
      expect((await s2.client.reply())!.code).toBe(220);
      const ehlo = (await s2.client.cmd('EHLO client.test'))!;
      expect(ehlo.lines.find((l) => l.startsWith('SIZE'))).toBe(size);
      expect(ehlo.lines[0]).toMatch(port === 587 ? /^submit\.example\.org Hi / : /^mx\.example\.test Hi /);
      expect((await s2.client.cmd('QUIT'))!.code).toBe(221);
      await s2.done;
    }
    expect(logged.some((l) => /\(disconnect\) session_timer: session of \d+ ms; 1 client IPs seen by this worker$/.test(l))).toBe(true);
  });

  it("section 13's script runs my_check through the public API", async () => {
    const blocks = doc_plugin_files(md);
    const dir = tmp('qpts-doc-try-');
    writeFileSync(path.join(dir, 'my_check.ts'), blocks.find((b) => b.name === 'my_check.ts')!.code);
    const cfg = write_config({ plugins: 'my_check', plugin_dirs: dir, my_check_blocked: 'blocked.example', spool_dir: tmp('qpts-sp-') });
    const script = blocks.find((b) => b.name === 'try_my_check.ts')!.code;
    expect(script).toContain("'/tmp/my-config'");
    writeFileSync(path.join(dir, 'try_my_check.ts'), script.replace("'/tmp/my-config'", JSON.stringify(cfg)));
    const printed: unknown[][] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void printed.push(a));
    try {
      await import(pathToFileURL(path.join(dir, 'try_my_check.ts')).href);
    } finally {
      spy.mockRestore();
    }
    expect(printed).toEqual([['refused:', 'mail for blocked.example is not accepted here']]);
  });

  // The hook table, row by row: a mock plugin returns each code without a message and the
  // session must answer as the table says (reply code, default «text», close or not).
  const CODES = ['OK', 'DENY', 'DENYSOFT', 'DENY_DISCONNECT', 'DENYSOFT_DISCONNECT', 'DONE', 'DECLINED'] as const;
  const VALUE: Record<(typeof CODES)[number], number> = { OK, DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, DONE, DECLINED };
  const hook_rows = new Map<string, string[]>();
  {
    const section = md.slice(md.indexOf('## 11. Hook reference'), md.indexOf('## 12.'));
    for (const l of section.split('\n').filter((x) => x.startsWith('| `'))) {
      const cells = l.split('|').slice(1, -1).map((c) => c.trim());
      for (const m of cells[0]!.matchAll(/`([^`]+)`/g)) hook_rows.set(m[1]!, cells.slice(2));
    }
  }
  const MESSAGE = 'Subject: x\r\n\r\nbody\r\n.';
  const PLAIN = 'AUTH PLAIN ' + Buffer.from('\0user@example.test\0secret').toString('base64');
  /** Steps before the command that runs the hook, and that command (none for connect). */
  const DRIVERS: Record<string, { before: string[]; trigger?: string; greeting?: false }> = {
    connect: { before: [], greeting: false },
    helo: { before: [], trigger: 'HELO client.test' },
    ehlo: { before: [], trigger: 'EHLO client.test' },
    'auth-plain': { before: ['EHLO client.test'], trigger: PLAIN },
    auth: { before: ['EHLO client.test'], trigger: PLAIN },
    mail: { before: ['EHLO client.test'], trigger: 'MAIL FROM:<a@sender.test>' },
    rcpt: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>'], trigger: 'RCPT TO:<b@example.test>' },
    data: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<b@example.test>'], trigger: 'DATA' },
    data_headers_end: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<b@example.test>', 'DATA'], trigger: MESSAGE },
    data_post: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<b@example.test>', 'DATA'], trigger: MESSAGE },
    queue_pre: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<b@example.test>', 'DATA'], trigger: MESSAGE },
    queue: { before: ['EHLO client.test', 'MAIL FROM:<a@sender.test>', 'RCPT TO:<b@example.test>', 'DATA'], trigger: MESSAGE },
    vrfy: { before: [], trigger: 'VRFY postmaster' },
    noop: { before: [], trigger: 'NOOP' },
    help: { before: [], trigger: 'HELP' },
    quit: { before: [], trigger: 'QUIT' },
    unrecognized_command: { before: [], trigger: 'FROBNICATE now' },
  };

  /** The cell for `code`, following `as X` references. */
  function cell_for(row: string[], code: (typeof CODES)[number]): string {
    let c = row[CODES.indexOf(code)]!;
    for (let m = /^as (OK|DENY|DENYSOFT|DENY_DISCONNECT|DENYSOFT_DISCONNECT)\b/.exec(c); m; m = /^as (\w+)\b/.exec(c)) {
      c = row[CODES.indexOf(m[1] as (typeof CODES)[number])]!;
    }
    return c;
  }

  it.each(Object.keys(DRIVERS))('the hook table row of %s matches the session', async (hook) => {
    const row = hook_rows.get(hook)!;
    expect(row, `no table row for ${hook}`).toBeDefined();
    const driver = DRIVERS[hook]!;
    for (const code of CODES) {
      const cell = cell_for(row, code);
      if (/^the `auth` hooks decide/.test(cell)) continue;
      // ignored, or on to the queue phase: the queue mock answers 250
      const proceeds = cell === 'ignored' || cell === 'queue phase' || cell === '`queue` hooks run';
      const expected = proceeds ? 250 : Number(/\b([2-5]\d\d)\b/.exec(cell)?.[1] ?? 0);
      const silent = cell.startsWith('—');
      expect(silent || expected > 0, `${hook} ${code}: cannot read "${cell}"`).toBe(true);
      const default_text = /«([^»<]+)»/.exec(cell)?.[1];
      const closes = /\bclose\b/.test(cell) && !/no close/.test(cell);

      const { runtime } = await make_runtime({ me: 'mx.example.test' });
      if (hook !== 'rcpt') mock_hook(runtime, 'rcpt', () => OK, 'accept_rcpt');
      if (hook !== 'queue') mock_hook(runtime, 'queue', () => [OK, 'Queued'], 'accept_queue');
      mock_hook(runtime, hook, () => VALUE[code]);
      const { client, done } = start_session(runtime);
      const where = `${hook} returning ${code} ("${cell}")`;
      if (driver.greeting !== false) expect((await client.reply())!.code, where).toBe(220);
      for (const step of driver.before) expect((await client.cmd(step))!.code, `${where}: ${step}`).toBeLessThan(400);
      if (silent) {
        if (driver.trigger) client.send(driver.trigger + '\r\n');
        // a client waits for the reply the plugin sends itself; pipelining behind EHLO/HELO/DATA
        // before any reply would be a synchronization error (RFC 2920 3.1)
        await new Promise((res) => setTimeout(res, 50));
        if (closes) {
          expect(await client.wait_closed(), where).toBe(true);
          expect(client.pending(), where).toBe('');
        } else {
          expect(await client.cmd('RSET'), where).toMatchObject({ code: 250, text: 'OK' });
        }
      } else {
        const r = driver.trigger ? await client.cmd(driver.trigger) : await client.reply();
        expect(r?.code, where).toBe(expected);
        if (default_text !== undefined) expect(r?.text, where).toBe(default_text);
        if (closes) expect(await client.wait_closed(), where).toBe(true);
        else if (expected === 354) expect((await client.cmd(MESSAGE))?.code, where).toBe(250); // in DATA now
        else if (hook !== 'quit') expect((await client.cmd('RSET'))?.code, where).toBe(250);
      }
      client.end();
      await done;
    }
  });

  it('the hook reference names every hook exactly once', () => {
    const section = md.slice(md.indexOf('## 11. Hook reference'), md.indexOf('## 12.'));
    const named = section
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .flatMap((l) => [...l.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
    expect([...named].sort()).toEqual([...HOOK_NAMES].sort());
  });
});
