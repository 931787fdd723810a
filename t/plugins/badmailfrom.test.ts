// badmailfrom: qpsmtpd's t/plugin_tests/badmailfrom as facts, pattern handling, and sessions.
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, DENYSOFT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface BadMailFrom extends Plugin {
  hook_mail(t: unknown, sender: Address | undefined): number | [number, string];
  is_match(from: string, bad: string, host: string): boolean;
  is_immune_sender(sender: Address | undefined | null, list: string[]): boolean;
}

async function setup(badmailfrom: string[] = [], args = '', extra: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({
    plugins: [`badmailfrom ${args}`.trim(), 'rcpt_ok'],
    ...(badmailfrom.length ? { badmailfrom } : {}),
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '7',
    ...extra,
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as BadMailFrom;
  return { ...rt, qp, view };
}

const addr = (s: string) => Address.parse(s);

describe('badmailfrom: qpsmtpd plugin tests', () => {
  it('is_immune_sender', async () => {
    const { view } = await setup();
    expect(view.is_immune_sender(addr('<matt@test.com>'), []), 'empty list').toBe(true);
    expect(view.is_immune_sender(addr('<>'), ['bad@example.com']), 'null sender').toBe(true);
    expect(view.is_immune_sender(addr('<matt@>'), ['bad@example.com']), 'missing host').toBe(true);
    expect(view.is_immune_sender(addr('<@example.com>'), ['bad@example.com']), 'missing user').toBe(true);
    expect(view.is_immune_sender(new Address('matt', undefined), ['bad@example.com']), 'no host').toBe(true);
    expect(view.is_immune_sender(addr('<matt@example.com>'), ['bad@example.com']), 'false').toBe(false);
  });

  it('is_match', async () => {
    const { view } = await setup();
    expect(view.is_match('matt@test.net', 'matt@test.net', 'test.net'), 'match').toBe(true);
    expect(view.is_match('matt@test.net', 'matt@test.com', 'tnpi.net'), 'non-match').toBe(false);
    expect(view.is_match('matt@test.net', '@test.net', 'test.net'), 'match host').toBe(true);
    expect(view.is_match('matt@test.net', '@test.not', 'test.net'), 'non-match host').toBe(false);
    expect(view.is_match('matt@test.net', '@test.net', 'test.not'), 'non-match host').toBe(false);
    expect(view.is_match('matt@test.net', 'test.net$', 'tnpi.net'), 'pattern match').toBe(true);
    expect(view.is_match('matt@test.net', 'test.not$', 'tnpi.net'), 'pattern non-match').toBe(false);
  });

  it('hook_mail: DENY with the default and with a custom reason', async () => {
    const a = await setup(['matt@test.net', 'matt@test.com']);
    const sender = addr('<matt@test.com>')!;
    a.qp.transaction.sender(sender);
    expect(a.view.hook_mail(a.qp.transaction, sender)).toEqual([DENY, 'Your envelope sender is in my badmailfrom list']);
    expect(a.qp.connection.notes('karma')).toBe(-1);
    const b = await setup(['matt@test.net', 'matt@test.com Yer a spammin bastert']);
    expect(b.view.hook_mail(b.qp.transaction, sender)).toEqual([DENY, 'Yer a spammin bastert']);
  });
});

describe('badmailfrom: behaviour', () => {
  it('case-insensitive addresses and hosts; lines without @ are ignored with a warning', async () => {
    const { view, qp, logged } = await setup(['  Matt@Test.COM  with spaces in the reason', '@Spam.Example', 'nobody']);
    expect(view.hook_mail(qp.transaction, addr('<MATT@test.com>'))).toEqual([DENY, 'with spaces in the reason']);
    expect(view.hook_mail(qp.transaction, addr('<x@SPAM.example>'))).toEqual([DENY, 'Your envelope sender is in my badmailfrom list']);
    expect(view.hook_mail(qp.transaction, addr('<nobody@else.example>'))).toBe(DECLINED);
    expect(logged.some((l) => l.endsWith('badmailfrom: badmailfrom: bad config: no @ sign in nobody'))).toBe(true);
  });

  it('patterns match the lower-cased sender; broken patterns are logged, not fatal', async () => {
    const { view, qp, logged } = await setup(['^spam[0-9]+@', '^(broken Reason here', '\\Aexact@x\\.test\\z']);
    expect(logged.some((l) => l.includes("badmailfrom pattern '^(broken' is not a valid regular expression"))).toBe(true);
    expect(view.hook_mail(qp.transaction, addr('<SPAM12@example.net>'))).toEqual([DENY, 'Your envelope sender is in my badmailfrom list']);
    expect(view.hook_mail(qp.transaction, addr('<exact@x.test>'))).toEqual([DENY, 'Your envelope sender is in my badmailfrom list']);
    expect(view.hook_mail(qp.transaction, addr('<notexact@x.test>'))).toBe(DECLINED);
    expect(view.hook_mail(qp.transaction, addr('<fine@example.net>'))).toBe(DECLINED);
  });

  it('skips immune clients and the null sender', async () => {
    const { view, qp } = await setup(['@example.net']);
    qp.connection.relay_client(1);
    expect(view.hook_mail(qp.transaction, addr('<a@example.net>'))).toBe(DECLINED);
    qp.connection.relay_client(0);
    expect(view.hook_mail(qp.transaction, addr('<>'))).toBe(DECLINED);
    expect(view.hook_mail(qp.transaction, addr('<a@example.net>'))).toEqual([DENY, 'Your envelope sender is in my badmailfrom list']);
  });

  it('reject 0 logs, reject naughty defers, reject_type temp answers DENYSOFT', async () => {
    const a = await setup(['@example.net'], 'reject 0');
    expect(a.view.hook_mail(a.qp.transaction, addr('<a@example.net>'))).toBe(DECLINED);
    const b = await setup(['@example.net'], 'reject naughty');
    expect(b.view.hook_mail(b.qp.transaction, addr('<a@example.net>'))).toBe(DECLINED);
    expect(b.qp.connection.notes('naughty')).toBe('(badmailfrom) Your envelope sender is in my badmailfrom list');
    const c = await setup(['@example.net'], 'reject_type temp');
    expect(c.view.hook_mail(c.qp.transaction, addr('<a@example.net>'))).toEqual([DENYSOFT, 'Your envelope sender is in my badmailfrom list']);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['badmailfrom rejct 1'] })).rejects.toThrow(/plugin badmailfrom: unknown argument 'rejct'/);
  });
});

describe('badmailfrom: SMTP session', () => {
  it('550 for a listed sender, 250 for others', async () => {
    const { runtime } = await setup(['badmailexample@microsoft.com', '@www.yahoo.com  yahoo never sends from www']);
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    expect(await client.cmd('MAIL FROM:<someone@www.yahoo.com>')).toMatchObject({ code: 550, text: 'yahoo never sends from www' });
    expect(await client.cmd('MAIL FROM:<BadMailExample@Microsoft.com>')).toMatchObject({ code: 550, text: 'Your envelope sender is in my badmailfrom list' });
    expect(await client.cmd('MAIL FROM:<good@example.net>')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<x@example.test>')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });
});
