// logging/adaptive: immediate lines up to `reject`, lines up to `accept` written again with the
// prefix when an accepted transaction ends, nothing again after a deny in the connection.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LOGCRIT, LOGDEBUG, LOGERROR, LOGINFO, LOGWARN, type Plugin } from '../../lib/index.js';
import { make_runtime, stderr_lines } from '../lib/harness.js';
import { open_session, quit, send_message, view_of } from '../fixtures/plugins-c/helpers.js';

const pid = process.pid;

interface Adaptive extends Plugin {
  _minlevel: number;
  _maxlevel: number;
  _prefix: string;
  hook_logging(t: unknown, level: number, hook?: string, plugin?: string, text?: string): number;
}

afterEach(() => {
  vi.restoreAllMocks();
});

async function setup(line = 'logging/adaptive', plugins: string[] = []) {
  const rt = await make_runtime({ logging: [line], plugins, me: 'mx.example.test', rcpthosts: ['example.test'] });
  const { qp, view } = view_of<Adaptive>(rt.runtime, 'logging::adaptive');
  return { ...rt, qp, view };
}

describe('logging/adaptive: arguments', () => {
  it('defaults accept LOGERROR, reject LOGWARN, prefix `', async () => {
    const { view } = await setup();
    expect([view._minlevel, view._maxlevel, view._prefix]).toEqual([LOGERROR, LOGWARN, '`']);
  });

  it('levels as numbers or LOG* names; any prefix', async () => {
    const { view } = await setup('logging/adaptive accept LOGINFO reject 7 prefix >>');
    expect([view._minlevel, view._maxlevel, view._prefix]).toEqual([LOGINFO, LOGDEBUG, '>>']);
  });

  it('bad levels and unknown arguments stop the start-up', async () => {
    await expect(setup('logging/adaptive accept LOGLOUD')).rejects.toThrow(/plugin logging::adaptive: argument 'accept' must be a log level/);
    await expect(setup('logging/adaptive reject 9')).rejects.toThrow(/argument 'reject' must be a log level/);
    await expect(setup('logging/adaptive level 5')).rejects.toThrow(/plugin logging::adaptive: unknown argument 'level'/);
  });
});

describe('logging/adaptive: hook_logging', () => {
  it('writes lines up to the reject level at once, in qpsmtpd\'s format; skips its own', async () => {
    const { view, qp } = await setup('logging/adaptive accept 3 reject 5');
    const err = stderr_lines();
    view.hook_logging(qp.transaction, LOGWARN, 'rcpt', 'rcpt_ok', 'from a plugin');
    view.hook_logging(qp.transaction, LOGCRIT, 'connect', undefined, 'from a hook');
    view.hook_logging(qp.transaction, LOGERROR, undefined, undefined, 'core');
    view.hook_logging(qp.transaction, LOGINFO, undefined, undefined, 'too verbose');
    view.hook_logging(qp.transaction, LOGERROR, undefined, 'logging::adaptive', 'mine');
    view.hook_logging(qp.transaction, LOGERROR, undefined, 'x', 'Initializing logging::adaptive plugin');
    expect(err).toEqual([`${pid} rcpt_ok plugin: from a plugin`, `${pid} running plugin (connect): from a hook`, `${pid} core`]);
    // lines up to accept are kept with the transaction
    expect(qp.transaction.notes('logging-adaptive').map((r: { text: string }) => r.text)).toEqual(['from a hook', 'core', 'Initializing logging::adaptive plugin']);
  });

  it('the built-in logger stays quiet (it is a logging plugin)', async () => {
    const { runtime, logged } = await setup();
    stderr_lines();
    runtime.server_qp.log(LOGERROR, 'hello');
    expect(logged).toEqual([]);
  });
});

describe('logging/adaptive: SMTP sessions', () => {
  it('an accepted message: its lines are written a second time, with the prefix', async () => {
    const { runtime } = await setup('logging/adaptive accept LOGINFO reject LOGINFO', ['rcpt_ok', 'queue/discard']);
    const err = stderr_lines();
    const s = await open_session(runtime);
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).code).toBe(250);
    await quit(s);
    expect(err).toContain(`${pid} rcpt_ok plugin: pass: example.test in rcpthosts`);
    expect(err).toContain(`${pid} \` rcpt_ok plugin: pass: example.test in rcpthosts`);
    expect(err.filter((l) => l.startsWith(`${pid} \` `)).length).toBeGreaterThan(3);
    expect(err).toContain(`${pid} \` dispatching RCPT TO:<x@example.test>`);
  });

  it('after a refusal in the connection nothing is written again, even for a later accepted message', async () => {
    const { runtime } = await setup('logging/adaptive accept LOGINFO reject LOGINFO', ['rcpt_ok', 'queue/discard']);
    const err = stderr_lines();
    const s = await open_session(runtime);
    expect((await s.client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await s.client.cmd('RCPT TO:<x@elsewhere.test>'))!.code).toBe(550); // relaying denied: a deny hook fires
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).code).toBe(250);
    await quit(s);
    expect(err).toContain(`${pid} rcpt_ok plugin: fail: elsewhere.test not in morercpthosts`);
    // (the connection's first transaction ended at MAIL, before the refusal, and was written)
    const again = err.filter((l) => l.startsWith(`${pid} \``));
    expect(again.at(-1)).toBe(`${pid} \` dispatching MAIL FROM:<a@b.test>`);
    expect(again.filter((l) => /rcpt_ok|Queued|RCPT/.test(l))).toEqual([]);
    // another connection starts afresh
    err.length = 0;
    const s2 = await open_session(runtime);
    expect((await send_message(s2.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).code).toBe(250);
    await quit(s2);
    expect(err.filter((l) => l.startsWith(`${pid} \``)).length).toBeGreaterThan(3);
  });
});
