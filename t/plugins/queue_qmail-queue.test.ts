// queue/qmail-queue with real programs speaking the qmail-queue protocol
// (t/fixtures/plugins-c/qmail-queue-capture, qmail-queue-fail): the bytes on fd 0 and fd 1, the
// replies for exit 0 / exit 11 / signals / programs that cannot run, the path rules, and SMTP
// sessions.
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DECLINED, OK, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { executable, fill_transaction, open_session, quit, send_message, temp_dirs, view_of } from '../fixtures/plugins-c/helpers.js';

interface QmailQueue extends Plugin {
  _queue_exec: string;
  hook_queue(t: Transaction): Promise<number | [number, string]>;
}

let CAPTURE = '';
let FAIL = '';
beforeAll(() => {
  [CAPTURE, FAIL] = executable('qmail-queue-capture', 'qmail-queue-fail');
});

const tmp = temp_dirs();
const transactions: Transaction[] = [];
afterEach(async () => {
  delete process.env.QMAIL_QUEUE_CAPTURE;
  for (const t of transactions.splice(0)) await t.cleanup();
  tmp.cleanup();
});

function capture_to(): string {
  const base = path.join(tmp.make(), 'q');
  process.env.QMAIL_QUEUE_CAPTURE = base;
  return base;
}

async function setup(line: string, env: Record<string, string> = {}) {
  const rt = await make_runtime({ plugins: ['rcpt_ok', line], me: 'mx.example.test', rcpthosts: ['example.test'], loglevel: '7' }, { env });
  const { qp, view } = view_of<QmailQueue>(rt.runtime, 'queue::qmail_2dqueue');
  transactions.push(qp.transaction);
  return { ...rt, qp, view };
}

/** A program written into a temp dir (for the odd cases). */
function program(body: string): string {
  const p = path.join(tmp.make(), 'qq');
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

describe('queue/qmail-queue: the protocol', () => {
  it('message on fd 0, envelope F<sender>\\0T<rcpt>\\0…\\0\\0 on fd 1; exit 0 → OK "Queued! <time> qp <pid> <Message-Id>"', async () => {
    const cap = capture_to();
    const { view, qp } = await setup(`queue/qmail-queue ${CAPTURE}`);
    const t = qp.transaction;
    t.sender(qp.address('<a@b.test>'));
    t.add_recipient(qp.address('<x@example.test>'));
    t.add_recipient(qp.address('<y@example.test>'));
    await fill_transaction(t, 'Subject: hi\nMessage-Id: <abc@b.test>\n', '\nbody\n.dot\n');
    const before = Math.floor(Date.now() / 1000);
    const r = await view.hook_queue(t);
    expect(r).toEqual([OK, expect.stringMatching(/^Queued! \d+ qp \d+ <abc@b\.test>$/)]);
    const [, time, , pid] = (r as [number, string])[1].split(' ');
    expect(Number(time)).toBeGreaterThanOrEqual(before);
    expect(Number(pid)).toBeGreaterThan(0);
    expect(readFileSync(`${cap}.message`, 'latin1')).toBe('Subject: hi\nMessage-Id: <abc@b.test>\n\nbody\n.dot\n');
    expect(readFileSync(`${cap}.envelope`, 'latin1')).toBe('Fa@b.test\0Tx@example.test\0Ty@example.test\0\0');
  });

  it('null sender is an empty F; a missing Message-Id is <>; one without brackets gets them', async () => {
    const cap = capture_to();
    const { view, qp } = await setup(`queue/qmail-queue ${CAPTURE}`);
    const t = qp.transaction;
    t.sender(qp.address('<>'));
    t.add_recipient(qp.address('<x@example.test>'));
    await fill_transaction(t, 'Subject: bounce\n', '\nb\n');
    expect(await view.hook_queue(t)).toEqual([OK, expect.stringMatching(/^Queued! \d+ qp \d+ <>$/)]);
    expect(readFileSync(`${cap}.envelope`, 'latin1')).toBe('F\0Tx@example.test\0\0');
    t.header()!.add('Message-Id', 'bare@id');
    expect(await view.hook_queue(t)).toEqual([OK, expect.stringMatching(/ <bare@id>$/)]);
  });

  it('exit 11 → DECLINED "Unable to queue message (11)"', async () => {
    const { view, qp } = await setup(`queue/qmail-queue ${FAIL}`);
    await fill_transaction(qp.transaction, 'Subject: x\n', '\nb\n');
    expect(await view.hook_queue(qp.transaction)).toEqual([DECLINED, 'Unable to queue message (11)']);
  });

  it('killed by a signal is a failure (qpsmtpd read status 0 and said Queued)', async () => {
    const { view, qp } = await setup(`queue/qmail-queue ${program('kill -9 $$')}`);
    await fill_transaction(qp.transaction, 'Subject: x\n', '\nb\n');
    expect(await view.hook_queue(qp.transaction)).toEqual([DECLINED, 'Unable to queue message (SIGKILL)']);
  });

  it('exit 0 without reading the message is a failure', async () => {
    const { view, qp } = await setup(`queue/qmail-queue ${program('exit 0')}`);
    await fill_transaction(qp.transaction, 'Subject: x\n', '\n' + 'y'.repeat(999) + '\n'.repeat(1) + ('z'.repeat(1000) + '\n').repeat(4000));
    expect(await view.hook_queue(qp.transaction)).toEqual([DECLINED, 'Unable to queue message (incomplete)']);
  });

  it('a program that cannot run → "Unable to queue message (6)"', async () => {
    const { view, qp, logged } = await setup('queue/qmail-queue /nonexistent/qmail-queue');
    expect(logged.some((l) => l.includes('/nonexistent/qmail-queue is not an executable file'))).toBe(true);
    expect(await view.hook_queue(qp.transaction)).toEqual([DECLINED, 'Unable to queue message (6)']);
  });
});

describe('queue/qmail-queue: the program path', () => {
  it('default $QMAIL/bin/qmail-queue or /var/qmail/bin/qmail-queue; QMAILQUEUE wins', async () => {
    expect((await setup('queue/qmail-queue')).view._queue_exec).toBe('/var/qmail/bin/qmail-queue');
    expect((await setup('queue/qmail-queue', { QMAIL: '/opt/qmail' })).view._queue_exec).toBe('/opt/qmail/bin/qmail-queue');
    expect((await setup(`queue/qmail-queue ${FAIL}`, { QMAILQUEUE: CAPTURE })).view._queue_exec).toBe(CAPTURE);
    expect((await setup(`queue/qmail-queue ${FAIL}`)).view._queue_exec).toBe(FAIL);
  });

  it('unsafe characters, a relative path or extra arguments stop the start-up', async () => {
    await expect(setup('queue/qmail-queue bin/qmail-queue')).rejects.toThrow(/Unexpected characters in the qmail-queue path 'bin\/qmail-queue'/);
    await expect(setup('queue/qmail-queue /var/qmail/bin/qmail-queue;rm')).rejects.toThrow(/Unexpected characters/);
    await expect(setup('queue/qmail-queue', { QMAILQUEUE: '/tmp/q q' })).rejects.toThrow(/Unexpected characters/);
    await expect(setup('queue/qmail-queue /a /b')).rejects.toThrow(/plugin queue::qmail_2dqueue: takes one argument/);
  });
});

describe('queue/qmail-queue: SMTP sessions', () => {
  it('exit 0 → 250 Queued!; the program got the message as queued (core headers included)', async () => {
    const cap = capture_to();
    const { runtime } = await setup(`queue/qmail-queue ${CAPTURE}`);
    const s = await open_session(runtime);
    const r = await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Message-Id: <m1@b.test>', 'Subject: s', '', 'body', '.dot']);
    expect(r).toMatchObject({ code: 250, text: expect.stringMatching(/^Queued! \d+ qp \d+ <m1@b\.test>$/) });
    await quit(s);
    const msg = readFileSync(`${cap}.message`, 'latin1');
    expect(msg).toMatch(/^Authentication-Results: mx\.example\.test; auth=none\nReceived: from Unknown \(HELO client\.test\)/);
    expect(msg.endsWith('\nMessage-Id: <m1@b.test>\nSubject: s\n\nbody\n.dot\n')).toBe(true);
    expect(readFileSync(`${cap}.envelope`, 'latin1')).toBe('Fa@b.test\0Tx@example.test\0\0');
  });

  it('exit 11 → 451 Unable to queue message (11)', async () => {
    const { runtime } = await setup(`queue/qmail-queue ${FAIL}`);
    const s = await open_session(runtime);
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'body'])).toMatchObject({
      code: 451,
      text: 'Unable to queue message (11)',
    });
    await quit(s);
  });

  it('a program that hangs is killed at the hook timeout: 451 4.3.0', async () => {
    const { runtime } = await make_runtime(
      { plugins: ['rcpt_ok', `queue/qmail-queue ${program('exec sleep 30')}`], me: 'mx.example.test', rcpthosts: ['example.test'], hook_timeout: '0.5' },
      { env: {} },
    );
    const s = await open_session(runtime);
    const started = Date.now();
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'body'])).toMatchObject({
      code: 451,
      text: '4.3.0 Internal error - try again later',
    });
    expect(Date.now() - started).toBeLessThan(5000);
    await quit(s);
  });
});
