// badmailfromto: qpsmtpd's t/plugin_tests/badmailfromto as facts, the sender/recipient pair
// logic, and an SMTP session.
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface BadMailFromTo extends Plugin {
  hook_mail(t: unknown, sender: Address | undefined): number;
  hook_rcpt(t: unknown, rcpt: Address | undefined): number | [number, string];
  is_sender_immune(sender: Address | undefined | null, list: string[]): boolean;
}

const LIST = ['bad@example.com   victim@example.test', 'Bad@Example.com  Other@Example.Test', '@spam.example  boss@example.test', 'noatsign  x@example.test'];

async function setup(badmailfromto: string[] = LIST) {
  const rt = await make_runtime({
    plugins: ['badmailfromto', 'rcpt_ok'],
    ...(badmailfromto.length ? { badmailfromto } : {}),
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '7',
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as BadMailFromTo;
  return { ...rt, qp, view };
}

const addr = (s: string) => Address.parse(s);

describe('badmailfromto: qpsmtpd plugin tests', () => {
  it('is_sender_immune', async () => {
    const { view } = await setup();
    expect(view.is_sender_immune(addr('<matt@test.com>'), []), 'empty list').toBe(true);
    expect(view.is_sender_immune(addr('<>'), ['bad@example.com']), 'null sender').toBe(true);
    expect(view.is_sender_immune(addr('<matt@>'), ['bad@example.com']), 'missing host').toBe(true);
    expect(view.is_sender_immune(addr('<@example.com>'), ['bad@example.com']), 'missing user').toBe(true);
    expect(view.is_sender_immune(addr('<matt@example.com>'), ['bad@example.com']), 'false').toBe(false);
  });
});

describe('badmailfromto: pairs', () => {
  it('a listed sender is remembered at MAIL; only its listed recipients are refused', async () => {
    const { view, qp, logged } = await setup();
    const t = qp.transaction;
    expect(view.hook_mail(t, addr('<BAD@example.com>'))).toBe(DECLINED);
    expect(t.notes('badmailfromto')).toBe('bad@example.com');
    expect(logged.some((l) => l.endsWith('badmailfromto: bad config, no @ sign in noatsign'))).toBe(true);
    expect(view.hook_rcpt(t, addr('<Victim@Example.TEST>'))).toEqual([DENY, 'mail to victim@example.test not accepted here']);
    expect(view.hook_rcpt(t, addr('<other@example.test>'))).toEqual([DENY, 'mail to other@example.test not accepted here']);
    expect(view.hook_rcpt(t, addr('<boss@example.test>'))).toBe(DECLINED);
    expect(view.hook_rcpt(t, addr('<postmaster>'))).toBe(DECLINED);
  });

  it('@host entries name a whole sender domain', async () => {
    const { view, qp } = await setup();
    const t = qp.transaction;
    expect(view.hook_mail(t, addr('<anyone@SPAM.example>'))).toBe(DECLINED);
    expect(t.notes('badmailfromto')).toBe('@spam.example');
    expect(view.hook_rcpt(t, addr('<boss@example.test>'))).toEqual([DENY, 'mail to boss@example.test not accepted here']);
    expect(view.hook_rcpt(t, addr('<victim@example.test>'))).toBe(DECLINED);
  });

  it('unlisted and null senders are not remembered', async () => {
    const { view, qp } = await setup();
    const t = qp.transaction;
    expect(view.hook_mail(t, addr('<good@example.com>'))).toBe(DECLINED);
    expect(view.hook_mail(t, addr('<>'))).toBe(DECLINED);
    expect(t.notes('badmailfromto')).toBeUndefined();
    expect(view.hook_rcpt(t, addr('<victim@example.test>'))).toBe(DECLINED);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['badmailfromto reject 1'] })).rejects.toThrow(/plugin badmailfromto: unknown argument 'reject'/);
  });
});

describe('badmailfromto: SMTP session', () => {
  it('refuses the pair, accepts other recipients, forgets the sender after RSET', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    expect((await client.cmd('MAIL FROM:<bad@example.com>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<victim@example.test>')).toMatchObject({ code: 550, text: 'mail to victim@example.test not accepted here' });
    expect(await client.cmd('RCPT TO:<boss@example.test>')).toMatchObject({ code: 250 });
    expect((await client.cmd('RSET'))!.code).toBe(250);
    expect((await client.cmd('MAIL FROM:<good@example.com>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<victim@example.test>')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });
});
