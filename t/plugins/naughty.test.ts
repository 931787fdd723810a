// naughty: the hook chosen by `reject`, the data_post safety net, the stored reject type.
// (qpsmtpd has no plugin test for it.)
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { PLUGIN_DIR, REPO, make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

const FIX = path.join(REPO, 't', 'fixtures', 'plugins-a');

interface Naughty extends Plugin {
  naughty(): number | [number, ...string[]];
}

async function setup(line = 'naughty', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', plugin_dirs: [PLUGIN_DIR, FIX], ...files });
  const plugin = rt.runtime.plugins.find((p) => p.plugin_name() === 'naughty') as Naughty;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as Naughty;
  return { ...rt, plugin, qp, view };
}

const methods = (rt: { runtime: { hooks: { names(): string[]; get(h: string): readonly { name: string }[] } } }) =>
  rt.runtime.hooks
    .names()
    .filter((h) => rt.runtime.hooks.get(h).some((e) => e.name === 'naughty'))
    .sort();

describe('naughty: registration', () => {
  it('default reject rcpt: rcpt plus the data_post safety net', async () => {
    const rt = await setup();
    expect(methods(rt)).toEqual(['data_post', 'rcpt']);
    expect(rt.plugin._args).toMatchObject({ reject: 'rcpt', reject_type: 'disconnect' });
  });

  it('reject connect|mail|data (any case) adds that hook; data_post alone once', async () => {
    expect(methods(await setup('naughty reject connect'))).toEqual(['connect', 'data_post']);
    expect(methods(await setup('naughty reject MAIL'))).toEqual(['data_post', 'mail']);
    expect(methods(await setup('naughty reject data'))).toEqual(['data', 'data_post']);
    const dp = await setup('naughty reject data_post');
    expect(dp.runtime.hooks.get('data_post').length).toBe(1);
  });

  it('an invalid reject hook is logged and leaves only data_post', async () => {
    const rt = await setup('naughty reject helo', { loglevel: '3' });
    expect(methods(rt)).toEqual(['data_post']);
    expect(rt.logged.some((l) => l.endsWith('naughty: fail, invalid hook helo'))).toBe(true);
  });

  it('reject hook_queue_post is not a hook (qpsmtpd dies too); unknown arguments are refused', async () => {
    await expect(setup('naughty reject hook_queue_post')).rejects.toThrow(/not a valid hook/);
    await expect(setup('naughty when rcpt')).rejects.toThrow(/naughty: unknown argument 'when'/);
  });
});

describe('naughty: the decision', () => {
  it('no note: DECLINED; a note: the stored text with the stored reject type, else its own', async () => {
    const { view, qp } = await setup();
    expect(view.naughty()).toBe(DECLINED);
    qp.connection.notes('naughty', '(dnsbl) listed');
    expect(view.naughty()).toEqual([DENY_DISCONNECT, '(dnsbl) listed']);
    qp.connection.notes('naughty_reject_type', 'temp');
    expect(view.naughty()).toEqual([DENYSOFT, '(dnsbl) listed']);
    qp.connection.notes('naughty_reject_type', 'perm');
    expect(view.naughty()).toEqual([DENY, '(dnsbl) listed']);

    const own = await setup('naughty reject_type temp');
    own.qp.connection.notes('naughty', 'x');
    expect(own.view.naughty()).toEqual([DENYSOFT, 'x']);
  });

  it('several deferred rejections (joined with CRLF) become one reply line each', async () => {
    const { view, qp } = await setup();
    qp.connection.notes('naughty', '(a) first\r\n(b) second');
    expect(view.naughty()).toEqual([DENY_DISCONNECT, '(a) first', '(b) second']);
  });
});

describe('naughty: SMTP sessions', () => {
  it('a connection flagged at connect is refused at RCPT with 550 and disconnected', async () => {
    const { runtime } = await setup('x', { plugins: ['test_defer connect listed_in_a_blocklist', 'naughty', 'rcpt_ok'], rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('HELO client.test'))!.code).toBe(250);
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<u@example.test>')).toMatchObject({ code: 550, text: '(test_defer) listed_in_a_blocklist' });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('a clean connection passes', async () => {
    const { runtime } = await setup('x', { plugins: ['naughty', 'rcpt_ok'], rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    expect(await client.cmd('RCPT TO:<u@example.test>')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });

  it('the stored reject type wins: temp from the flagging plugin → 450 at MAIL, session goes on', async () => {
    const { runtime } = await setup('x', { plugins: ['test_defer connect try_later temp', 'naughty reject mail'] });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 450, text: '(test_defer) try_later' });
    expect((await client.cmd('NOOP'))!.code).toBe(250);
    await client.cmd('QUIT');
    await done;
  });

  it('data_post safety net: rcpt_ok accepted first, naughty refuses the message with 552', async () => {
    const { runtime } = await setup('x', { plugins: ['test_defer mail bad_sender', 'rcpt_ok', 'naughty'], rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await client.cmd('RCPT TO:<u@example.test>'))!.code).toBe(250); // rcpt_ok's OK ends the hook
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect(await client.cmd('Subject: x\r\n\r\nhello\r\n.')).toMatchObject({ code: 552, text: '(test_defer) bad_sender' });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('reject connect: flagged clients never get the greeting', async () => {
    const { runtime } = await setup('x', { plugins: ['test_defer connect go_away', 'naughty reject connect'] });
    const { client, done } = start_session(runtime);
    expect(await client.reply()).toMatchObject({ code: 550, text: '(test_defer) go_away' });
    await done;
  });
});
