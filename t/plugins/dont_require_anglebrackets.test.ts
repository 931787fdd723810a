// dont_require_anglebrackets: the mail_pre/rcpt_pre rewrite (qpsmtpd 6.4), t/addresses.t's
// bare-address cases, and an SMTP session.
import { describe, expect, it } from 'vitest';
import { Connection, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface Anglebrackets extends Plugin {
  hook_mail_pre(t: unknown, addr: string): [number, string];
  hook_rcpt_pre(t: unknown, addr: string): [number, string];
}

async function setup() {
  const rt = await make_runtime({
    plugins: ['dont_require_anglebrackets', 'rcpt_ok'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '6',
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Anglebrackets;
  return { ...rt, qp, view };
}

describe('dont_require_anglebrackets: hooks', () => {
  it('wraps a bare MAIL address, lowers karma by 2 and logs it', async () => {
    const { view, qp, logged } = await setup();
    view._hook = 'mail_pre';
    expect(view.hook_mail_pre(qp.transaction, 'ask@perl.org')).toEqual([OK, '<ask@perl.org>']);
    expect(qp.connection.notes('karma')).toBe(-2);
    expect(logged).toContain(`${process.pid} (mail_pre) dont_require_anglebrackets: karma -2 (-2)`);
    expect(logged).toContain(`${process.pid} (mail_pre) dont_require_anglebrackets: fail, added MAIL angle brackets`);
  });

  it('wraps a bare RCPT address with its own log text', async () => {
    const { view, qp, logged } = await setup();
    view._hook = 'rcpt_pre';
    expect(view.hook_rcpt_pre(qp.transaction, 'x@example.test')).toEqual([OK, '<x@example.test>']);
    expect(logged.some((l) => l.endsWith('fail, added RCPT angle brackets'))).toBe(true);
    expect(qp.connection.notes('karma')).toBe(-2);
  });

  it('returns bracketed addresses unchanged, without karma', async () => {
    const { view, qp, logged } = await setup();
    expect(view.hook_mail_pre(qp.transaction, '<ask@perl.org>')).toEqual([OK, '<ask@perl.org>']);
    expect(view.hook_rcpt_pre(qp.transaction, '<>')).toEqual([OK, '<>']);
    expect(qp.connection.notes('karma')).toBeUndefined();
    expect(logged.some((l) => l.includes('angle brackets'))).toBe(false);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['dont_require_anglebrackets yes'] })).rejects.toThrow(/unknown argument 'yes'/);
  });
});

describe('dont_require_anglebrackets: SMTP session (t/addresses.t)', () => {
  it('accepts bare addresses in MAIL and RCPT and formats them with brackets', async () => {
    const { runtime } = await setup();
    const { client, session, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('EHLO client.test'))!.code).toBe(250);
    expect(await client.cmd('MAIL FROM:ask@perl.org')).toMatchObject({ code: 250, text: '<ask@perl.org>, sender OK - how exciting to get mail from you!' });
    expect(await client.cmd('RSET')).toMatchObject({ code: 250 });
    expect(await client.cmd('MAIL FROM:ask@[1.2.3.4]')).toMatchObject({ code: 250, text: '<ask@[1.2.3.4]>, sender OK - how exciting to get mail from you!' });
    expect(await client.cmd('RCPT TO:x@example.test')).toMatchObject({ code: 250, text: '<x@example.test>, recipient ok' });
    expect(await client.cmd('RCPT TO:<y@example.test>')).toMatchObject({ code: 250, text: '<y@example.test>, recipient ok' });
    expect(session.connection.notes('karma')).toBe(-6); // two bare MAIL, one bare RCPT
    expect(session.transaction.recipients().map(String)).toEqual(['<x@example.test>', '<y@example.test>']);
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221 });
    await done;
  });

  it('without the plugin a bare address is refused', async () => {
    const { runtime } = await make_runtime({ plugins: ['rcpt_ok'], me: 'mx.example.test' });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO client.test');
    expect(await client.cmd('MAIL FROM:ask@perl.org')).toMatchObject({ code: 501, text: 'could not parse your mail from command' });
    await client.cmd('QUIT');
    await done;
  });
});
