// loop: hop counting at data_post (qpsmtpd ships no plugin test for it), arguments, sessions.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, MailHeader, Qpsmtpd, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface Loop extends Plugin {
  _max_hops: number;
  hook_data_post(t: Transaction): number | [number, string];
}

async function setup(args = '') {
  const rt = await make_runtime({
    plugins: [`loop ${args}`.trim(), 'rcpt_ok', 'queue/discard'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Loop;
  return { ...rt, qp, view };
}

function with_hops(qp: Qpsmtpd, received: number, delivered: number): Transaction {
  const lines = [...Array(received)].map((_, i) => `Received: from h${i}.example\n`);
  lines.push(...[...Array(delivered)].map((_, i) => `Delivered-To: u${i}@example.test\n`));
  qp.transaction.header(MailHeader.parse(lines.join('') + 'Subject: x\n\n'));
  return qp.transaction;
}

describe('loop: data_post', () => {
  it('default limit 100: Received + Delivered-To lines', async () => {
    const { view, qp } = await setup();
    expect(view._max_hops).toBe(100);
    expect(view.hook_data_post(with_hops(qp, 60, 39))).toBe(DECLINED);
    expect(view.hook_data_post(with_hops(qp, 60, 40))).toEqual([DENY, 'Too many hops (#5.4.6)']);
    expect(view.hook_data_post(with_hops(qp, 0, 101))).toEqual([DENY, 'Too many hops (#5.4.6)']);
  });

  it('a custom limit; 0 means the default', async () => {
    const { view, qp } = await setup('3');
    expect(view.hook_data_post(with_hops(qp, 1, 1))).toBe(DECLINED);
    expect(view.hook_data_post(with_hops(qp, 2, 1))).toEqual([DENY, 'Too many hops (#5.4.6)']);
    expect((await setup('0')).view._max_hops).toBe(100);
  });

  it('refuses bad arguments at start-up (qpsmtpd warned and used 100)', async () => {
    await expect(make_runtime({ plugins: ['loop many'] })).rejects.toThrow(/plugin loop: max_hops must be a number, got 'many'/);
    await expect(make_runtime({ plugins: ['loop 5 6'] })).rejects.toThrow(/plugin loop: takes one argument/);
  });
});

describe('loop: SMTP session', () => {
  it('counts our own Received line: 552 at the limit, 250 below it', async () => {
    const { runtime } = await setup('3');
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO client.test');
    const send = async (headers: string) => {
      await client.cmd('MAIL FROM:<a@example.net>');
      await client.cmd('RCPT TO:<x@example.test>');
      expect((await client.cmd('DATA'))!.code).toBe(354);
      return client.cmd(`${headers}Subject: x\r\n\r\nbody\r\n.`);
    };
    expect(await send('Received: from a\r\nDelivered-To: x@example.test\r\n')).toMatchObject({ code: 552, text: 'Too many hops (#5.4.6)' });
    expect(await send('Received: from a\r\n')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });
});
