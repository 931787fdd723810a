// earlytalker: qpsmtpd's t/plugin_tests/earlytalker as facts (the APR variants are
// mod_perl-only and have no counterpart), the arguments, and SMTP sessions whose client talks
// before the greeting.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime, mock_hook } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

type R = number | [number, string];
interface Earlytalker extends Plugin {
  connect_handler(t?: unknown): Promise<R>;
  data_handler(t?: unknown): Promise<R>;
  mail_handler(t?: unknown): R;
  log_and_pass(): number;
  log_and_deny(): R;
  wait_length(): number;
}

async function setup(line = 'earlytalker', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Earlytalker;
  // per-test argument changes must not touch the loaded plugin's object
  view._args = { ...view._args };
  return { ...rt, qp, view };
}

const code = (r: R) => (Array.isArray(r) ? r[0] : r);

describe('earlytalker: qpsmtpd plugin tests', () => {
  it('test_reject_type', async () => {
    const { view } = await setup();
    view._args.reject_type = undefined;
    expect(view.get_reject_type()).toBe(DENY);
    view._args.reject_type = 'temp';
    expect(view.get_reject_type()).toBe(DENYSOFT);
    view._args.reject_type = 'disconnect';
    expect(view.get_reject_type()).toBe(DENY_DISCONNECT);
  });

  it('test_log_and_pass', async () => {
    const { view } = await setup();
    expect(view.log_and_pass()).toBe(DECLINED);
  });

  it('test_log_and_deny', async () => {
    const { view, qp } = await setup();
    view._args.reject_type = undefined;
    expect(view.log_and_deny()).toEqual([DENY, 'Connecting host started transmitting before SMTP greeting']);
    view._args.reject_type = 'temp';
    expect(code(view.log_and_deny())).toBe(DENYSOFT);
    view._args.reject_type = 'disconnect';
    expect(code(view.log_and_deny())).toBe(DENY_DISCONNECT);
    expect(qp.connection.notes('earlytalker')).toBe(1);
    expect(qp.connection.notes('karma')).toBe(-3);
  });

  it('test_data_handler', async () => {
    const { view, qp } = await setup();
    view._args['check-at'] = undefined;
    expect(await view.data_handler()).toBe(DECLINED); // no check-at set
    view._args['check-at'] = { DATA: 1 };
    qp.connection.notes('whitelisthost', 1);
    expect(await view.data_handler()).toBe(DECLINED); // whitelisted host
    qp.connection.notes('whitelisthost', 0);
    expect(await view.data_handler()).toBe(DECLINED); // not sure (no client to listen to)
  });

  it('test_connect_handler', async () => {
    const { view, qp } = await setup();
    view._args['check-at'] = undefined;
    expect(await view.connect_handler()).toBe(DECLINED);
    view._args['check-at'] = { CONNECT: 1 };
    qp.connection.notes('whitelisthost', 1);
    expect(await view.connect_handler()).toBe(DECLINED);
    qp.connection.notes('whitelisthost', 0);
    expect(await view.connect_handler()).toBe(DECLINED);
  });

  it('test_mail_handler', async () => {
    const { view, qp } = await setup();
    view._args.reject_type = undefined;
    qp.connection.notes('earlytalker', 0);
    expect(view.mail_handler()).toBe(DECLINED);
    qp.connection.notes('earlytalker', 1);
    expect(code(view.mail_handler())).toBe(DENY);
    view._args.reject_type = 'temp';
    expect(code(view.mail_handler())).toBe(DENYSOFT);
    view._args.reject_type = 'disconnect';
    expect(code(view.mail_handler())).toBe(DENY_DISCONNECT);
  });
});

describe('earlytalker: arguments', () => {
  it('defaults: wait 1, reject 1, reject_type perm, check-at CONNECT; hooks connect and data', async () => {
    const { view, runtime } = await setup();
    expect(view._args).toMatchObject({ wait: 1, reject: 1, reject_type: 'perm', 'check-at': { CONNECT: 1 } });
    expect(runtime.hooks.get('connect').length).toBe(1);
    expect(runtime.hooks.get('data').length).toBe(1);
    expect(runtime.hooks.has('mail')).toBe(false);
  });

  it('check-at is repeatable and case-insensitive; defer-reject adds the mail hook and means temp', async () => {
    const { view, runtime } = await setup('earlytalker check-at data CHECK-AT connect defer-reject 1 wait 2.5');
    expect(view._args['check-at']).toEqual({ DATA: 1, CONNECT: 1 });
    expect(view._args.reject_type).toBe('temp');
    expect(view.wait_length()).toBe(2.5);
    expect(runtime.hooks.get('mail').length).toBe(1);
    const only_data = await setup('earlytalker check-at DATA');
    expect(only_data.view._args['check-at']).toEqual({ DATA: 1 });
  });

  it('legacy action: deny → reject 1, denysoft → reject 1 temp, log → reject 0', async () => {
    expect((await setup('earlytalker action deny')).view._args).toMatchObject({ reject: 1, reject_type: 'perm' });
    expect((await setup('earlytalker action denysoft')).view._args).toMatchObject({ reject: 1, reject_type: 'temp' });
    expect((await setup('earlytalker action log')).view._args).toMatchObject({ reject: 0 });
    expect((await setup('earlytalker action log reject 1')).view._args).toMatchObject({ reject: '1' });
    expect((await setup('earlytalker defer-reject 1 reject_type disconnect')).view._args.reject_type).toBe('disconnect');
  });

  it('the connection note earlytalker_wait overrides wait', async () => {
    const { view, qp } = await setup('earlytalker wait 3');
    expect(view.wait_length()).toBe(3);
    qp.connection.notes('earlytalker_wait', 7);
    expect(view.wait_length()).toBe(7);
  });

  it('refuses unknown and malformed arguments at start-up', async () => {
    await expect(setup('earlytalker delay 1')).rejects.toThrow(/earlytalker: unknown argument 'delay'/);
    await expect(setup('earlytalker wait')).rejects.toThrow(/key\/value pairs/);
    await expect(setup('earlytalker check-at HELO')).rejects.toThrow(/check-at must be CONNECT or DATA, got 'HELO'/);
    await expect(setup('earlytalker wait soon')).rejects.toThrow(/wait must be a number/);
    await expect(setup('earlytalker reject maybe')).rejects.toThrow(/reject must be 0, 1 or naughty/);
  });
});

describe('earlytalker: SMTP sessions', () => {
  it('a patient client gets the greeting after the wait', async () => {
    const { runtime } = await setup('earlytalker wait 0.3');
    const { client, session, done } = start_session(runtime);
    const t0 = Date.now();
    expect((await client.reply())!.code).toBe(220);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(session.connection.notes('earlytalker')).toBeUndefined();
    expect((await client.cmd('HELO client.test'))!.code).toBe(250);
    expect((await client.cmd('QUIT'))!.code).toBe(221);
    await done;
  });

  it('a client talking first is refused with 550 and disconnected', async () => {
    const { runtime } = await setup('earlytalker wait 2');
    const seen: Record<string, unknown> = {};
    mock_hook(runtime, 'disconnect', function (this: Plugin) {
      seen.earlytalker = this.connection.notes('earlytalker');
      seen.karma = this.connection.notes('karma');
    });
    const { client, done } = start_session(runtime);
    const t0 = Date.now();
    client.send('EHLO spammer.test\r\n');
    expect(await client.reply()).toMatchObject({ code: 550, text: 'Connecting host started transmitting before SMTP greeting' });
    expect(Date.now() - t0).toBeLessThan(1500); // answered when the bytes came, not after the wait
    expect(await client.wait_closed()).toBe(true);
    await done;
    expect(seen).toEqual({ earlytalker: 1, karma: -1 });
  });

  it('reject_type temp → 450; reject 0 only logs and greets', async () => {
    const temp = start_session((await setup('earlytalker wait 1 reject_type temp')).runtime);
    temp.client.send('HELO x\r\n');
    expect(await temp.client.reply()).toMatchObject({ code: 450, text: 'Connecting host started transmitting before SMTP greeting' });
    await temp.done;

    const { runtime, logged } = await setup('earlytalker wait 1 reject 0', { loglevel: '6' });
    const { client, done } = start_session(runtime);
    client.send('HELO x\r\n');
    expect((await client.reply())!.code).toBe(220);
    expect((await client.reply())!.code).toBe(250); // the early HELO is then served normally
    expect(logged.some((l) => /earlytalker: fail, tolerated, remote started talking before we said hello/.test(l))).toBe(true);
    await client.cmd('QUIT');
    await done;
  });

  it('defer-reject: greets, then refuses every MAIL (temp by default)', async () => {
    const { runtime } = await setup('earlytalker wait 1 defer-reject 1');
    const { client, session, done } = start_session(runtime);
    client.send('EHLO spammer.test\r\n');
    expect((await client.reply())!.code).toBe(220);
    expect((await client.reply())!.code).toBe(250);
    expect(session.connection.notes('earlytalker')).toBe(1);
    expect(await client.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 450, text: 'Connecting host started transmitting before SMTP greeting' });
    expect(await client.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 450 });
    expect((await client.cmd('QUIT'))!.code).toBe(221);
    await done;
  });

  it('check-at DATA: content sent before the 354 is refused with 554', async () => {
    const { runtime } = await setup('earlytalker wait 1 check-at DATA', { plugins: ['earlytalker wait 1 check-at DATA', 'rcpt_ok'], rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220); // no CONNECT check: no wait needed
    await client.cmd('HELO client.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    expect((await client.cmd('RCPT TO:<u@example.test>'))!.code).toBe(250);
    client.send('DATA\r\nSubject: spam\r\n\r\nbuy\r\n.\r\n');
    expect(await client.reply()).toMatchObject({ code: 554, text: 'Connecting host started transmitting before SMTP greeting' });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('check-at DATA: a client that waits for the 354 is served', async () => {
    const { runtime } = await setup('x', { plugins: ['earlytalker wait 0.2 check-at DATA', 'rcpt_ok'], rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    await client.cmd('RCPT TO:<u@example.test>');
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect((await client.cmd('Subject: hi\r\n\r\nhello\r\n.'))!.code).toBe(451); // no queue plugin
    await client.cmd('QUIT');
    await done;
  });

  it('immune clients and good karma are not delayed; earlytalker_wait from an earlier plugin is used', async () => {
    const { runtime } = await setup('earlytalker wait 3');
    mock_hook(runtime, 'connect', function (this: Plugin) {
      this.connection.relay_client(1);
    });
    let s = start_session(runtime);
    let t0 = Date.now();
    expect((await s.client.reply())!.code).toBe(220);
    expect(Date.now() - t0).toBeLessThan(1500);
    await s.client.cmd('QUIT');
    await s.done;

    const k = await setup('earlytalker wait 3');
    mock_hook(k.runtime, 'connect', function (this: Plugin) {
      this.connection.notes('karma_history', 6);
    });
    s = start_session(k.runtime);
    t0 = Date.now();
    s.client.send('HELO early\r\n');
    expect((await s.client.reply())!.code).toBe(220);
    expect(Date.now() - t0).toBeLessThan(1500);
    await s.client.cmd('QUIT');
    await s.done;

    const w = await setup('earlytalker wait 30');
    mock_hook(w.runtime, 'connect', function (this: Plugin) {
      this.connection.notes('earlytalker_wait', 0.2);
    });
    s = start_session(w.runtime);
    t0 = Date.now();
    expect((await s.client.reply())!.code).toBe(220);
    expect(Date.now() - t0).toBeLessThan(5000);
    await s.client.cmd('QUIT');
    await s.done;
  });
});
