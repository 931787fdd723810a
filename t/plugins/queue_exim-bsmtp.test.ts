// queue/exim-bsmtp with a fake rsmtp (t/fixtures/plugins-c/rsmtp-capture): the BSMTP batch it is
// fed (dot-stuffing), exim's replies mapped to 552/452/451, the temp file's life, and sessions.
import { hostname } from 'node:os';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DECLINED, DENY, DENYSOFT, OK, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { executable, fill_transaction, open_session, quit, send_message, temp_dirs, view_of } from '../fixtures/plugins-c/helpers.js';

interface Exim extends Plugin {
  _exim_path: string;
  hook_queue(t: Transaction): Promise<number | [number, string]>;
}

let RSMTP = '';
beforeAll(() => {
  [RSMTP] = executable('rsmtp-capture');
});

const tmp = temp_dirs();
const transactions: Transaction[] = [];
afterEach(async () => {
  delete process.env.RSMTP_CAPTURE;
  delete process.env.RSMTP_MODE;
  for (const t of transactions.splice(0)) await t.cleanup();
  tmp.cleanup();
});

function capture(mode?: string): string {
  const f = path.join(tmp.make(), 'bsmtp');
  process.env.RSMTP_CAPTURE = f;
  if (mode) process.env.RSMTP_MODE = mode;
  return f;
}

async function setup(line = `queue/exim-bsmtp exim_path ${RSMTP}`, files: Record<string, string | string[]> = {}) {
  const spool = tmp.make('qpts-exim-spool-');
  const rt = await make_runtime({ plugins: ['rcpt_ok', line], me: 'mx.example.test', rcpthosts: ['example.test'], loglevel: '7', spool_dir: spool, ...files });
  const { qp, view } = view_of<Exim>(rt.runtime, 'queue::exim_2dbsmtp');
  transactions.push(qp.transaction);
  return { ...rt, qp, view, spool };
}

async function envelope(qp: { transaction: Transaction; address(s: string): unknown }, from = '<a@b.test>', to = ['<x@example.test>', '<y@example.test>']) {
  const t = qp.transaction;
  t.sender(qp.address(from) as never);
  for (const r of to) t.add_recipient(qp.address(r) as never);
  return t;
}

describe('queue/exim-bsmtp: the BSMTP batch', () => {
  it('HELO, MAIL, RCPTs, DATA, dot-stuffed message, ".", QUIT → OK "Queued!"; the file is removed', async () => {
    const cap = capture();
    const { view, qp, spool } = await setup();
    const t = await envelope(qp);
    await fill_transaction(t, 'Subject: hi\n', '\n.leading\n..two\n.\nlast line\n');
    expect(await view.hook_queue(t)).toEqual([OK, 'Queued!']);
    expect(readFileSync(cap, 'latin1')).toBe(
      `HELO ${hostname()}\nMAIL FROM:<a@b.test>\nRCPT TO:<x@example.test>\nRCPT TO:<y@example.test>\nDATA\n` +
        'Subject: hi\n\n..leading\n...two\n..\nlast line\n.\nQUIT\n',
    );
    expect(readdirSync(spool).filter((f) => f.startsWith('exim-bsmtp.'))).toEqual([]);
  });

  it('null sender; a message without a final newline still ends with "\\n.\\n"', async () => {
    const cap = capture();
    const { view, qp } = await setup();
    const t = await envelope(qp, '<>', ['<x@example.test>']);
    await fill_transaction(t, 'Subject: hi\n', '\nno newline');
    expect(await view.hook_queue(t)).toEqual([OK, 'Queued!']);
    expect(readFileSync(cap, 'latin1')).toMatch(/\nMAIL FROM:<>\n[\s\S]*\nno newline\n\.\nQUIT\n$/);
  });

  it('the batch file is mode 0600 in the spool dir, named exim-bsmtp.<pid>.*', async () => {
    const { view, qp, spool } = await setup();
    const t = await envelope(qp);
    await fill_transaction(t, 'Subject: hi\n', '\nb\n');
    const { statSync } = await import('node:fs');
    const file = await (view as unknown as { write_bsmtp(t: Transaction, s?: AbortSignal): Promise<string> }).write_bsmtp(t, undefined);
    expect(path.dirname(file) + '/').toBe(spool.endsWith('/') ? spool : spool + '/');
    expect(path.basename(file)).toMatch(new RegExp(`^exim-bsmtp\\.${process.pid}\\.[0-9a-f]+$`));
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('queue/exim-bsmtp: exim replies', () => {
  it('a 5xx line → DENY with its text; a 4xx line → DENYSOFT (qpsmtpd: DENY for both)', async () => {
    const { view, qp } = await setup();
    const t = await envelope(qp);
    await fill_transaction(t, 'Subject: hi\n', '\nb\n');
    capture('reject');
    expect(await view.hook_queue(t)).toEqual([DENY, '5.7.1 Message rejected by local policy']);
    capture('defer');
    expect(await view.hook_queue(t)).toEqual([DENYSOFT, '4.3.0 Temporary local problem - please try later']);
  });

  it('a silent failure, odd output, or an exim that cannot run → DECLINED "Internal error enqueuing mail"', async () => {
    const { view, qp, logged } = await setup();
    const t = await envelope(qp);
    await fill_transaction(t, 'Subject: hi\n', '\nb\n');
    capture('crash');
    expect(await view.hook_queue(t)).toEqual([DECLINED, 'Internal error enqueuing mail']);
    expect(logged.some((l) => l.endsWith(`BSMTP enqueue failed; exitcode 2 from ${RSMTP} -bS`))).toBe(true);
    capture('odd');
    expect(await view.hook_queue(t)).toEqual([DECLINED, 'Internal error enqueuing mail']);
    const missing = await setup('queue/exim-bsmtp exim_path /nonexistent/rsmtp');
    expect(missing.logged.some((l) => l.endsWith('Could not find exim at /nonexistent/rsmtp; please set exim_path in config/plugins'))).toBe(true);
    const t2 = await envelope(missing.qp);
    await fill_transaction(t2, 'Subject: hi\n', '\nb\n');
    expect(await missing.view.hook_queue(t2)).toEqual([DECLINED, 'Internal error enqueuing mail']);
  });

  it('no header → DENY "Mail unqueuable"', async () => {
    const { view, qp } = await setup();
    expect(await view.hook_queue(qp.transaction)).toEqual([DENY, 'Mail unqueuable']);
  });
});

describe('queue/exim-bsmtp: arguments', () => {
  it('exim_path defaults to /usr/sbin/rsmtp; unknown arguments stop the start-up', async () => {
    const { view } = await setup('queue/exim-bsmtp');
    expect(view._exim_path).toBe('/usr/sbin/rsmtp');
    await expect(setup('queue/exim-bsmtp exim /usr/sbin/exim4')).rejects.toThrow(/plugin queue::exim_2dbsmtp: unknown argument 'exim'/);
  });
});

describe('queue/exim-bsmtp: SMTP sessions', () => {
  it('accepted by exim → 250 Queued!; refused → 552 with exim\'s text; deferred → 452', async () => {
    const cap = capture();
    const { runtime } = await setup();
    const s = await open_session(runtime);
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', '.dot line', 'end'])).toMatchObject({ code: 250, text: 'Queued!' });
    const batch = readFileSync(cap, 'latin1');
    expect(batch).toMatch(/\nDATA\nAuthentication-Results: mx\.example\.test; auth=none\nReceived: from Unknown/);
    expect(batch.endsWith('\nSubject: s\n\n..dot line\nend\n.\nQUIT\n')).toBe(true);
    process.env.RSMTP_MODE = 'reject';
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).toMatchObject({
      code: 552,
      text: '5.7.1 Message rejected by local policy',
    });
    process.env.RSMTP_MODE = 'defer';
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).toMatchObject({
      code: 452,
      text: '4.3.0 Temporary local problem - please try later',
    });
    await quit(s);
    expect(existsSync(cap)).toBe(true);
  });
});
