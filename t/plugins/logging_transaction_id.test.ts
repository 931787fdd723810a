// logging/transaction_id: lines start with `<connection id>.<n>`, n counting the connection's
// transactions (qpsmtpd's copy died in register; this one works).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DECLINED, LOGINFO, LOGWARN, type Plugin } from '../../lib/index.js';
import { make_runtime, mock_hook, stderr_lines } from '../lib/harness.js';
import { open_session, quit, send_message, view_of } from '../fixtures/plugins-c/helpers.js';

const pid = process.pid;

afterEach(() => {
  vi.restoreAllMocks();
});

async function setup(line = 'logging/transaction_id LOGINFO', plugins: string[] = ['rcpt_ok', 'queue/discard']) {
  return make_runtime({ logging: [line], plugins, me: 'mx.example.test', rcpthosts: ['example.test'] });
}

describe('logging/transaction_id', () => {
  it('level argument as logging/connection_id; lines outside a session carry the pid', async () => {
    const err = stderr_lines();
    const { runtime } = await setup('logging/transaction_id', []);
    expect(view_of<Plugin & { _level: number }>(runtime, 'logging::transaction_id').view._level).toBe(LOGWARN);
    runtime.server_qp.varlog(LOGWARN, 'data_post', 'x', 'hello');
    expect(err).toEqual([`${pid} x plugin: hello`]);
    await expect(setup('logging/transaction_id loud')).rejects.toThrow(/invalid log level 'loud'/);
  });

  it('a session: .1 until the first MAIL, a new number for every transaction after (MAIL, RSET, queue)', async () => {
    const { runtime } = await setup();
    const err = stderr_lines();
    mock_hook(runtime, 'connect', function (this: Plugin) {
      this.connection.notes('id', 'C');
      return DECLINED;
    });
    const s = await open_session(runtime);
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: 1', '', 'b'])).code).toBe(250);
    expect((await s.client.cmd('RSET'))!.code).toBe(250);
    expect((await send_message(s.client, '<c@d.test>', ['<y@example.test>'], ['Subject: 2', '', 'b'])).code).toBe(250);
    expect(s.session.connection.notes('transaction_count')).toBe(6);
    await quit(s);
    // the first line comes before any connect hook: it has the id this plugin made
    expect(err[0]).toMatch(/^\d+\.\d{6}\.\d+\.\d+\.1 Connection from Unknown \[127\.0\.0\.1\]$/);
    expect(err).toContain('C.1 dispatching EHLO client.test');
    expect(err).toContain('C.1 dispatching MAIL FROM:<a@b.test>');
    expect(err).toContain('C.2 250 <a@b.test>, sender OK - how exciting to get mail from you!'); // MAIL started a new one
    expect(err).toContain('C.2 rcpt_ok plugin: pass: example.test in rcpthosts');
    expect(err).toContain('C.3 250 Queued (discarded)'); // reset before the queue reply
    expect(err).toContain('C.3 dispatching RSET');
    expect(err).toContain('C.4 250 OK'); // RSET's reply
    expect(err).toContain('C.4 dispatching MAIL FROM:<c@d.test>');
    expect(err).toContain('C.5 dispatching DATA');
    expect(err).toContain('C.6 250 Queued (discarded)');
    expect(err.slice(1).every((l) => /^C\.\d+ /.test(l))).toBe(true);
  });

  it('without an id from elsewhere, the connection id is made at connect; connections count separately', async () => {
    const err = stderr_lines();
    const { runtime } = await setup();
    const a = await open_session(runtime);
    const ida = a.session.connection.notes('id');
    await quit(a);
    const b = await open_session(runtime);
    const idb = b.session.connection.notes('id');
    await quit(b);
    expect(ida).toBeDefined();
    expect(ida).not.toBe(idb);
    expect(err).toContain(`${ida}.1 dispatching EHLO client.test`);
    expect(err).toContain(`${idb}.1 dispatching EHLO client.test`);
    expect(err.filter((l) => l.includes('dispatching')).every((l) => l.startsWith(`${ida}.1 `) || l.startsWith(`${idb}.1 `))).toBe(true);
  });

  it('the transaction keeps its id in the note transaction_id', async () => {
    stderr_lines();
    const { runtime } = await setup();
    const { view, qp } = view_of<Plugin & { transaction_id(t: unknown): string }>(runtime, 'logging::transaction_id');
    qp.connection.notes('id', 'X');
    expect(view.transaction_id(qp.transaction)).toBe('X.1');
    expect(view.transaction_id(qp.transaction)).toBe('X.1');
    expect(qp.transaction.notes('transaction_id')).toBe('X.1');
    await qp.reset_transaction();
    expect(view.transaction_id(qp.transaction)).toBe('X.2');
    expect(LOGINFO).toBe(6);
  });
});
