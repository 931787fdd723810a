// content_log: qpsmtpd's plugin tests (content_log_file, content_log_enabled, exclude) as facts,
// registration, what is appended, failures that never cost a message, and an SMTP session.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DECLINED, MailHeader, OK, type Plugin, type Runtime, type Transaction } from '../../lib/index.js';
import { strftime } from '../../lib/strftime.js';
import { make_runtime, mock_hook, unmock_hook } from '../lib/harness.js';
import { open_session, quit, send_message, temp_dirs, view_of } from '../fixtures/plugins-c/helpers.js';

interface ContentLog extends Plugin {
  content_log_file(): string;
  content_log_enabled(): boolean;
  exclude(): boolean;
  data_post_handler(t: Transaction): Promise<[number, string]>;
}

const tmp = temp_dirs();
const open_transactions: Transaction[] = [];
afterEach(async () => {
  for (const t of open_transactions.splice(0)) await t.cleanup();
  tmp.cleanup();
});

/** Test::Qpsmtpd's mock_config: a `config` hook answering for the given names. */
function mock_config(runtime: Runtime, values: Record<string, string | undefined>): void {
  unmock_config(runtime);
  mock_hook(runtime, 'config', (_t: unknown, name: string) => (name in values ? [OK, ...(values[name] === undefined ? [] : [values[name]])] : DECLINED));
}
function unmock_config(runtime: Runtime): void {
  unmock_hook(runtime, 'config');
}

async function setup(files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: ['content_log'], loglevel: '7', ...files });
  const { qp, view } = view_of<ContentLog>(rt.runtime, 'content_log');
  open_transactions.push(qp.transaction);
  return { ...rt, qp, view };
}

describe('content_log: qpsmtpd plugin tests', () => {
  it('test_content_log_file: default mail/%Y%m%d, and the config changes it', async () => {
    const { view, runtime } = await setup();
    expect(view.content_log_file()).toBe(strftime('mail/%Y%m%d', new Date()));
    mock_config(runtime, { content_log_file: '/path/to/%Y%m%d%H%M' });
    expect(view.content_log_file()).toBe(strftime('/path/to/%Y%m%d%H%M', new Date()));
    unmock_config(runtime);
    expect(view.content_log_file()).toBe(strftime('mail/%Y%m%d', new Date()));
  });

  it('test_content_log_enabled: false from t/config, then each value', async () => {
    const { view, runtime } = await setup({ content_log_enabled: 'false' });
    expect(view.content_log_enabled()).toBe(false);
    const cases: Array<[string | undefined, boolean]> = [
      ['true', true],
      [undefined, true],
      ['1', true],
      ['yes', true],
      ['yes    ', true],
      ['0', false],
      ['false', false],
      ['no', false],
      ['asdf ', false],
      ['YES', true],
      ['True ', true],
      ['yesno', false],
    ];
    for (const [config, expected] of cases) {
      mock_config(runtime, { content_log_enabled: config });
      expect(view.content_log_enabled(), `content_log_enabled=${config}`).toBe(expected);
    }
    unmock_config(runtime);
  });

  it('test_exclude: the default exclude() is false', async () => {
    const { view } = await setup();
    expect(view.exclude()).toBe(false);
  });
});

describe('content_log: registration and writing', () => {
  it('registers its data_post hook only when enabled', async () => {
    const off = await setup({ content_log_enabled: 'no' });
    expect(off.runtime.hooks.get('data_post')).toHaveLength(0);
    const on = await setup();
    expect(on.runtime.hooks.get('data_post').map((e) => e.method)).toEqual(['data_post_handler']);
  });

  it('appends header and body of each message to the strftime-expanded file (mode 0600)', async () => {
    const dir = tmp.make();
    const { view, qp } = await setup({ content_log_file: path.join(dir, 'log-%Y') });
    const file = path.join(dir, strftime('log-%Y', new Date()));
    const t = qp.transaction;
    await t.body_write('Subject: one\nFrom: a@b\n');
    t.header(MailHeader.parse('Subject: one\nFrom: a@b\n'));
    t.set_body_start();
    await t.body_write('\nbody 1\n.dot\n');
    t.header()!.add('Received', 'from x', 0);
    expect(await view.data_post_handler(t)).toEqual([DECLINED, 'successfully saved message.. continuing']);
    expect(await view.data_post_handler(t)).toEqual([DECLINED, 'successfully saved message.. continuing']);
    const one = 'Received: from x\nSubject: one\nFrom: a@b\n\nbody 1\n.dot\n';
    expect(readFileSync(file, 'latin1')).toBe(one + one);
    const { statSync } = await import('node:fs');
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('a file that cannot be opened: DECLINED, "Could not open log file.. continuing anyway"', async () => {
    const dir = tmp.make();
    const { view, qp, logged } = await setup({ content_log_file: path.join(dir, 'missing-dir', 'log') });
    await qp.transaction.body_write('x\n');
    expect(await view.data_post_handler(qp.transaction)).toEqual([DECLINED, 'Could not open log file.. continuing anyway']);
    expect(logged.some((l) => /could not open .*missing-dir\/log: ENOENT/.test(l))).toBe(true);
  });

  it('exclude() → "excluded from content logging", nothing written', async () => {
    const dir = tmp.make();
    const { view, qp } = await setup({ content_log_file: path.join(dir, 'log') });
    (view as unknown as { exclude: () => boolean }).exclude = () => true;
    expect(await view.data_post_handler(qp.transaction)).toEqual([DECLINED, 'excluded from content logging']);
    expect(existsSync(path.join(dir, 'log'))).toBe(false);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(setup({ plugins: ['content_log /var/log/mail'] })).rejects.toThrow(/plugin content_log: unknown argument '\/var\/log\/mail'/);
  });
});

describe('content_log: SMTP sessions', () => {
  it('logs every queued message (concurrent sessions do not interleave) and never rejects', async () => {
    const dir = tmp.make();
    const { runtime } = await make_runtime({
      plugins: ['content_log', 'rcpt_ok', 'queue/discard'],
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
      content_log_file: path.join(dir, 'mail-%Y%m%d'),
    });
    const file = path.join(dir, strftime('mail-%Y%m%d', new Date()));
    const big = 'x'.repeat(900);
    const body = (n: number) => ['From: a@b.test', `Subject: ${n}`, '', ...Array.from({ length: 300 }, (_, i) => `${n}:${i} ${big}`)];
    const a = await open_session(runtime);
    const b = await open_session(runtime);
    const [ra, rb] = await Promise.all([
      send_message(a.client, '<a@b.test>', ['<x@example.test>'], body(1)),
      send_message(b.client, '<a@b.test>', ['<x@example.test>'], body(2)),
    ]);
    expect(ra.code).toBe(250);
    expect(rb.code).toBe(250);
    await quit(a);
    await quit(b);
    const text = readFileSync(file, 'latin1');
    const subjects = [...text.matchAll(/^Subject: (\d)$/gm)].map((m) => m[1]);
    expect(subjects.sort()).toEqual(['1', '2']);
    // each message is contiguous: its 300 body lines follow its own Subject
    for (const n of ['1', '2']) {
      const start = text.indexOf(`Subject: ${n}\n`);
      const chunk = text.slice(start, start + 400 * 1000);
      const lines = chunk.split('\n').slice(2, 302);
      expect(lines.every((l, i) => l === `${n}:${i} ${big}`)).toBe(true);
    }
    expect(text).toMatch(/^Authentication-Results: mx\.example\.test; auth=none\nReceived: from Unknown \(HELO client\.test\)/);
  });

  it('an unwritable log does not stop the mail', async () => {
    const dir = tmp.make();
    mkdirSync(path.join(dir, 'ro'));
    writeFileSync(path.join(dir, 'ro', 'file'), '');
    const { runtime } = await make_runtime({
      plugins: ['content_log', 'rcpt_ok', 'queue/discard'],
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
      content_log_file: path.join(dir, 'ro', 'file', 'sub'), // a file as directory: ENOTDIR
    });
    const s = await open_session(runtime);
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).code).toBe(250);
    await quit(s);
  });
});
