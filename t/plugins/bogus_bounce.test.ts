// bogus_bounce: the data_post checks (qpsmtpd ships no plugin test for it), the legacy
// action argument, and SMTP sessions.
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, DENYSOFT, MailHeader, Qpsmtpd, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session, type TestClient } from '../lib/session.js';

interface BogusBounce extends Plugin {
  hook_data_post(t: Transaction): number | [number, string];
}

async function setup(args = '') {
  const rt = await make_runtime({
    plugins: [`bogus_bounce ${args}`.trim(), 'rcpt_ok', 'queue/discard'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '6',
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as BogusBounce;
  return { ...rt, qp, view };
}

function txn(qp: Qpsmtpd, sender: string, rcpts: string[], header = 'Subject: x\n\n'): Transaction {
  const t = qp.transaction;
  t.sender(Address.parse(sender));
  t.recipients(rcpts.map((r) => Address.parse(r)!));
  t.header(MailHeader.parse(header));
  return t;
}

describe('bogus_bounce: data_post', () => {
  it('mail with a sender is not checked', async () => {
    const { view, qp } = await setup('deny');
    expect(view.hook_data_post(txn(qp, '<a@example.net>', ['<x@example.test>', '<y@example.test>']))).toBe(DECLINED);
  });

  it('a bounce to several recipients (or none) is bogus', async () => {
    const { view, qp, logged } = await setup('deny');
    expect(view.hook_data_post(txn(qp, '<>', ['<x@example.test>', '<y@example.test>']))).toEqual([
      DENY,
      'fail, this bounce message does not have 1 recipient',
    ]);
    expect(logged.some((l) => l.endsWith('bogus_bounce: fail, bogus bounce to: <x@example.test>,<y@example.test>'))).toBe(true);
    expect(view.hook_data_post(txn(qp, '<>', []))).toEqual([DENY, 'fail, this bounce message does not have 1 recipient']);
  });

  it('a bounce must not carry a Return-Path other than <>', async () => {
    const { view, qp } = await setup('deny');
    expect(view.hook_data_post(txn(qp, '<>', ['<x@example.test>'], 'Return-Path: <someone@example.net>\nSubject: x\n\n'))).toEqual([
      DENY,
      'a bounce return path must be empty (RFC 3834)',
    ]);
    expect(view.hook_data_post(txn(qp, '<>', ['<x@example.test>'], 'Return-Path: <>\nSubject: x\n\n'))).toBe(DECLINED);
    expect(view.hook_data_post(txn(qp, '<>', ['<x@example.test>']))).toBe(DECLINED);
  });
});

describe('bogus_bounce: arguments', () => {
  const bogus = (qp: Qpsmtpd) => txn(qp, '<>', ['<x@example.test>', '<y@example.test>']);

  it('default and `log`: only logged (reject 0)', async () => {
    for (const args of ['', 'log']) {
      const { view, qp, logged } = await setup(args);
      expect(view.hook_data_post(bogus(qp))).toBe(DECLINED);
      expect(logged.some((l) => l.endsWith('bogus_bounce: fail, tolerated'))).toBe(true);
    }
  });

  it('`deny` denies, `denysoft` denies temporarily (qpsmtpd only logged for both)', async () => {
    const a = await setup('deny');
    expect(a.view.hook_data_post(bogus(a.qp))).toEqual([DENY, 'fail, this bounce message does not have 1 recipient']);
    const b = await setup('denysoft');
    expect(b.view.hook_data_post(bogus(b.qp))).toEqual([DENYSOFT, 'fail, this bounce message does not have 1 recipient']);
  });

  it('reject / reject_type pairs, also after an action', async () => {
    const a = await setup('reject 1 reject_type temp');
    expect(a.view.hook_data_post(bogus(a.qp))).toEqual([DENYSOFT, 'fail, this bounce message does not have 1 recipient']);
    const b = await setup('deny reject 0');
    expect(b.view.hook_data_post(bogus(b.qp))).toBe(DECLINED);
    const c = await setup('reject naughty');
    expect(c.view.hook_data_post(bogus(c.qp))).toBe(DECLINED);
    expect(c.qp.connection.notes('naughty')).toBe('(bogus_bounce) fail, this bounce message does not have 1 recipient');
  });

  it('refuses unknown actions and arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['bogus_bounce reject'] })).rejects.toThrow(/plugin bogus_bounce: unknown action 'reject'/);
    await expect(make_runtime({ plugins: ['bogus_bounce drop'] })).rejects.toThrow(/unknown action 'drop'/);
    await expect(make_runtime({ plugins: ['bogus_bounce reject 1 action_type x'] })).rejects.toThrow(/unknown argument 'action_type'/);
  });
});

async function send(client: TestClient, from: string, rcpts: string[], message: string) {
  expect((await client.cmd(`MAIL FROM:${from}`))!.code).toBe(250);
  for (const r of rcpts) expect((await client.cmd(`RCPT TO:${r}`))!.code).toBe(250);
  expect((await client.cmd('DATA'))!.code).toBe(354);
  return client.cmd(`${message}\r\n.`);
}

describe('bogus_bounce: SMTP session', () => {
  it('deny: 552 for a bogus bounce, 250 for a genuine one', async () => {
    const { runtime } = await setup('deny');
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO client.test');
    expect(await send(client, '<>', ['<x@example.test>', '<y@example.test>'], 'Subject: bounce\r\n\r\nbody')).toMatchObject({
      code: 552,
      text: 'fail, this bounce message does not have 1 recipient',
    });
    expect(await send(client, '<>', ['<x@example.test>'], 'Return-Path: <a@b.test>\r\nSubject: bounce\r\n\r\nbody')).toMatchObject({
      code: 552,
      text: 'a bounce return path must be empty (RFC 3834)',
    });
    expect(await send(client, '<>', ['<x@example.test>'], 'Subject: bounce\r\n\r\nbody')).toMatchObject({ code: 250, text: 'Queued (discarded)' });
    await client.cmd('QUIT');
    await done;
  });

  it('default: a bogus bounce is only logged and delivered', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO client.test');
    expect(await send(client, '<>', ['<x@example.test>', '<y@example.test>'], 'Subject: bounce\r\n\r\nbody')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });
});
