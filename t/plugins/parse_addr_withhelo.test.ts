// parse_addr_withhelo: the strict RFC 821 parser for HELO sessions (qpsmtpd has no plugin
// test for it; these are the cases of its code and POD), and SMTP sessions.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, OK, Qpsmtpd, type ParserFn, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface WithHelo extends Plugin {
  hook_mail_parse(t: unknown): number | [number, ParserFn];
  hook_rcpt_parse(t: unknown): number | [number, ParserFn];
  _parse(cmd: string, line: string): [number, string];
}

async function setup(plugins: string[] = ['parse_addr_withhelo', 'rcpt_ok']) {
  const rt = await make_runtime({ plugins, me: 'mx.example.test', rcpthosts: ['example.test'] });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as WithHelo;
  return { ...rt, qp, view };
}

describe('parse_addr_withhelo: hooks', () => {
  it('supplies a parser only after HELO', async () => {
    const { view, qp } = await setup();
    expect(view.hook_mail_parse(qp.transaction)).toBe(DECLINED);
    qp.connection.hello('ehlo');
    expect(view.hook_mail_parse(qp.transaction)).toBe(DECLINED);
    expect(view.hook_rcpt_parse(qp.transaction)).toBe(DECLINED);
    qp.connection.hello('helo');
    const r = view.hook_mail_parse(qp.transaction) as [number, ParserFn];
    expect(r[0]).toBe(OK);
    expect(r[1]({}, 'mail', 'FROM:<a@b.test>')).toEqual([OK, '<a@b.test>']);
    const r2 = view.hook_rcpt_parse(qp.transaction) as [number, ParserFn];
    expect(r2[1]({}, 'rcpt', 'TO:<a@b.test> NOTIFY=NEVER')).toEqual([DENY, 'No parameters allowed in RCPT']);
  });

  it('MAIL parsing', async () => {
    const { view } = await setup();
    const p = (line: string) => view._parse('mail', line);
    expect(p('FROM:<a@b.test>')).toEqual([OK, '<a@b.test>']);
    expect(p('from: <a@b.test>  ')).toEqual([OK, '<a@b.test>']);
    expect(p('FROM:<>')).toEqual([OK, '<>']);
    expect(p('FROM:<a@b.test> SIZE=100')).toEqual([DENY, 'No parameters allowed in MAIL']);
    expect(p('FROM:<a@b.test>BODY=8BITMIME')).toEqual([DENY, 'No parameters allowed in MAIL']);
    expect(p('FROM:a@b.test')).toEqual([OK, 'a@b.test']);
    expect(p('FROM:a@b.test   ')).toEqual([OK, 'a@b.test']);
    expect(p('FROM:a@b.test SIZE=100')).toEqual([DENY, 'No parameters allowed in MAIL']);
    expect(p('FROM:')).toEqual([OK, '<>']);
    expect(p('FROM:   ')).toEqual([OK, '<>']);
    expect(p('FROM:someone')).toEqual([DENY, 'Could not parse your MAIL FROM command']);
    expect(p('TO:<a@b.test>')).toEqual([DENY, 'Syntax error in command']);
    expect(p('<a@b.test>')).toEqual([DENY, 'Syntax error in command']);
  });

  it('RCPT parsing', async () => {
    const { view } = await setup();
    const p = (line: string) => view._parse('rcpt', line);
    expect(p('TO:<x@example.test>')).toEqual([OK, '<x@example.test>']);
    expect(p('to:<x@example.test> ')).toEqual([OK, '<x@example.test>']);
    expect(p('TO:<x@example.test> NOTIFY=NEVER')).toEqual([DENY, 'No parameters allowed in RCPT']);
    expect(p('TO:x@example.test')).toEqual([OK, 'x@example.test']);
    expect(p('TO:x@example.test ORCPT=rfc822;x@y')).toEqual([DENY, 'No parameters allowed in RCPT']);
    expect(p('TO:someone')).toEqual([DENY, 'Could not parse your RCPT TO command']);
    expect(p('TO:')).toEqual([DENY, 'Could not parse your RCPT TO command']);
    expect(p('FROM:<x@example.test>')).toEqual([DENY, 'Syntax error in command']);
    // qpsmtpd's parser returned nothing here (→ 501 Syntax error); the address is handed on
    expect(p('TO:postmaster')).toEqual([OK, 'postmaster']);
    expect(p('TO:Abuse')).toEqual([OK, 'Abuse']);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['parse_addr_withhelo strict 1'] })).rejects.toThrow(/plugin parse_addr_withhelo: unknown argument 'strict'/);
  });
});

describe('parse_addr_withhelo: SMTP sessions', () => {
  it('HELO: parameters are refused, plain addresses accepted', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('HELO client.test'))!.code).toBe(250);
    expect(await client.cmd('MAIL FROM:<a@b.test> SIZE=10')).toMatchObject({ code: 501, text: 'No parameters allowed in MAIL' });
    expect(await client.cmd('MAIL FROM:nobody')).toMatchObject({ code: 501, text: 'Could not parse your MAIL FROM command' });
    expect(await client.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 250, text: '<a@b.test>, sender OK - how exciting to get mail from you!' });
    expect(await client.cmd('RCPT TO:<x@example.test> NOTIFY=NEVER')).toMatchObject({ code: 501, text: 'No parameters allowed in RCPT' });
    expect(await client.cmd('RCPT TO:nobody')).toMatchObject({ code: 501, text: 'Could not parse your RCPT TO command' });
    expect(await client.cmd('RCPT TO:<x@example.test>')).toMatchObject({ code: 250, text: '<x@example.test>, recipient ok' });
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221 });
    await done;
  });

  it('HELO: an empty MAIL FROM: is the null sender', async () => {
    const { runtime } = await setup();
    const { client, session, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('MAIL FROM:')).toMatchObject({ code: 250, text: '<>, sender OK - how exciting to get mail from you!' });
    expect(session.transaction.sender()!.format()).toBe('<>');
    await client.cmd('QUIT');
    await done;
  });

  it('HELO: bare addresses pass the parser; with dont_require_anglebrackets they are accepted', async () => {
    const { runtime } = await setup(['parse_addr_withhelo', 'dont_require_anglebrackets', 'rcpt_ok']);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('MAIL FROM:a@b.test')).toMatchObject({ code: 250, text: '<a@b.test>, sender OK - how exciting to get mail from you!' });
    expect(await client.cmd('RCPT TO:x@example.test')).toMatchObject({ code: 250, text: '<x@example.test>, recipient ok' });
    expect(await client.cmd('RCPT TO:postmaster')).toMatchObject({ code: 250, text: '<postmaster>, recipient ok' });
    await client.cmd('QUIT');
    await done;
  });

  it('EHLO: ESMTP parameters keep working', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    await client.reply();
    expect((await client.cmd('EHLO client.test'))!.code).toBe(250);
    expect(await client.cmd('MAIL FROM:<a@b.test> BODY=8BITMIME')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<x@example.test> NOTIFY=NEVER')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });
});
