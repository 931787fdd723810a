// badrcptto: qpsmtpd's t/plugin_tests/badrcptto as facts (with its t/config/badrcptto),
// pattern handling, and an SMTP session.
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface BadRcptTo extends Plugin {
  hook_rcpt(t: unknown, rcpt: Address | undefined): number | [number, string];
  is_match(to: string, bad: string, host: string): boolean;
  get_host_and_to(r: Address | undefined | null): [string, string] | undefined;
}

/** qpsmtpd's t/config/badrcptto */
const T_CONFIG = [
  '######## entries used for testing ###',
  'bad@example.com',
  '@bad.example.com',
  '########    Example patterns   #######',
  '# Format is pattern\\s+Response',
  "# Don't forget to anchor the pattern if required",
  '!       Sorry, bang paths not accepted here',
  '@.*@    Sorry, multiple at signs not accepted here',
  '%       Sorry, percent hack not accepted here ',
];

async function setup(badrcptto: string[] = T_CONFIG) {
  const rt = await make_runtime({
    plugins: ['badrcptto', 'rcpt_ok'],
    ...(badrcptto.length ? { badrcptto } : {}),
    me: 'mx.example.test',
    rcpthosts: ['example.com', 'example.test'],
    loglevel: '7',
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as BadRcptTo;
  return { ...rt, qp, view };
}

const addr = (s: string) => Address.parse(s);

describe('badrcptto: qpsmtpd plugin tests', () => {
  it('is_match', async () => {
    const { view } = await setup();
    expect(view.is_match('matt@example.com', 'matt@example.com', 'example.com'), 'match').toBe(true);
    expect(view.is_match('matt@exAmple.com', 'matt@example.com', 'tnpi.com'), 'case insensitive match').toBe(true);
    expect(view.is_match('mAtt@example.com', 'matt@example.com', 'tnpi.com'), 'case insensitive match +').toBe(true);
    expect(view.is_match('matt@exmple.com', 'matt@example.com', 'tnpi.com'), 'non-match').toBe(false);
    expect(view.is_match('matt@example.com', 'matt@exAple.com', 'tnpi.com'), 'case insensitive non-match').toBe(false);
    expect(view.is_match('matt@example.com', '@example.com', 'example.com'), 'match host').toBe(true);
    expect(view.is_match('matt@example.com', '@example.not', 'example.com'), 'non-match host').toBe(false);
    expect(view.is_match('matt@example.com', '@example.com', 'example.not'), 'non-match host').toBe(false);
    expect(view.is_match('matt@example.com', 'example.com$', 'tnpi.com'), 'pattern match').toBe(true);
    expect(view.is_match('matt@example.com', 'example.not$', 'tnpi.com'), 'pattern non-match').toBe(false);
  });

  it('hook_rcpt', async () => {
    const { view, qp } = await setup();
    const t = qp.transaction;
    expect(view.hook_rcpt(t, addr('<user@example.com>')), 'valid').toBe(DECLINED);
    expect(view.hook_rcpt(t, addr('<bad@example.com>'))).toEqual([DENY, 'mail to bad@example.com not accepted here (#5.1.1)']);
    expect(view.hook_rcpt(t, addr('<any@bad.example.com>'))).toEqual([DENY, 'mail to @bad.example.com not accepted here (#5.1.1)']);
    expect(qp.connection.notes('karma')).toBe(-4);
  });

  it('get_host_and_to', async () => {
    const { view } = await setup();
    expect(view.get_host_and_to(addr('<>')), 'null recipient').toBeUndefined();
    expect(addr('<user>')).toBeUndefined();
    expect(view.get_host_and_to(addr('<user>')), 'missing host').toBeUndefined();
    expect(view.get_host_and_to(addr('<user@example.com>'))).toEqual(['example.com', 'user@example.com']);
    expect(view.get_host_and_to(addr('<uSer@exaMple.com>')), 'case normalized').toEqual(['example.com', 'user@example.com']);
  });
});

describe('badrcptto: patterns and reasons', () => {
  it('the example patterns of t/config/badrcptto', async () => {
    const { view, qp } = await setup();
    const t = qp.transaction;
    expect(view.hook_rcpt(t, addr('<a!b@example.com>'))).toEqual([DENY, 'Sorry, bang paths not accepted here']);
    expect(view.hook_rcpt(t, addr('<a%b@example.com>'))).toEqual([DENY, 'Sorry, percent hack not accepted here']);
    expect(view.hook_rcpt(t, addr('<"a@b"@example.com>'))).toEqual([DENY, 'Sorry, multiple at signs not accepted here']);
  });

  it('patterns match case-insensitively and keep their case (\\D stays \\D)', async () => {
    const { view, qp, logged } = await setup(['^\\D+@numbers\\.test$ letters only here', '^user[0-9]+@', '^(broken@']);
    const t = qp.transaction;
    expect(logged.some((l) => l.includes("badrcptto pattern '^(broken@' is not a valid regular expression"))).toBe(true);
    expect(view.hook_rcpt(t, addr('<abc@numbers.test>'))).toEqual([DENY, 'letters only here']);
    expect(view.hook_rcpt(t, addr('<a1c@numbers.test>'))).toBe(DECLINED);
    expect(view.hook_rcpt(t, addr('<USER12@example.com>'))).toEqual([DENY, 'mail to ^user[0-9]+@ not accepted here (#5.1.1)']);
  });

  it('skips immune clients and empty lists', async () => {
    const { view, qp } = await setup();
    qp.connection.notes('whitelisthost', 1);
    expect(view.hook_rcpt(qp.transaction, addr('<bad@example.com>'))).toBe(DECLINED);
    const empty = await setup([]);
    expect(empty.view.hook_rcpt(empty.qp.transaction, addr('<bad@example.com>'))).toBe(DECLINED);
    expect(empty.logged.some((l) => l.endsWith('badrcptto: skip, empty config'))).toBe(true);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['badrcptto reject 0'] })).rejects.toThrow(/plugin badrcptto: unknown argument 'reject'/);
  });
});

describe('badrcptto: SMTP session', () => {
  it('550 for listed recipients, 250 for others', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    await client.cmd('MAIL FROM:<a@example.net>');
    expect(await client.cmd('RCPT TO:<Bad@Example.com>')).toMatchObject({ code: 550, text: 'mail to bad@example.com not accepted here (#5.1.1)' });
    expect(await client.cmd('RCPT TO:<x@BAD.example.com>')).toMatchObject({ code: 550, text: 'mail to @bad.example.com not accepted here (#5.1.1)' });
    expect(await client.cmd('RCPT TO:<a!b@example.com>')).toMatchObject({ code: 550, text: 'Sorry, bang paths not accepted here' });
    expect(await client.cmd('RCPT TO:<good@example.com>')).toMatchObject({ code: 250, text: '<good@example.com>, recipient ok' });
    await client.cmd('QUIT');
    await done;
  });
});
