// rcpt_regexp: the rule file (qpsmtpd ships no plugin test for it; the cases are its POD
// examples), broken lines, and an SMTP session.
import { describe, expect, it } from 'vitest';
import { Address, Connection, DECLINED, DENY, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface RcptRegexp extends Plugin {
  hook_rcpt(t: unknown, r: Address | undefined): number | [number, string];
}

/** The POD example, plus lines that must be skipped. */
const RULES = [
  '# rcpt_regexp - config for rcpt_regexp plugin',
  'me@myhost.org           OK       Accepting mail',
  '/^user\\d+\\@doma\\.in$/   OK       Accepting mail',
  'info@myhost.com         DENY     User not found.',
  '/^unused\\@.*/           DENY     User not found.',
  '/^(broken@/             DENY     never used',
  'noconstant@myhost.org',
  'nocomment@myhost.org    DENY',
  'badconst@myhost.org     REJECT   never used',
  '/^.*$/                  DECLINED Fall through to next rcpt plugin',
];

async function setup(rules: string[] = RULES, extra: string[] = []) {
  const rt = await make_runtime({
    plugins: ['rcpt_regexp', ...extra],
    rcpt_regexp: rules,
    me: 'mx.example.test',
    rcpthosts: ['myhost.org', 'doma.in'],
    loglevel: '7',
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as RcptRegexp;
  return { ...rt, qp, view };
}

const addr = (s: string) => Address.parse(s);

describe('rcpt_regexp: rules', () => {
  it('the first matching line decides, with its comment', async () => {
    const { view } = await setup();
    expect(view.hook_rcpt(undefined, addr('<me@myhost.org>'))).toEqual([OK, 'Accepting mail']);
    expect(view.hook_rcpt(undefined, addr('<ME@MyHost.ORG>'))).toEqual([OK, 'Accepting mail']);
    expect(view.hook_rcpt(undefined, addr('<User42@Doma.IN>'))).toEqual([OK, 'Accepting mail']);
    expect(view.hook_rcpt(undefined, addr('<info@myhost.com>'))).toEqual([DENY, 'User not found.']);
    expect(view.hook_rcpt(undefined, addr('<unused@anything.test>'))).toEqual([DENY, 'User not found.']);
    expect(view.hook_rcpt(undefined, addr('<nocomment@myhost.org>'))).toBe(DENY);
    expect(view.hook_rcpt(undefined, addr('<other@myhost.org>'))).toEqual([DECLINED, 'Fall through to next rcpt plugin']);
  });

  it('broken lines are logged and skipped, never fatal', async () => {
    const { view, logged } = await setup();
    expect(logged.some((l) => l.includes("rcpt_regexp: REGEXP '^(broken@' not valid"))).toBe(true);
    expect(logged.some((l) => l.includes("rcpt_regexp: rcpt_regexp - no return code in line 'noconstant@myhost.org'"))).toBe(true);
    expect(logged.some((l) => l.includes("rcpt_regexp: rcpt_regexp - 'REJECT' is not a valid constant, ignoring this line"))).toBe(true);
    expect(view.hook_rcpt(undefined, addr('<broken@x.test>'))).toEqual([DECLINED, 'Fall through to next rcpt plugin']);
    expect(view.hook_rcpt(undefined, addr('<noconstant@myhost.org>'))).toEqual([DECLINED, 'Fall through to next rcpt plugin']);
    expect(view.hook_rcpt(undefined, addr('<badconst@myhost.org>'))).toEqual([DECLINED, 'Fall through to next rcpt plugin']);
  });

  it('no rules or no match: DECLINED; host-less recipients are not checked', async () => {
    const { view } = await setup(['/^x@/ DENY no']);
    expect(view.hook_rcpt(undefined, addr('<y@myhost.org>'))).toBe(DECLINED);
    expect(view.hook_rcpt(undefined, addr('<postmaster>'))).toBe(DECLINED);
    const empty = await make_runtime({ plugins: ['rcpt_regexp'] });
    const qp = new Qpsmtpd(empty.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
    expect((qp.plugin_view(empty.runtime.plugins[0]!) as RcptRegexp).hook_rcpt(undefined, addr('<x@myhost.org>'))).toBe(DECLINED);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['rcpt_regexp file x'] })).rejects.toThrow(/plugin rcpt_regexp: unknown argument 'file'/);
  });
});

describe('rcpt_regexp: SMTP session', () => {
  it('OK lines accept, DENY lines refuse, DECLINED falls through to rcpt_ok', async () => {
    const { runtime } = await setup(RULES, ['rcpt_ok']);
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    await client.cmd('MAIL FROM:<a@example.net>');
    expect(await client.cmd('RCPT TO:<user7@doma.in>')).toMatchObject({ code: 250, text: '<user7@doma.in>, recipient ok' });
    expect(await client.cmd('RCPT TO:<unused@myhost.org>')).toMatchObject({ code: 550, text: 'User not found.' });
    expect(await client.cmd('RCPT TO:<nocomment@myhost.org>')).toMatchObject({ code: 550, text: 'relaying denied' });
    expect(await client.cmd('RCPT TO:<someone@myhost.org>')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<someone@elsewhere.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    await client.cmd('QUIT');
    await done;
  });
});
