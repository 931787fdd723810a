// The reply catalogue of qpsmtpd.md 3.11, row by row, in-process: each hook outcome with and
// without a plugin message (mock_hook), exact code and text, plus the defects of 3.12 we fix
// (one command, one reply; a default text where qpsmtpd was silent) and the engine behaviour
// decided in DECISIONS.md. t/qpsmtpd.t's helo responder table and t/qpsmtpd-smtp.t's
// data_respond codes are reproduced at the end.
import { describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { DECLINED, DENY, DENYSOFT, DENYSOFT_DISCONNECT, DENY_DISCONNECT, DONE, OK } from '../../lib/constants.js';
import type { Plugin } from '../../lib/plugin.js';
import type { Runtime } from '../../lib/runtime.js';
import type { SmtpSession } from '../../lib/smtp/session.js';
import type { Transaction } from '../../lib/transaction.js';
import { make_runtime, mock_hook } from '../lib/harness.js';
import { start_session, type Reply, type TestClient } from '../lib/session.js';

const ME = 'mx.example.test';
const FAULT = '4.3.0 Internal error - try again later';
const MSG = 'Subject: catalogue\r\n\r\nbody\r\n.\r\n';

type Mocks = Record<string, (...args: any[]) => unknown> | Array<[string, (...args: any[]) => unknown]>;

interface Open {
  runtime: Runtime;
  logged: string[];
  c: TestClient;
  session: SmtpSession;
  done: Promise<void>;
  greeting: Reply | null;
}

/** A runtime (no plugins) with `mocks` prepended, and a session whose greeting has been read. */
async function open(mocks: Mocks = {}, files: Record<string, string | string[]> = {}): Promise<Open> {
  const { runtime, logged } = await make_runtime({ me: ME, ...files });
  const list = Array.isArray(mocks) ? mocks : Object.entries(mocks);
  // mock_hook prepends: register in reverse so the list runs in the order given
  for (const [hook, fn] of [...list].reverse()) mock_hook(runtime, hook, fn);
  const { client, session, done } = start_session(runtime);
  const greeting = await client.reply();
  return { runtime, logged, c: client, session, done, greeting };
}

/** Same, then `EHLO client.test` answered 250. */
async function greeted(mocks: Mocks = {}, files: Record<string, string | string[]> = {}): Promise<Open> {
  const o = await open(mocks, files);
  expect((await o.c.cmd('EHLO client.test'))!.code).toBe(250);
  return o;
}

/** greeted, with a rcpt hook accepting everybody (after the given mocks). */
async function with_rcpt(mocks: Mocks = {}, files: Record<string, string | string[]> = {}): Promise<Open> {
  const list = Array.isArray(mocks) ? mocks : Object.entries(mocks);
  return greeted([...list, ['rcpt', () => OK]], files);
}

async function envelope(c: TestClient): Promise<void> {
  expect((await c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
  expect((await c.cmd('RCPT TO:<x@example.test>'))!.code).toBe(250);
}

function r(code: number, text: string) {
  return { code, text };
}

/** The previous command produced exactly the replies already read: NOOP is answered next. */
async function in_sync(c: TestClient, probe = 'NOOP'): Promise<void> {
  expect(c.pending()).toBe('');
  expect(await c.cmd(probe)).toMatchObject(r(250, 'OK'));
}

async function closed(o: Open): Promise<void> {
  expect(await o.c.wait_closed()).toBe(true);
  await o.done;
  expect(o.c.pending()).toBe('');
}

describe('3.11 connect', () => {
  it('220 greeting (connect OK/DECLINED; plugin message ignored)', async () => {
    for (const rc of [OK, DECLINED]) {
      const o = await open({ connect: () => [rc, 'ignored'] });
      expect(o.greeting).toMatchObject(r(220, `${ME} ESMTP qpsmtpd-ts ${o.runtime.version} ready; send us your mail, but not your spam.`));
    }
  });

  it('220 smtpgreeting, " ESMTP" appended unless present', async () => {
    expect((await open({}, { smtpgreeting: 'hello there' })).greeting).toMatchObject(r(220, 'hello there ESMTP'));
    expect((await open({}, { smtpgreeting: 'ESMTP here' })).greeting).toMatchObject(r(220, 'ESMTP here'));
  });

  const rows: Array<[string, number, number, string]> = [
    ['DENY', DENY, 550, 'Connection from you denied, bye bye.'],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 550, 'Connection from you denied, bye bye.'],
    ['DENYSOFT', DENYSOFT, 450, 'Connection from you temporarily denied, bye bye.'],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 450, 'Connection from you temporarily denied, bye bye.'],
  ];
  for (const [name, rc, code, text] of rows) {
    it(`${name} → ${code} default text, close`, async () => {
      const o = await open({ connect: () => rc });
      expect(o.greeting).toMatchObject(r(code, text));
      await closed(o);
    });
    it(`${name} with message → ${code} <m>, close`, async () => {
      const o = await open({ connect: () => [rc, 'go away\nnow'] });
      expect(o.greeting).toMatchObject({ code, lines: ['go away', 'now'] });
      await closed(o);
    });
  }

  it('DONE → nothing from the core (the plugin may answer itself)', async () => {
    const o = await open({
      connect(this: Plugin) {
        (this.qp as SmtpSession).respond(220, 'my own banner');
        return DONE;
      },
    });
    expect(o.greeting).toMatchObject(r(220, 'my own banner'));
    await in_sync(o.c);
  });

  it('a dying connect plugin → 451 4.3.0 and close', async () => {
    const o = await open({
      connect: () => {
        throw new Error('dead');
      },
    });
    expect(o.greeting).toMatchObject(r(451, FAULT));
    await closed(o);
  });
});

describe('3.11 timeout', () => {
  it('421 4.4.2 Connection Timed Out, CRLF-terminated, then close; disconnect and post-connection hooks run', async () => {
    let disconnected = 0;
    let post = 0;
    const o = await open({ disconnect: () => void disconnected++, 'post-connection': () => void post++ }, { timeout: '1' });
    const t0 = Date.now();
    const reply = await o.c.reply(4000);
    expect(reply).toMatchObject(r(421, '4.4.2 Connection Timed Out'));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    await closed(o);
    expect(disconnected).toBe(1);
    expect(post).toBe(1);
  });

  it('the same inside DATA', async () => {
    const o = await with_rcpt({}, { timeout: '1' });
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send('Subject: x\r\n');
    expect(await o.c.reply(4000)).toMatchObject(r(421, '4.4.2 Connection Timed Out'));
    await closed(o);
  });
});

describe('3.11 HELO / EHLO', () => {
  it('250 HELO reply', async () => {
    const o = await open();
    expect(await o.c.cmd('HELO client.test')).toMatchObject(r(250, `${ME} Hi Unknown [127.0.0.1]; I am so happy to meet you.`));
  });

  it('250 multi-line EHLO reply: PIPELINING, 8BITMIME, SIZE, SMTPUTF8, plugin capabilities, AUTH last', async () => {
    const o = await open(
      {
        ehlo: (t: Transaction) => {
          t.notes('capabilities', ['STARTTLS']);
          return DECLINED;
        },
        auth: () => DECLINED,
      },
      { databytes: '100000' },
    );
    expect((await o.c.cmd('EHLO client.test'))!.lines).toEqual([
      `${ME} Hi Unknown [127.0.0.1]`,
      'PIPELINING',
      '8BITMIME',
      'SIZE 100000',
      'SMTPUTF8',
      'STARTTLS',
      'AUTH PLAIN CRAM-MD5 LOGIN',
    ]);
  });

  it('501 without host', async () => {
    const o = await open();
    expect(await o.c.cmd('HELO')).toMatchObject(r(501, 'helo requires domain/address - see RFC-2821 4.1.1.1'));
    expect(await o.c.cmd('EHLO')).toMatchObject(r(501, 'ehlo requires domain/address - see RFC-2821 4.1.1.1'));
    expect(await o.c.cmd('EHLO   ')).toMatchObject(r(501, 'ehlo requires domain/address - see RFC-2821 4.1.1.1'));
  });

  it('a second HELO/EHLO is accepted and resets the transaction (RFC 5321 4.1.4; qpsmtpd said 503)', async () => {
    const o = await with_rcpt();
    await envelope(o.c);
    expect(await o.c.cmd('HELO again.test')).toMatchObject(r(250, `${ME} Hi Unknown [127.0.0.1]; I am so happy to meet you.`));
    expect(await o.c.cmd('DATA')).toMatchObject(r(503, 'MAIL first'));
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
    expect((await o.c.cmd('EHLO third.test'))!.code).toBe(250);
    expect(o.session.connection.hello()).toBe('ehlo');
    expect(o.session.connection.hello_host()).toBe('third.test');
  });

  for (const verb of ['helo', 'ehlo'] as const) {
    const V = verb.toUpperCase();
    const rows: Array<[string, number, number, string, boolean]> = [
      ['DENY', DENY, 550, 'Access denied', false],
      ['DENYSOFT', DENYSOFT, 450, 'Access temporarily denied', false],
      ['DENY_DISCONNECT', DENY_DISCONNECT, 550, 'Access denied', true],
      ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 450, 'Access temporarily denied', true],
    ];
    for (const [name, rc, code, text, disc] of rows) {
      it(`${V}: ${verb} hook ${name} without message → ${code} ${text} (3.12: qpsmtpd was silent)`, async () => {
        const o = await open({ [verb]: () => rc });
        expect(await o.c.cmd(`${V} client.test`)).toMatchObject(r(code, text));
        if (disc) await closed(o);
        else await in_sync(o.c);
        expect(o.session.connection.hello()).toBeUndefined();
      });
      it(`${V}: ${verb} hook ${name} with message → ${code} <m>, no extra 451 (3.12)`, async () => {
        const o = await open({ [verb]: () => [rc, 'line1\nline2'] });
        expect(await o.c.cmd(`${V} client.test`)).toMatchObject({ code, lines: ['line1', 'line2'] });
        if (disc) await closed(o);
        else await in_sync(o.c);
      });
    }
    it(`${V}: ${verb} hook DONE → only what the plugin wrote, no 451 (3.12)`, async () => {
      const o = await open({
        [verb](this: Plugin) {
          (this.qp as SmtpSession).respond(250, 'done by plugin');
          return DONE;
        },
      });
      expect(await o.c.cmd(`${V} client.test`)).toMatchObject(r(250, 'done by plugin'));
      await in_sync(o.c);
      expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(503, 'please say hello first ...'));
    });
    it(`${V}: ${verb} hook OK with message → the normal 250 (message ignored)`, async () => {
      const o = await open({ [verb]: () => [OK, 'ignored'] });
      const reply = (await o.c.cmd(`${V} client.test`))!;
      expect(reply.code).toBe(250);
      expect(reply.lines[0]).toMatch(new RegExp(`^${ME} Hi Unknown \\[127\\.0\\.0\\.1\\]`));
    });
  }
});

describe('3.11 MAIL', () => {
  it('503 please say hello first ...', async () => {
    const o = await open();
    expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(503, 'please say hello first ...'));
  });

  it('501 parse errors: Syntax error in command / parameters; could not parse your mail from command', async () => {
    const o = await greeted();
    expect(await o.c.cmd('MAIL TO:<a@b.test>')).toMatchObject(r(501, 'Syntax error in command'));
    expect(await o.c.cmd('MAIL FROM:<a@b.test> x@y z')).toMatchObject(r(501, 'Syntax error in parameters'));
    expect(await o.c.cmd('MAIL FROM:a@b.test')).toMatchObject(r(501, 'could not parse your mail from command'));
    expect(await o.c.cmd('MAIL FROM:<u@c.test.>')).toMatchObject(r(501, 'could not parse your mail from command'));
  });

  it('501 parser text from a mail_parse plugin', async () => {
    const o = await greeted({ mail_parse: () => [OK, () => [DENY, 'my parser says no']] });
    expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(501, 'my parser says no'));
  });

  it('250 sender OK (also for the null sender forms)', async () => {
    const o = await greeted();
    expect(await o.c.cmd('MAIL FROM:<a@b.test> BODY=8BITMIME')).toMatchObject(r(250, '<a@b.test>, sender OK - how exciting to get mail from you!'));
    for (const line of ['MAIL FROM:<>', 'MAIL FROM:', 'MAIL', 'MAIL FROM:<#@[]>', 'MAIL FROM:<[undefined]>']) {
      expect(await o.c.cmd(line)).toMatchObject(r(250, '<>, sender OK - how exciting to get mail from you!'));
    }
  });

  const rows: Array<[string, number, number, string, boolean]> = [
    ['DENY', DENY, 550, '<a@b.test>, denied', false],
    ['DENYSOFT', DENYSOFT, 450, '<a@b.test>, temporarily denied', false],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 550, '<a@b.test>, denied', true],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 421, '<a@b.test>, temporarily denied', true],
  ];
  for (const [name, rc, code, text, disc] of rows) {
    it(`mail hook ${name} → ${code} default text`, async () => {
      const o = await greeted({ mail: () => rc });
      expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(code, text));
      if (disc) return closed(o);
      await in_sync(o.c);
      expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
    });
    it(`mail hook ${name} with message → ${code} <m>`, async () => {
      const o = await greeted({ mail: () => [rc, 'not you'] });
      expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(code, 'not you'));
      if (disc) await closed(o);
    });
  }

  it('mail hook DONE → nothing, sender not stored', async () => {
    const o = await greeted({ mail: () => DONE });
    o.c.send('MAIL FROM:<a@b.test>\r\n');
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
  });

  it('mail hook OK with message → 250 sender OK (message ignored)', async () => {
    const o = await greeted({ mail: () => [OK, 'ignored'] });
    expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(250, '<a@b.test>, sender OK - how exciting to get mail from you!'));
  });

  it('mail_pre OK replaces the address string', async () => {
    const o = await greeted({ mail_pre: () => [OK, '<other@b.test>'] });
    expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(250, '<other@b.test>, sender OK - how exciting to get mail from you!'));
  });

  it('SIZE= over databytes → 552 at MAIL; malformed → 501; within → 250', async () => {
    const o = await greeted({}, { databytes: '100000' });
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE=100001')).toMatchObject(r(552, '5.3.4 Message size exceeds fixed maximum message size'));
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE=abc')).toMatchObject(r(501, '5.5.4 Syntax error in parameters (SIZE)'));
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE=-1')).toMatchObject(r(501, '5.5.4 Syntax error in parameters (SIZE)'));
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE')).toMatchObject(r(501, '5.5.4 Syntax error in parameters (SIZE)'));
    expect(await o.c.cmd(`MAIL FROM:<a@b.test> SIZE=${'9'.repeat(100)}`)).toMatchObject({ code: 501 });
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE=18446744073709551616')).toMatchObject({ code: 552 });
    expect(await o.c.cmd('MAIL FROM:<a@b.test> SIZE=100000')).toMatchObject(r(250, '<a@b.test>, sender OK - how exciting to get mail from you!'));
  });
});

describe('3.11 RCPT', () => {
  it('503 Use MAIL before RCPT; the 501 syntax error wins before MAIL', async () => {
    const o = await greeted();
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
    expect(await o.c.cmd('RCPT FROM:<x@example.test>')).toMatchObject(r(501, 'Syntax error in command'));
  });

  it('501 could not parse recipient / Syntax error in address', async () => {
    const o = await greeted();
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('RCPT TO:<>')).toMatchObject(r(501, 'could not parse recipient'));
    expect(await o.c.cmd('RCPT TO:<x@example.test')).toMatchObject(r(501, 'could not parse recipient'));
    expect(await o.c.cmd('RCPT TO:someone')).toMatchObject(r(501, 'could not parse recipient'));
    expect(await o.c.cmd('RCPT TO:')).toMatchObject(r(501, 'Syntax error in address'));
  });

  it('250 recipient ok (rcpt OK, message ignored) and the recipient is added', async () => {
    const o = await greeted({ rcpt: () => [OK, 'ignored'] });
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('RCPT TO:<X@Example.Test> NOTIFY=NEVER')).toMatchObject(r(250, '<X@Example.Test>, recipient ok'));
    expect(o.session.transaction.recipients().map((a) => a.format())).toEqual(['<X@Example.Test>']);
  });

  it('450 No plugin decided if relaying is allowed (no plugin, or DECLINED)', async () => {
    for (const mocks of [{}, { rcpt: () => [DECLINED, 'ignored'] }] as Mocks[]) {
      const o = await greeted(mocks);
      expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
      expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(450, 'No plugin decided if relaying is allowed'));
      expect(o.session.transaction.recipients()).toEqual([]);
    }
  });

  const rows: Array<[string, number, number, string, boolean]> = [
    ['DENY', DENY, 550, 'relaying denied', false],
    ['DENYSOFT', DENYSOFT, 450, 'relaying denied', false],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 550, 'delivery denied', true],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 421, 'relaying denied', true],
  ];
  for (const [name, rc, code, text, disc] of rows) {
    it(`rcpt hook ${name} → ${code} ${text}`, async () => {
      const o = await greeted({ rcpt: () => rc });
      expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
      expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(code, text));
      if (disc) return closed(o);
      await in_sync(o.c);
      expect(o.session.transaction.recipients()).toEqual([]);
    });
    it(`rcpt hook ${name} with message → ${code} <m>`, async () => {
      const o = await greeted({ rcpt: () => [rc, 'Relaying denied (#5.7.1)'] });
      expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
      expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(code, 'Relaying denied (#5.7.1)'));
      if (disc) await closed(o);
    });
  }

  it('rcpt hook DONE → nothing, recipient not added', async () => {
    const o = await greeted({ rcpt: () => DONE });
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    o.c.send('RCPT TO:<x@example.test>\r\n');
    await in_sync(o.c);
    expect(o.session.transaction.recipients()).toEqual([]);
  });

  it('rcpt_pre OK replaces the address string', async () => {
    const o = await greeted({ rcpt_pre: () => [OK, '<y@example.test>'], rcpt: () => OK });
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(250, '<y@example.test>, recipient ok'));
  });

  it('there is no recipient limit by default (101 recipients are all accepted)', async () => {
    const o = await with_rcpt();
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    for (let i = 1; i <= 101; i++) expect((await o.c.cmd(`RCPT TO:<r${i}@example.test>`))!.code).toBe(250);
    expect(o.session.transaction.recipients()).toHaveLength(101);
  });
});

describe('3.11 DATA', () => {
  it('503 MAIL first / 503 RCPT first (after the data hooks)', async () => {
    let calls = 0;
    const o = await greeted({ data: () => void calls++ });
    expect(await o.c.cmd('DATA')).toMatchObject(r(503, 'MAIL first'));
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('DATA')).toMatchObject(r(503, 'RCPT first'));
    expect(calls).toBe(2);
  });

  it('354 go ahead', async () => {
    const o = await with_rcpt();
    await envelope(o.c);
    expect(await o.c.cmd('DATA')).toMatchObject(r(354, 'go ahead'));
  });

  const rows: Array<[string, number, number, string, boolean]> = [
    ['DENY', DENY, 554, 'Message denied', false],
    ['DENYSOFT', DENYSOFT, 451, 'Message denied temporarily', false],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 554, 'Message denied', true],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 451, 'Message denied temporarily', true],
  ];
  for (const [name, rc, code, text, disc] of rows) {
    it(`data hook ${name} → ${code} ${text}, transaction reset`, async () => {
      const o = await with_rcpt([['data', () => rc]]);
      await envelope(o.c);
      expect(await o.c.cmd('DATA')).toMatchObject(r(code, text));
      if (disc) return closed(o);
      expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
    });
    it(`data hook ${name} with message → ${code} <m>`, async () => {
      const o = await with_rcpt([['data', () => [rc, 'no data for you']]]);
      await envelope(o.c);
      expect(await o.c.cmd('DATA')).toMatchObject(r(code, 'no data for you'));
      if (disc) await closed(o);
    });
  }

  it('data hook DONE → nothing (the plugin takes over)', async () => {
    const o = await with_rcpt([['data', () => DONE]]);
    await envelope(o.c);
    o.c.send('DATA\r\n');
    await new Promise((res) => setTimeout(res, 50));
    await in_sync(o.c);
  });

  it('421 See http://smtpd.develooper.com/barelf.html for a bare LF, close, nothing queued', async () => {
    let queued = 0;
    const o = await with_rcpt([['queue', () => (queued++, OK)]]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send('Subject: x\r\n\r\nbody\n.\n');
    expect(await o.c.reply()).toMatchObject(r(421, 'See http://smtpd.develooper.com/barelf.html'));
    await closed(o);
    expect(queued).toBe(0);
  });

  for (const [name, rc, code, text] of [
    ['DENY_DISCONNECT', DENY_DISCONNECT, 554, 'Message denied'],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 421, 'Message denied temporarily'],
  ] as const) {
    it(`data_headers_end ${name} → ${code} ${text} and close (with message: first line)`, async () => {
      for (const msg of [undefined, 'headers stink\nsecond']) {
        let queued = 0;
        const o = await with_rcpt([
          ['data_headers_end', () => (msg ? [rc, msg] : rc)],
          ['queue', () => (queued++, OK)],
        ]);
        await envelope(o.c);
        expect((await o.c.cmd('DATA'))!.code).toBe(354);
        o.c.send('Subject: x\r\n\r\n');
        expect(await o.c.reply()).toMatchObject(r(code, msg ? 'headers stink' : text));
        await closed(o);
        expect(queued).toBe(0);
      }
    });
  }

  it('data_headers_end DENY / DENYSOFT are ignored (message goes on)', async () => {
    for (const rc of [DENY, DENYSOFT, OK]) {
      const o = await with_rcpt([
        ['data_headers_end', () => [rc, 'ignored']],
        ['queue', () => [OK, 'Queued!']],
      ]);
      await envelope(o.c);
      expect((await o.c.cmd('DATA'))!.code).toBe(354);
      expect(await o.c.cmd('Subject: x\r\n\r\nbody\r\n.')).toMatchObject(r(250, 'Queued!'));
    }
  });

  it('a dying data_headers_end plugin → 451 4.3.0 after the terminator, nothing queued', async () => {
    let queued = 0;
    const o = await with_rcpt([
      [
        'data_headers_end',
        () => {
          throw new Error('dead');
        },
      ],
      ['queue', () => (queued++, OK)],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd('Subject: x\r\n\r\nbody\r\n.')).toMatchObject(r(451, FAULT));
    expect(queued).toBe(0);
    await in_sync(o.c);
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
  });

  it('a dying data_post_headers plugin → 451 4.3.0, nothing queued', async () => {
    let queued = 0;
    const o = await with_rcpt([
      [
        'data_post_headers',
        () => {
          throw new Error('dead');
        },
      ],
      ['queue', () => (queued++, OK)],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd('Subject: x\r\n\r\nbody\r\n.')).toMatchObject(r(451, FAULT));
    expect(queued).toBe(0);
    await in_sync(o.c);
  });

  it('data_post_headers results are ignored', async () => {
    const o = await with_rcpt([
      ['data_post_headers', () => [DENY, 'ignored']],
      ['queue', () => [OK, 'Queued!']],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd('Subject: x\r\n\r\nbody\r\n.')).toMatchObject(r(250, 'Queued!'));
  });

  it('451 Incomplete DATA when the client closes before the terminator; nothing queued', async () => {
    let queued = 0;
    let resets = 0;
    const o = await with_rcpt([
      ['queue', () => (queued++, OK)],
      ['reset_transaction', () => void resets++],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send('Subject: x\r\n\r\npartial');
    o.c.end();
    expect(await o.c.reply()).toMatchObject(r(451, 'Incomplete DATA'));
    await o.done;
    expect(queued).toBe(0);
    expect(resets).toBeGreaterThanOrEqual(1);
  });

  it('552 Message too big! when over databytes; the stream stays in sync', async () => {
    let queued = 0;
    const o = await with_rcpt([['queue', () => (queued++, OK)]], { databytes: '60' });
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd(`Subject: x\r\n\r\n${'b'.repeat(71)}\r\n.`)).toMatchObject(r(552, 'Message too big!'));
    expect(queued).toBe(0);
    await in_sync(o.c);
  });

  const post: Array<[string, number, number, string, boolean]> = [
    ['DENY', DENY, 552, 'Message denied', false],
    ['DENYSOFT', DENYSOFT, 452, 'Message denied temporarily', false],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 552, 'Message denied', true],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 452, 'Message denied temporarily', true],
  ];
  for (const [name, rc, code, text, disc] of post) {
    for (const msg of [undefined, 'spam, go away']) {
      it(`data_post ${name}${msg ? ' with message' : ''} → ${code} ${msg ?? text}, nothing queued`, async () => {
        let queued = 0;
        const o = await with_rcpt([
          ['data_post', () => (msg ? [rc, msg] : rc)],
          ['queue', () => (queued++, OK)],
        ]);
        await envelope(o.c);
        expect((await o.c.cmd('DATA'))!.code).toBe(354);
        o.c.send(MSG);
        expect(await o.c.reply()).toMatchObject(r(code, msg ?? text));
        expect(queued).toBe(0);
        if (disc) return closed(o);
        expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
      });
    }
  }

  it('data_post DONE → nothing, no queueing, transaction kept', async () => {
    let queued = 0;
    const o = await with_rcpt([
      ['data_post', () => DONE],
      ['queue', () => (queued++, OK)],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send(MSG);
    await in_sync(o.c);
    expect(queued).toBe(0);
    expect(o.session.transaction.sender()?.format()).toBe('<a@b.test>');
  });

  it('dot-unstuffing removes every leading dot (RFC 5321 4.5.2; qpsmtpd only "..")', async () => {
    let body = '';
    const o = await with_rcpt([
      [
        'queue',
        async (t: Transaction) => {
          for await (const chunk of t.message_stream()) body += (chunk as Buffer).toString('latin1');
          return OK;
        },
      ],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd('Subject: dots\r\n\r\n..dotline\r\n.single\r\n...x\r\n..\r\nend\r\n.')).toMatchObject(r(250, 'Queued'));
    expect(body.slice(body.indexOf('\n\n') + 2)).toBe('.dotline\nsingle\n..x\n.\nend\n');
  });
});

describe('3.9 / 3.11 queue phase', () => {
  async function queue_with(mocks: Mocks) {
    const o = await with_rcpt(mocks);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send(MSG);
    return o;
  }

  const rows: Array<[string, number, number, string]> = [
    ['OK', OK, 250, 'Queued'],
    ['DENY', DENY, 552, 'Message denied'],
    ['DENYSOFT', DENYSOFT, 452, 'Message denied temporarily'],
    ['DECLINED', DECLINED, 451, 'Queuing declined or disabled; try again later'],
    ['DENY_DISCONNECT', DENY_DISCONNECT, 451, 'Queuing declined or disabled; try again later'],
    ['DENYSOFT_DISCONNECT', DENYSOFT_DISCONNECT, 451, 'Queuing declined or disabled; try again later'],
  ];
  for (const [name, rc, code, text] of rows) {
    it(`queue ${name} → ${code} ${text}; with message → ${code} <m>`, async () => {
      const o = await queue_with([['queue', () => rc]]);
      expect(await o.c.reply()).toMatchObject(r(code, text));
      await in_sync(o.c);
      const p = await queue_with([['queue', () => [rc, 'custom text']]]);
      expect(await p.c.reply()).toMatchObject(r(code, 'custom text'));
      await in_sync(p.c);
    });
  }

  it('no queue plugin → 451 Queuing declined or disabled; try again later', async () => {
    const o = await queue_with([]);
    expect(await o.c.reply()).toMatchObject(r(451, 'Queuing declined or disabled; try again later'));
  });

  it('queue DONE → nothing', async () => {
    const o = await queue_with([['queue', () => DONE]]);
    await in_sync(o.c);
  });

  it('a dying queue plugin → 451 4.3.0', async () => {
    const o = await queue_with([
      [
        'queue',
        () => {
          throw new Error('disk on fire');
        },
      ],
    ]);
    expect(await o.c.reply()).toMatchObject(r(451, FAULT));
    await in_sync(o.c);
  });

  it('queue_post sees a fresh transaction; its DECLINED adds no reply (3.12 #3)', async () => {
    let seen: { sender?: string; rcpts: number; same: boolean } | undefined;
    let queued_txn: Transaction | undefined;
    const o = await queue_with([
      ['queue', (t: Transaction) => ((queued_txn = t), [OK, 'Queued!'])],
      ['queue_post', (t: Transaction) => ((seen = { sender: t.sender()?.format(), rcpts: t.recipients().length, same: t === queued_txn }), [DECLINED, 'post says hi'])],
    ]);
    expect(await o.c.reply()).toMatchObject(r(250, 'Queued!'));
    await in_sync(o.c);
    expect(seen).toEqual({ sender: undefined, rcpts: 0, same: false });
  });

  it('queue_pre DONE → nothing; queue_pre DENY → one 451 4.3.0, nothing queued (3.12 #3)', async () => {
    let queued = 0;
    const o = await queue_with([
      ['queue_pre', () => DONE],
      ['queue', () => (queued++, OK)],
    ]);
    await in_sync(o.c);
    const p = await queue_with([
      ['queue_pre', () => [DENY, 'nope']],
      ['queue', () => (queued++, OK)],
    ]);
    expect(await p.c.reply()).toMatchObject(r(451, FAULT));
    await in_sync(p.c);
    expect(queued).toBe(0);
    expect(p.logged.some((l) => l.endsWith('pre plugin returned illegal value'))).toBe(true);
  });
});

describe('3.11 RSET, NOOP, VRFY, HELP, QUIT', () => {
  it('250 OK for RSET and NOOP; RSET clears the sender', async () => {
    const o = await greeted();
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('RSET')).toMatchObject(r(250, 'OK'));
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
    expect(await o.c.cmd('NOOP')).toMatchObject(r(250, 'OK'));
    expect(await o.c.cmd('NOOP with args')).toMatchObject(r(250, 'OK'));
  });

  for (const [name, rc, disc] of [
    ['DENY', DENY, false],
    ['DENY_DISCONNECT', DENY_DISCONNECT, true],
  ] as const) {
    it(`noop ${name} → 500 Stop wasting my time. / <m>${disc ? ', close' : ''}`, async () => {
      const o = await open({ noop: () => rc });
      expect(await o.c.cmd('NOOP')).toMatchObject(r(500, 'Stop wasting my time.'));
      if (disc) await closed(o);
      const p = await open({ noop: () => [rc, 'enough'] });
      expect(await p.c.cmd('NOOP')).toMatchObject(r(500, 'enough'));
      if (disc) await closed(p);
    });
  }

  it('noop DONE → nothing; other codes → 250 OK', async () => {
    const o = await open([
      ['noop', () => DONE],
      ['vrfy', () => DONE],
    ]);
    o.c.send('NOOP\r\n');
    expect(await o.c.cmd('RSET')).toMatchObject(r(250, 'OK'));
    const p = await open({ noop: () => [DENYSOFT, 'x'] });
    expect(await p.c.cmd('NOOP')).toMatchObject(r(250, 'OK'));
  });

  it('252 VRFY default; vrfy OK → 250 User OK / <m>; DENY → 554 Access Denied / <m>; DONE → nothing', async () => {
    expect(await (await open()).c.cmd('VRFY foo')).toMatchObject(r(252, "Just try sending a mail and we'll see how it turns out ..."));
    expect(await (await open({ vrfy: () => OK })).c.cmd('VRFY foo')).toMatchObject(r(250, 'User OK'));
    expect(await (await open({ vrfy: () => [OK, 'yes, foo'] })).c.cmd('VRFY foo')).toMatchObject(r(250, 'yes, foo'));
    expect(await (await open({ vrfy: () => DENY })).c.cmd('VRFY foo')).toMatchObject(r(554, 'Access Denied'));
    expect(await (await open({ vrfy: () => [DENY, 'no'] })).c.cmd('VRFY foo')).toMatchObject(r(554, 'no'));
    const o = await open({ vrfy: () => DONE });
    o.c.send('VRFY foo\r\n');
    await in_sync(o.c);
  });

  it('vrfy DENY resets the transaction', async () => {
    const o = await greeted({ vrfy: () => DENY });
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await o.c.cmd('VRFY foo'))!.code).toBe(554);
    expect(await o.c.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(503, 'Use MAIL before RCPT'));
  });

  it('214 default help lines (qpsmtpd-ts <version>), plugin lines, help DENY → 500, DONE → nothing', async () => {
    const o = await open();
    const help = (await o.c.cmd('HELP'))!;
    expect(help.code).toBe(214);
    expect(help.lines).toEqual([`This is qpsmtpd-ts ${o.runtime.version}`, 'See http://smtpd.develooper.com/', 'To report bugs or send comments, mail to <ask@develooper.com>.']);
    const g = await open({}, { smtpgreeting: 'hi' });
    expect((await g.c.cmd('HELP'))!.lines[0]).toBe('This is qpsmtpd-ts ');
    let args: unknown[] = [];
    const p = await open({ help: (_t: unknown, ...a: unknown[]) => ((args = a), [OK, 'line one\nline two']) });
    expect(await p.c.cmd('HELP mail')).toMatchObject({ code: 214, lines: ['line one', 'line two'] });
    expect(args).toEqual(['mail']);
    expect(await (await open({ help: () => DENY })).c.cmd('HELP')).toMatchObject(r(500, 'Syntax error, command not recognized'));
    expect(await (await open({ help: () => [DENY, 'no help'] })).c.cmd('HELP')).toMatchObject(r(500, 'no help'));
    const d = await open({ help: () => DONE });
    d.c.send('HELP\r\n');
    await in_sync(d.c);
  });

  it('221 QUIT default / <m>, then close; quit DONE → just the close', async () => {
    const o = await open();
    expect(await o.c.cmd('QUIT')).toMatchObject(r(221, `${ME} closing connection. Have a wonderful day.`));
    await closed(o);
    const p = await open({ quit: () => [OK, 'bye now'] });
    expect(await p.c.cmd('QUIT')).toMatchObject(r(221, 'bye now'));
    await closed(p);
    const d = await open({ quit: () => DONE });
    expect(await d.c.cmd('QUIT')).toBeNull();
    await closed(d);
  });
});

describe('3.11 unrecognized commands', () => {
  it('500 Unrecognized command (empty line, leading space, tab, unknown, >12 chars, STARTTLS without tls)', async () => {
    const o = await open();
    for (const line of ['', ' EHLO x', 'MAIL\tFROM:<a@b>', 'STARTTLS', 'verylongcommandname', 'XYZZY', 'EXPN root']) {
      expect(await o.c.cmd(line)).toMatchObject(r(500, 'Unrecognized command'));
    }
  });

  it('hook gets the lower-cased word and the rest of the line', async () => {
    let args: unknown[] = [];
    const o = await open({ unrecognized_command: (_t: unknown, ...a: unknown[]) => void (args = a) });
    await o.c.cmd('XYZZY  plugh  ');
    expect(args).toEqual(['xyzzy', 'plugh  ']);
  });

  it('unrecognized_command DENY → 500 <m>; without message 500 Unrecognized command (3.12: was silent)', async () => {
    expect(await (await open({ unrecognized_command: () => [DENY, 'what?'] })).c.cmd('XYZZY')).toMatchObject(r(500, 'what?'));
    const o = await open({ unrecognized_command: () => DENY });
    expect(await o.c.cmd('XYZZY')).toMatchObject(r(500, 'Unrecognized command'));
    await in_sync(o.c);
  });

  it('unrecognized_command DENY_DISCONNECT → 521 <m> (default text when none), close', async () => {
    const o = await open({ unrecognized_command: () => [DENY_DISCONNECT, 'Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?'] });
    expect(await o.c.cmd('x')).toMatchObject(r(521, 'Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?'));
    await closed(o);
    const p = await open({ unrecognized_command: () => DENY_DISCONNECT });
    expect(await p.c.cmd('x')).toMatchObject(r(521, 'Unrecognized command, closing connection'));
    await closed(p);
  });

  it('unrecognized_command DONE → nothing; DENYSOFT/OK → 500 Unrecognized command', async () => {
    const o = await open({ unrecognized_command: () => DONE });
    o.c.send('XYZZY\r\n');
    await in_sync(o.c);
    for (const rc of [DENYSOFT, OK]) {
      expect(await (await open({ unrecognized_command: () => [rc, 'x'] })).c.cmd('XYZZY')).toMatchObject(r(500, 'Unrecognized command'));
    }
  });
});

describe('3.6 / 3.11 AUTH', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const users: Record<string, string> = { 'good@example.test': 'good_pass' };
  const auth_ok = (_t: unknown, mech: string, user: string, pass?: string, hash?: string, ticket?: string) => {
    const stored = users[user];
    if (!stored) return [DENY, 'auth_flat_file - no such user'];
    if (mech === 'cram-md5') return hash === createHmac('md5', stored).update(ticket!).digest('hex') ? [OK, 'auth_flat_file'] : [DENY, 'auth_flat_file - wrong password'];
    return pass === stored ? [OK, 'auth_flat_file'] : [DENY, 'auth_flat_file - wrong password'];
  };

  it('AUTH before EHLO → 500 Unrecognized command (auth is not a command until EHLO offers it)', async () => {
    const o = await open({ auth: auth_ok });
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`)).toMatchObject(r(500, 'Unrecognized command'));
    expect((await o.c.cmd('HELO c.test'))!.code).toBe(250);
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`)).toMatchObject(r(500, 'Unrecognized command'));
  });

  it('504 Unimplemented authentication mechanism: <mech> (also empty)', async () => {
    const o = await greeted({ auth: auth_ok });
    expect(await o.c.cmd('AUTH')).toMatchObject(r(504, 'Unimplemented authentication mechanism: '));
    expect(await o.c.cmd('AUTH FOO')).toMatchObject(r(504, 'Unimplemented authentication mechanism: foo'));
  });

  it('only the mechanisms with an auth-<mech> hook are offered', async () => {
    const o = await open({ 'auth-login': auth_ok });
    expect((await o.c.cmd('EHLO c.test'))!.lines.at(-1)).toBe('AUTH LOGIN');
    expect(await o.c.cmd('AUTH PLAIN')).toMatchObject(r(504, 'Unimplemented authentication mechanism: plain'));
  });

  it('PLAIN: 334 " " then 235 / 535 <MECH> authentication failed for <user> from <ip> - <m>', async () => {
    const o = await greeted({ auth: auth_ok });
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0bad')}`)).toMatchObject(
      r(535, 'PLAIN authentication failed for good@example.test from 127.0.0.1 - auth_flat_file - wrong password'),
    );
    const c334 = await o.c.cmd('AUTH PLAIN');
    expect(c334).toMatchObject(r(334, ' '));
    expect(await o.c.cmd(b64('\0good@example.test\0good_pass'))).toMatchObject(r(235, 'PLAIN authentication successful for good@example.test - auth_flat_file'));
    expect(o.session.connection.relay_client()).toBeTruthy();
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`)).toMatchObject(r(503, 'but you already said AUTH ...'));
  });

  it('235 without plugin message has no " - " suffix; 535 likewise', async () => {
    const o = await greeted([
      ['auth', (_t: unknown, _m: string, user: string) => (user === 'x' ? OK : DENY)],
    ]);
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0y\0p')}`)).toMatchObject(r(535, 'PLAIN authentication failed for y from 127.0.0.1'));
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0x\0p')}`)).toMatchObject(r(235, 'PLAIN authentication successful for x'));
  });

  it('LOGIN: 334 VXNlcm5hbWU6, 334 UGFzc3dvcmQ6, 235; initial response skips the first prompt', async () => {
    const o = await greeted({ auth: auth_ok });
    expect(await o.c.cmd('AUTH LOGIN')).toMatchObject(r(334, 'VXNlcm5hbWU6'));
    expect(await o.c.cmd(b64('good@example.test'))).toMatchObject(r(334, 'UGFzc3dvcmQ6'));
    expect(await o.c.cmd(b64('wrong'))).toMatchObject(r(535, 'LOGIN authentication failed for good@example.test from 127.0.0.1 - auth_flat_file - wrong password'));
    expect(await o.c.cmd(`AUTH LOGIN ${b64('good@example.test')}`)).toMatchObject(r(334, 'UGFzc3dvcmQ6'));
    expect(await o.c.cmd(b64('good_pass'))).toMatchObject(r(235, 'LOGIN authentication successful for good@example.test - auth_flat_file'));
  });

  it('CRAM-MD5: 334 base64 ticket, 235 for the right digest', async () => {
    const o = await greeted({ auth: auth_ok });
    const ch = (await o.c.cmd('AUTH CRAM-MD5'))!;
    expect(ch.code).toBe(334);
    const ticket = Buffer.from(ch.text, 'base64').toString();
    expect(ticket).toMatch(new RegExp(`^<[0-9a-f]+\\.[0-9a-f]+@${ME.replace(/\./g, '\\.')}>$`));
    const digest = createHmac('md5', 'good_pass').update(ticket).digest('hex');
    expect(await o.c.cmd(b64(`good@example.test ${digest}`))).toMatchObject(r(235, 'CRAM-MD5 authentication successful for good@example.test - auth_flat_file'));
  });

  it('CRAM-MD5 answer without a digest → 501 Invalid authentication string', async () => {
    const o = await greeted({ auth: auth_ok });
    expect((await o.c.cmd('AUTH CRAM-MD5'))!.code).toBe(334);
    expect(await o.c.cmd(b64('good@example.test'))).toMatchObject(r(501, 'Invalid authentication string'));
  });

  it('535 Authentication invalid / (<authzid>) / for <user>; empty password 535 (3.12 #5)', async () => {
    const o = await greeted({ auth: auth_ok }, { max_auth_failures: '0' });
    expect(await o.c.cmd(`AUTH PLAIN ${b64('nothing')}`)).toMatchObject(r(535, 'Authentication invalid'));
    expect(await o.c.cmd(`AUTH PLAIN ${b64('bob\0\0pw')}`)).toMatchObject(r(535, 'Authentication invalid (bob)'));
    expect(await o.c.cmd(`AUTH PLAIN ${b64('bob\0good@example.test\0good_pass')}`)).toMatchObject(r(535, 'Authentication invalid for good@example.test'));
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0')}`)).toMatchObject(r(535, 'Authentication invalid for good@example.test'));
    expect(await o.c.cmd('AUTH LOGIN')).toMatchObject(r(334, 'VXNlcm5hbWU6'));
    expect(await o.c.cmd(b64('good@example.test'))).toMatchObject(r(334, 'UGFzc3dvcmQ6'));
    expect(await o.c.cmd('')).toMatchObject(r(535, 'Authentication invalid for good@example.test'));
    await in_sync(o.c);
  });

  it('501 Authentication canceled for "*" (PLAIN and LOGIN)', async () => {
    const o = await greeted({ auth: auth_ok });
    expect((await o.c.cmd('AUTH PLAIN'))!.code).toBe(334);
    expect(await o.c.cmd('*')).toMatchObject(r(501, 'Authentication canceled'));
    expect((await o.c.cmd(`AUTH LOGIN ${b64('good@example.test')}`))!.code).toBe(334);
    expect(await o.c.cmd('*')).toMatchObject(r(501, 'Authentication canceled'));
  });

  it('501 for a response that is not base64', async () => {
    const o = await greeted({ auth: auth_ok });
    expect(await o.c.cmd('AUTH PLAIN !!!!')).toMatchObject(r(501, '5.5.2 Invalid base64 data'));
  });

  it('503 AUTH not defined for HELO; 503 SSL/TLS required before AUTH; 503 during a transaction', async () => {
    const o = await greeted({ auth: auth_ok });
    expect((await o.c.cmd('HELO c.test'))!.code).toBe(250);
    expect(await o.c.cmd('AUTH PLAIN')).toMatchObject(r(503, 'AUTH not defined for HELO'));
    const t = await greeted(
      {
        auth_parse: (txn: Transaction) => {
          txn.notes('tls_enabled', 1);
          return DECLINED;
        },
        auth: auth_ok,
      },
      { tls_before_auth: '1' },
    );
    expect(await t.c.cmd('AUTH PLAIN')).toMatchObject(r(503, 'SSL/TLS required before AUTH'));
    const m = await greeted({ auth: auth_ok });
    expect((await m.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await m.c.cmd('AUTH PLAIN')).toMatchObject(r(503, '5.5.1 AUTH not permitted during a mail transaction'));
  });

  it('AUTH is not offered when tls_enabled and tls_before_auth', async () => {
    const o = await open(
      {
        ehlo: (txn: Transaction) => {
          txn.notes('tls_enabled', 1);
          return DECLINED;
        },
        auth: auth_ok,
      },
      { tls_before_auth: '1' },
    );
    const ehlo = (await o.c.cmd('EHLO c.test'))!;
    expect(ehlo.lines.some((l) => l.startsWith('AUTH'))).toBe(false);
    expect(await o.c.cmd('AUTH PLAIN')).toMatchObject(r(500, 'Unrecognized command'));
  });

  it('max_auth_failures (default 3): the next AUTH → 421 4.7.0 and close', async () => {
    const o = await greeted({ auth: auth_ok });
    for (let i = 0; i < 3; i++) expect((await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0bad')}`))!.code).toBe(535);
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`)).toMatchObject(r(421, '4.7.0 Too many authentication failures, closing connection'));
    await closed(o);
  });

  it('500 Internal server error for an offered mechanism the engine cannot run', async () => {
    // hooks.register bypasses the hook-name check, so an auth-<other> hook can exist
    const o = await open({ 'auth-xoauth2': () => OK });
    expect((await o.c.cmd('EHLO c.test'))!.lines.at(-1)).toBe('AUTH XOAUTH2');
    expect(await o.c.cmd('AUTH XOAUTH2')).toMatchObject(r(500, 'Internal server error'));
  });

  it('a dying auth plugin → 451 4.3.0', async () => {
    const o = await greeted({
      auth: () => {
        throw new Error('db down');
      },
    });
    expect(await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`)).toMatchObject(r(451, FAULT));
  });

  it('the Received header says ESMTPA and Authentication-Results auth=pass after AUTH', async () => {
    let head = '';
    const o = await with_rcpt([
      ['auth', auth_ok],
      ['queue', (t: Transaction) => ((head = t.header()!.as_string()), OK)],
    ]);
    expect((await o.c.cmd(`AUTH PLAIN ${b64('\0good@example.test\0good_pass')}`))!.code).toBe(235);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect((await o.c.cmd('Subject: x\r\n\r\nb\r\n.'))!.code).toBe(250);
    expect(head).toMatch(/^Authentication-Results: mx\.example\.test; auth=pass \(plain\) smtp\.auth=good@example\.test\n/);
    expect(head).toMatch(new RegExp(`\nReceived: from Unknown \\(HELO client\\.test\\) \\(127\\.0\\.0\\.1\\)\n by ${ME} \\(qpsmtpd-ts/${o.runtime.version}\\) with ESMTPA id [0-9A-F-]{36}\\.1; `));
  });
});

describe('3.11 faults: a dying plugin answers 451 4.3.0 (not qpsmtpd\'s silent continue)', () => {
  const die = () => {
    throw new Error('dead');
  };
  for (const hook of ['mail', 'rcpt', 'data', 'data_post', 'vrfy', 'noop', 'help', 'unrecognized_command', 'mail_pre', 'rcpt_pre']) {
    it(`${hook}`, async () => {
      const o = await greeted({ [hook]: die, ...(hook === 'rcpt' ? {} : { rcpt: () => OK }) });
      const c = o.c;
      let reply: Reply | null;
      if (hook === 'mail' || hook === 'mail_pre') reply = await c.cmd('MAIL FROM:<a@b.test>');
      else if (hook === 'rcpt' || hook === 'rcpt_pre') {
        await c.cmd('MAIL FROM:<a@b.test>');
        reply = await c.cmd('RCPT TO:<x@example.test>');
      } else if (hook === 'data') {
        await envelope(c);
        reply = await c.cmd('DATA');
      } else if (hook === 'data_post') {
        await envelope(c);
        await c.cmd('DATA');
        reply = await c.cmd('Subject: x\r\n\r\nb\r\n.');
      } else if (hook === 'unrecognized_command') reply = await c.cmd('XYZZY');
      else reply = await c.cmd(hook.toUpperCase());
      expect(reply).toMatchObject(r(451, FAULT));
      await in_sync(c, hook === 'noop' ? 'RSET' : 'NOOP');
      expect(o.logged.some((l) => l.endsWith('FATAL PLUGIN ERROR [___MockHook___]: dead'))).toBe(true);
    });
  }

  for (const hook of ['helo_parse', 'ehlo_parse', 'mail_parse', 'rcpt_parse', 'auth_parse']) {
    it(`${hook} (parse hooks too)`, async () => {
      const o = await open({ [hook]: die, rcpt: () => OK, auth: () => OK });
      const c = o.c;
      let reply: Reply | null;
      if (hook === 'helo_parse') reply = await c.cmd('HELO c.test');
      else if (hook === 'ehlo_parse') reply = await c.cmd('EHLO c.test');
      else {
        expect((await c.cmd('EHLO c.test'))!.code).toBe(250);
        if (hook === 'mail_parse') reply = await c.cmd('MAIL FROM:<a@b.test>');
        else if (hook === 'rcpt_parse') {
          expect((await c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
          reply = await c.cmd('RCPT TO:<x@example.test>');
        } else reply = await c.cmd('AUTH PLAIN');
      }
      expect(reply).toMatchObject(r(451, FAULT));
      await in_sync(c);
    });
  }

  it('a dying received_line plugin → 451 4.3.0, nothing queued', async () => {
    let queued = 0;
    const o = await with_rcpt([
      ['received_line', die],
      ['queue', () => (queued++, OK)],
    ]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect(await o.c.cmd('Subject: x\r\n\r\nb\r\n.')).toMatchObject(r(451, FAULT));
    expect(queued).toBe(0);
  });

  it('a hook past its hook_timeout → 451 4.3.0', async () => {
    const o = await greeted({ rcpt: () => new Promise(() => {}) }, { hook_timeout: '1' });
    expect((await o.c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await o.c.cmd('RCPT TO:<x@example.test>', 4000)).toMatchObject(r(451, FAULT));
  });

  it('continue_on_error: qpsmtpd\'s behaviour (log, next plugin) on request', async () => {
    const { runtime } = await make_runtime({ me: ME });
    mock_hook(runtime, 'rcpt', () => OK, 'second');
    const p = mock_hook(runtime, 'rcpt', die);
    p.continue_on_error = true;
    const { client } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    expect(await client.cmd('RCPT TO:<x@example.test>')).toMatchObject(r(250, '<x@example.test>, recipient ok'));
  });
});

describe('decided engine behaviour (DECISIONS.md)', () => {
  it('500 5.5.2 Line too long for a command over 512 octets incl. CRLF; the tail is never run', async () => {
    const o = await open();
    expect(await o.c.cmd('NOOP ' + 'x'.repeat(505))).toMatchObject(r(250, 'OK'));
    expect(await o.c.cmd('NOOP ' + 'x'.repeat(506))).toMatchObject(r(500, '5.5.2 Line too long'));
    o.c.send('HELO ' + 'a'.repeat(507) + 'QUIT\r\n');
    expect(await o.c.reply()).toMatchObject(r(500, '5.5.2 Line too long'));
    await in_sync(o.c);
  });

  it('AUTH continuation lines up to 12290 octets incl. CRLF; longer → 500 5.5.6', async () => {
    const o = await greeted({ auth: () => DENY }, { max_auth_failures: '0' });
    expect((await o.c.cmd('AUTH PLAIN'))!.code).toBe(334);
    expect(await o.c.cmd('A'.repeat(12284) + 'AA==')).toMatchObject({ code: 535 });
    expect((await o.c.cmd('AUTH PLAIN'))!.code).toBe(334);
    expect(await o.c.cmd('A'.repeat(12289))).toMatchObject(r(500, '5.5.6 Authentication Exchange line is too long'));
    await in_sync(o.c);
  });

  it('control characters in the arguments of known commands → 501', async () => {
    const o = await greeted();
    for (const line of ['HELO a\x00b.test', 'MAIL FROM:<a\x00@example.test>', 'EHLO evil.test\rX-Injected: yes', 'NOOP \x1b[2J', 'RCPT TO:<a@b>\x7f']) {
      expect(await o.c.cmd(line)).toMatchObject(r(501, '5.5.2 Syntax error: control characters in command'));
    }
    expect(await o.c.cmd('NOOP\x00')).toMatchObject(r(500, 'Unrecognized command'));
    expect(await o.c.cmd('FOO\rBAR')).toMatchObject(r(500, 'Unrecognized command'));
  });

  for (const cmd of ['EHLO c.test', 'HELO c.test']) {
    it(`${cmd.split(' ')[0]} must end a pipelined group: 554 5.5.0 and close`, async () => {
      const o = await open();
      o.c.send(`${cmd}\r\nMAIL FROM:<a@example.test>\r\n`);
      expect((await o.c.reply())!.code).toBe(250);
      expect(await o.c.reply()).toMatchObject(r(554, '5.5.0 Error: SMTP protocol synchronization'));
      await closed(o);
    });
  }

  it('input sent in a later write, before the EHLO reply (slow hook), is a synchronization error too', async () => {
    const slow = () => new Promise<number>((res) => setTimeout(() => res(DECLINED), 150));
    const o = await open({ ehlo: slow });
    expect(o.greeting!.code).toBe(220);
    o.c.send('EHLO c.test\r\n');
    await new Promise((res) => setTimeout(res, 30));
    o.c.send('MAIL FROM:<a@example.test>\r\n');
    expect((await o.c.reply())!.code).toBe(250);
    expect(await o.c.reply()).toMatchObject(r(554, '5.5.0 Error: SMTP protocol synchronization'));
    await closed(o);
    // the same, waiting for the reply: in sync
    const p = await open({ ehlo: slow });
    expect((await p.c.cmd('EHLO c.test'))!.code).toBe(250);
    expect((await p.c.cmd('MAIL FROM:<a@example.test>'))!.code).toBe(250);
  });

  it('DATA must end a pipelined group: an accepted DATA checks before its 354', async () => {
    let queued = 0;
    const o = await with_rcpt([['queue', () => (queued++, OK)]]);
    await envelope(o.c);
    o.c.send('DATA\r\nSubject: early\r\n\r\nx\r\n.\r\n');
    expect(await o.c.reply()).toMatchObject(r(554, '5.5.0 Error: SMTP protocol synchronization'));
    await closed(o);
    expect(queued).toBe(0);
  });

  it('a rejected DATA with input behind it → 503 then 554 5.5.0 and close', async () => {
    const o = await greeted();
    o.c.send('DATA\r\nSubject: s\r\n');
    expect(await o.c.reply()).toMatchObject(r(503, 'MAIL first'));
    expect(await o.c.reply()).toMatchObject(r(554, '5.5.0 Error: SMTP protocol synchronization'));
    await closed(o);
  });

  it('commands pipelined after a message terminator are fine', async () => {
    let queued = 0;
    const o = await with_rcpt([['queue', () => (queued++, [OK, 'Queued'])]]);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    o.c.send('Subject: a\r\n\r\na\r\n.\r\nMAIL FROM:<s2@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n');
    expect((await o.c.reply())!.code).toBe(250);
    expect((await o.c.reply())!.code).toBe(250);
    expect((await o.c.reply())!.code).toBe(250);
    expect((await o.c.reply())!.code).toBe(354);
    expect(await o.c.cmd('Subject: c\r\n\r\nc\r\n.')).toMatchObject(r(250, 'Queued'));
    expect(queued).toBe(2);
  });

  it('BDAT → 521 and close, nothing behind it is run', async () => {
    const o = await with_rcpt();
    await envelope(o.c);
    o.c.send('BDAT 65 LAST\r\nMAIL FROM:<smuggled@example.test>\r\nRCPT TO:<r@example.test>\r\nDATA\r\n');
    expect(await o.c.reply()).toMatchObject(r(521, '5.5.1 BDAT not supported (CHUNKING is not offered), closing connection'));
    await closed(o);
  });

  it('max_errors (default 20): the 20th error reply is followed by 421 4.7.0 and close', async () => {
    const o = await open();
    for (let i = 1; i < 20; i++) expect((await o.c.cmd('XYZZY'))!.code).toBe(500);
    expect((await o.c.cmd('XYZZY'))!.code).toBe(500);
    expect(await o.c.reply()).toMatchObject(r(421, '4.7.0 Too many errors, closing connection'));
    await closed(o);
  });

  it('max_errors is configurable; 0 switches it off', async () => {
    const o = await open({}, { max_errors: '2' });
    expect((await o.c.cmd('XYZZY'))!.code).toBe(500);
    expect((await o.c.cmd('XYZZY'))!.code).toBe(500);
    expect((await o.c.reply())!.code).toBe(421);
    await closed(o);
    const p = await open({}, { max_errors: '0' });
    for (let i = 0; i < 30; i++) expect((await p.c.cmd('XYZZY'))!.code).toBe(500);
  });

  it('max_junk_commands (default 100): NOOP/RSET/VRFY/HELP past the limit → 421 4.7.0', async () => {
    const o = await open();
    for (let i = 1; i <= 100; i++) expect((await o.c.cmd(['NOOP', 'RSET', 'VRFY x', 'HELP'][i % 4]!))!.code).toBeLessThan(300);
    // the 101st is still answered, then the session ends
    expect(await o.c.cmd('NOOP')).toMatchObject(r(250, 'OK'));
    expect(await o.c.reply()).toMatchObject(r(421, '4.7.0 Too many commands without mail, closing connection'));
    await closed(o);
  });

  it('a queued message resets the junk counter', async () => {
    const o = await with_rcpt([['queue', () => OK]], { max_junk_commands: '3' });
    for (let i = 0; i < 3; i++) expect((await o.c.cmd('NOOP'))!.code).toBe(250);
    await envelope(o.c);
    expect((await o.c.cmd('DATA'))!.code).toBe(354);
    expect((await o.c.cmd('Subject: x\r\n\r\nb\r\n.'))!.code).toBe(250);
    for (let i = 0; i < 4; i++) expect((await o.c.cmd('NOOP'))!.code).toBe(250);
    expect((await o.c.reply())!.code).toBe(421);
  });

  it('reply text never carries CR, LF or NUL from a plugin message', async () => {
    const o = await greeted({ mail: () => [DENY, 'bad\rthing\x00here'] });
    o.c.send('MAIL FROM:<a@b.test>\r\n');
    expect(await o.c.reply()).toMatchObject(r(550, 'bad thing here'));
  });

  it('a plugin message "0" still gets the default text (Perl truth)', async () => {
    const o = await greeted({ mail: () => [DENY, '0'] });
    expect(await o.c.cmd('MAIL FROM:<a@b.test>')).toMatchObject(r(550, '<a@b.test>, denied'));
    await in_sync(o.c);
  });
});

describe("t/qpsmtpd.t: the helo responder table (a dying plugin answers 451 4.3.0 here)", () => {
  async function helo(mocks: Mocks) {
    const o = await open(mocks);
    return { o, reply: await o.c.cmd('HELO somewhere.test') };
  }

  it('DENY → 550 noway', async () => {
    const { o, reply } = await helo({ helo: () => [DENY, 'noway'] });
    expect(reply).toMatchObject(r(550, 'noway'));
    await in_sync(o.c);
  });

  it('DENY_DISCONNECT → 550 boo, disconnected', async () => {
    const { o, reply } = await helo({ helo: () => [DENY_DISCONNECT, 'boo'] });
    expect(reply).toMatchObject(r(550, 'boo'));
    await closed(o);
  });

  it('DENYSOFT → 450', async () => {
    const { reply } = await helo({ helo: () => [DENYSOFT, 'wait'] });
    expect(reply).toMatchObject(r(450, 'wait'));
  });

  it('DENYSOFT_DISCONNECT → 450, disconnected', async () => {
    let disconnect = 0;
    const { o, reply } = await helo({ helo: () => [DENYSOFT_DISCONNECT, 'later'], disconnect: () => void disconnect++ });
    expect(reply).toMatchObject(r(450, 'later'));
    await closed(o);
    expect(disconnect).toBe(1);
  });

  it('DECLINED then DENY → 550', async () => {
    const { reply } = await helo([
      ['helo', () => DECLINED],
      ['helo', () => [DENY, 'second says no']],
    ]);
    expect(reply).toMatchObject(r(550, 'second says no'));
  });

  it('invalid rc 123456 is logged, then DENY → 550', async () => {
    const { o, reply } = await helo([
      ['helo', () => [123456, 'bogus']],
      ['helo', () => [DENY, 'after bogus']],
    ]);
    expect(reply).toMatchObject(r(550, 'after bogus'));
    expect(o.logged.some((l) => l.endsWith('Plugin ___MockHook___, hook helo returned 123456'))).toBe(true);
  });

  it('undef (DECLINED in the port) then DENY → 550', async () => {
    const { reply } = await helo([
      ['helo', () => undefined],
      ['helo', () => [DENY, 'after undef']],
    ]);
    expect(reply).toMatchObject(r(550, 'after undef'));
  });

  it('a dying plugin → logged LOGCRIT, 451 4.3.0 (qpsmtpd: log and run the next plugin)', async () => {
    const { o, reply } = await helo([
      [
        'helo',
        () => {
          throw new Error('dead');
        },
      ],
      ['helo', () => [DENY, 'never reached']],
    ]);
    expect(reply).toMatchObject(r(451, FAULT));
    expect(o.logged.some((l) => l.endsWith('FATAL PLUGIN ERROR [___MockHook___]: dead'))).toBe(true);
    await in_sync(o.c);
  });

  it('OK → 250 fqdn Hi Unknown [127.0.0.1]; I am so happy to meet you.', async () => {
    const { reply } = await helo({ helo: () => OK });
    expect(reply).toMatchObject(r(250, `${ME} Hi Unknown [127.0.0.1]; I am so happy to meet you.`));
  });
});

describe('t/qpsmtpd-smtp.t: data_respond codes', () => {
  async function data(rc: number | undefined, envelope_first = true) {
    const o = await with_rcpt(rc === undefined ? [] : [['data', () => rc]]);
    if (envelope_first) await envelope(o.c);
    return { o, reply: await o.c.cmd('DATA') };
  }

  it('DENY → 554 - Message denied', async () => {
    expect((await data(DENY)).reply).toMatchObject(r(554, 'Message denied'));
  });
  it('DENYSOFT → 451 - Message denied temporarily', async () => {
    expect((await data(DENYSOFT)).reply).toMatchObject(r(451, 'Message denied temporarily'));
  });
  it('DENY_DISCONNECT → 554, disconnected', async () => {
    const { o, reply } = await data(DENY_DISCONNECT);
    expect(reply).toMatchObject(r(554, 'Message denied'));
    await closed(o);
  });
  it('DENYSOFT_DISCONNECT → 451, disconnected', async () => {
    const { o, reply } = await data(DENYSOFT_DISCONNECT);
    expect(reply).toMatchObject(r(451, 'Message denied temporarily'));
    await closed(o);
  });
  it('no sender → 503 - MAIL first', async () => {
    expect((await data(DECLINED, false)).reply).toMatchObject(r(503, 'MAIL first'));
  });
  it('no recipient → 503 - RCPT first', async () => {
    const o = await greeted({ data: () => DECLINED });
    await o.c.cmd('MAIL FROM:<a@b.test>');
    expect(await o.c.cmd('DATA')).toMatchObject(r(503, 'RCPT first'));
  });
  it('DECLINED with envelope → 354 go ahead', async () => {
    expect((await data(DECLINED)).reply).toMatchObject(r(354, 'go ahead'));
  });
});
