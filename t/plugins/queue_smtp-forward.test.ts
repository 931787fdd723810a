// queue/smtp-forward against a real downstream SMTP server on 127.0.0.1
// (t/fixtures/plugins-c/smtp-sink.ts): the conversation and the bytes on the wire
// (CRLF, dot-stuffing), 250 only after the downstream's final 250, its 4xx/5xx passed back with
// its text, transport failures as 451, XCLIENT, timeouts and the hook's abort signal.
import { afterEach, describe, expect, it } from 'vitest';
import type { Runtime } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { open_session, quit, send_message, until } from '../fixtures/plugins-c/helpers.js';
import { closed_port, start_sink, type Sink, type SinkOptions } from '../fixtures/plugins-c/smtp-sink.js';
import { xtext } from '../../plugins/queue/smtp-forward.js';

let sinks: Sink[] = [];
afterEach(async () => {
  for (const s of sinks) await s.close();
  sinks = [];
});

async function sink(opts: SinkOptions = {}): Promise<Sink> {
  const s = await start_sink(opts);
  sinks.push(s);
  return s;
}

async function setup(args: string, files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({
    plugins: ['rcpt_ok', `queue/smtp-forward ${args}`],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    loglevel: '7',
    ...files,
  });
  return rt;
}

function set_timeout(runtime: Runtime, seconds: number): void {
  const p = runtime.plugins.find((x) => x.plugin_name() === 'queue::smtp_2dforward') as unknown as { command_timeout: number };
  p.command_timeout = seconds;
}

const MESSAGE = ['From: a@b.test', 'Subject: forward me', '', 'line 1', '.leading dot', '..two dots', '.', 'end'];

describe('queue/smtp-forward: a successful hand-off', () => {
  it('250 "queued as <id>" with the whole conversation, CRLF and dot-stuffing on the wire', async () => {
    const down = await sink();
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>', '<y@example.test>'], MESSAGE);
    expect(r).toMatchObject({ code: 250, text: 'queued as 4XQ2bT1abc' });
    await quit(s);
    const d = down.sessions[0]!;
    expect(d.commands).toEqual(['EHLO mx.example.test', 'MAIL FROM:<a@b.test>', 'RCPT TO:<x@example.test>', 'RCPT TO:<y@example.test>', 'DATA', 'QUIT']);
    const raw = d.raw_data[0]!;
    expect(raw).toMatch(/^Authentication-Results: mx\.example\.test; auth=none\r\nReceived: from Unknown \(HELO client\.test\) \(127\.0\.0\.1\)\r\n by mx\.example\.test/);
    expect(raw.endsWith('\r\nFrom: a@b.test\r\nSubject: forward me\r\n\r\nline 1\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n')).toBe(true);
    expect(raw).not.toMatch(/[^\r]\n/); // every line end is CRLF
    expect(d.messages[0]!.endsWith('\r\n\r\nline 1\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n')).toBe(true);
  });

  it('a null sender is MAIL FROM:<>; 8-bit bytes pass unchanged; falls back to HELO when EHLO is refused', async () => {
    const down = await sink({ extensions: false, final: '250 Queued! 1700000000 qp 123 <id@x>' });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<>', ['<x@example.test>'], ['Subject: caf\xe9', '', 'gr\xfc\xdfe']);
    expect(r).toMatchObject({ code: 250, text: 'queued as <id@x>' });
    await quit(s);
    const d = down.sessions[0]!;
    expect(d.commands.slice(0, 3)).toEqual(['EHLO mx.example.test', 'HELO mx.example.test', 'MAIL FROM:<>']);
    expect(d.messages[0]).toContain('Subject: caf\xe9\r\n\r\ngr\xfc\xdfe\r\n');
  });

  it('250 only after the downstream accepted: the reply waits for the final 250', async () => {
    const down = await sink({ delay_ms: 150 });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE);
    expect(r.code).toBe(250);
    expect(down.sessions[0]!.messages).toHaveLength(1);
    await quit(s);
  });

  it('a QUIT that fails after the acceptance does not turn the 250 into an error', async () => {
    const down = await sink({ reply: (verb) => (verb === 'QUIT' ? null : undefined) });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    set_timeout(runtime, 0.3);
    const s = await open_session(runtime);
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).code).toBe(250);
    await quit(s);
  });
});

describe('queue/smtp-forward: refusals from downstream keep their text', () => {
  it.each([
    ['RCPT', '550 5.1.1 <y@example.test>: Recipient address rejected: User unknown', 552, '5.1.1 <y@example.test>: Recipient address rejected: User unknown'],
    ['MAIL', '451 4.3.0 Temporary lookup failure', 452, '4.3.0 Temporary lookup failure'],
    ['DATA', '554 5.5.1 Error: no valid recipients', 552, '5.5.1 Error: no valid recipients'],
    ['.', '552-5.3.4 Message too big\r\n552 5.3.4 for this server', 552, '5.3.4 Message too big\n5.3.4 for this server'],
    ['.', '452 4.3.1 Insufficient system storage', 452, '4.3.1 Insufficient system storage'],
  ])('%s answered %j → %i', async (verb, reply, code, text) => {
    const down = await sink({ reply: (v, line) => (v === verb && (verb !== 'RCPT' || line.includes('<y@')) ? reply : undefined) });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>', '<y@example.test>'], MESSAGE);
    expect(r).toMatchObject({ code, text });
    await quit(s);
    await until(() => down.sessions[0]!.closed, 'the downstream connection to close');
  });
});

describe('queue/smtp-forward: transport failures → 451', () => {
  it('connection refused', async () => {
    const port = await closed_port();
    const { runtime } = await setup(`127.0.0.1 ${port}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE);
    expect(r).toMatchObject({ code: 451, text: `Unable to queue message (connect: connect ECONNREFUSED 127.0.0.1:${port})` });
    await quit(s);
  });

  it('a refusing greeting', async () => {
    const down = await sink({ greeting: '554 5.3.2 no service' });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).toMatchObject({
      code: 451,
      text: 'Unable to queue message (greeting: 554 5.3.2 no service)',
    });
    await quit(s);
  });

  it('no final reply within command_timeout: 451, never 250', async () => {
    const down = await sink({ final: null });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    set_timeout(runtime, 0.3);
    const s = await open_session(runtime);
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).toMatchObject({
      code: 451,
      text: 'Unable to queue message (timeout waiting for the reply to the end of DATA)',
    });
    expect(down.sessions[0]!.messages).toHaveLength(1); // it got the data, but never said yes
    await quit(s);
  });

  it('the connection dropped in the middle', async () => {
    const down = await sink({ reply: (verb) => (verb === 'RCPT' ? null : undefined) });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`);
    const s = await open_session(runtime);
    const pending = send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE);
    await until(() => down.sessions[0]?.commands.includes('RCPT TO:<x@example.test>') ?? false, 'RCPT downstream');
    await down.close();
    sinks = [];
    expect(await pending).toMatchObject({ code: 451, text: expect.stringMatching(/^Unable to queue message \(connection closed/) });
    await quit(s);
  });

  it('the hook timeout aborts the delivery: 451 4.3.0 and the downstream connection is closed', async () => {
    const down = await sink({ final: null });
    const { runtime } = await setup(`127.0.0.1 ${down.port}`, { hook_timeout: '0.5' });
    const s = await open_session(runtime);
    const started = Date.now();
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE);
    expect(r).toMatchObject({ code: 451, text: '4.3.0 Internal error - try again later' });
    expect(Date.now() - started).toBeLessThan(5000);
    await until(() => down.sessions[0]!.closed, 'the downstream connection to close');
    await quit(s);
  });
});

describe('queue/smtp-forward: XCLIENT', () => {
  it('sends the attributes the server lists, then greets again as the client', async () => {
    const down = await sink({ extensions: ['PIPELINING', 'XCLIENT NAME ADDR PORT PROTO HELO LOGIN'] });
    const { runtime } = await setup(`127.0.0.1 ${down.port} xclient`);
    const s = await open_session(runtime, 'client.test');
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).code).toBe(250);
    await quit(s);
    expect(down.sessions[0]!.commands.slice(0, 4)).toEqual([
      'EHLO mx.example.test',
      'XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT=40000 HELO=client.test PROTO=ESMTP',
      'EHLO client.test',
      'MAIL FROM:<a@b.test>',
    ]);
  });

  it('only the advertised attributes; a PTR name is passed, an IPv6 address gets IPV6:', async () => {
    const down = await sink({ extensions: ['XCLIENT ADDR NAME'] });
    const { runtime } = await setup(`127.0.0.1 ${down.port} XCLIENT`);
    const s = await open_session(runtime, 'client.test', { remote_ip: '2001:db8::1', remote_host: 'mail.client.test' });
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).code).toBe(250);
    await quit(s);
    expect(down.sessions[0]!.commands[1]).toBe('XCLIENT NAME=mail.client.test ADDR=IPV6:2001:db8::1');
  });

  it('not advertised, refused, or the new EHLO refused → 451 with qpsmtpd\'s reasons', async () => {
    const cases: Array<[SinkOptions, string]> = [
      [{}, 'Unable to queue message (Server does not advertise XCLIENT support)'],
      [{ extensions: ['XCLIENT ADDR'], reply: (v) => (v === 'XCLIENT' ? '550 5.7.0 Error: insufficient authorization' : undefined) }, 'Unable to queue message (XCLIENT failed)'],
      [
        { extensions: ['XCLIENT ADDR'], reply: (v, _l, sess) => ((v === 'EHLO' || v === 'HELO') && sess.commands.some((c) => c.startsWith('XCLIENT')) ? '554 no' : undefined) },
        'Unable to queue message (HELLO after XCLIENT failed)',
      ],
    ];
    for (const [opts, text] of cases) {
      const down = await sink(opts);
      const { runtime } = await setup(`127.0.0.1 ${down.port} xclient`);
      const s = await open_session(runtime);
      expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], MESSAGE)).toMatchObject({ code: 451, text });
      await quit(s);
      expect(down.sessions[0]!.commands).not.toContain('MAIL FROM:<a@b.test>');
    }
  });

  it('xtext-encodes attribute values', () => {
    expect(xtext('a b+c=d\xe9')).toBe('a+20b+2Bc+3Dd+C3+A9');
    expect(xtext('[UNAVAILABLE]')).toBe('[UNAVAILABLE]');
  });
});

describe('queue/smtp-forward: arguments', () => {
  it('host is required and checked; port must be a number; the only flag is xclient', async () => {
    await expect(setup('')).rejects.toThrow(/No SMTP server specified in smtp-forward config/);
    await expect(setup('bad!host')).rejects.toThrow(/Bad data in smtp server: bad!host/);
    await expect(setup('127.0.0.1 smtp')).rejects.toThrow(/plugin queue::smtp_2dforward: argument 'smtp' is not a port number/);
    await expect(setup('127.0.0.1 25 tls')).rejects.toThrow(/plugin queue::smtp_2dforward: unknown argument 'tls'/);
    const { runtime } = await setup('relay.example.test');
    const p = runtime.plugins.at(-1) as unknown as { _smtp_server: string; _smtp_port: number; _flags: object };
    expect([p._smtp_server, p._smtp_port, p._flags]).toEqual(['relay.example.test', 25, {}]);
    const v6 = (await setup('[::1] 2525 xclient')).runtime.plugins.at(-1) as unknown as { _smtp_server: string; _smtp_port: number; _flags: object };
    expect([v6._smtp_server, v6._smtp_port, v6._flags]).toEqual(['::1', 2525, { xclient: true }]);
  });
});
