import { describe, expect, it } from 'vitest';
import { DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, DONE, OK } from '../lib/constants.js';
import { Connection } from '../lib/connection.js';
import { FAULT_MESSAGE, HookTimeoutError } from '../lib/hooks.js';
import { Plugin } from '../lib/plugin.js';
import { Qpsmtpd } from '../lib/qpsmtpd.js';
import { make_runtime, mock_hook } from './lib/harness.js';

async function session(files: Record<string, string | string[]> = {}) {
  const t = await make_runtime({ loglevel: '7', ...files });
  const qp = new Qpsmtpd(t.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  return { ...t, qp };
}

describe('run_hooks (qpsmtpd run_continuation)', () => {
  it('returns rc 0 when no plugin registered the hook', async () => {
    const { qp } = await session();
    expect(await qp.run_hooks('nope')).toEqual({ rc: 0, msg: [] });
    expect(await qp.run_hooks_no_respond('nope')).toEqual([0, '']);
  });

  it('runs in registration order; the first non-DECLINED result wins', async () => {
    const { qp, runtime } = await session();
    const calls: string[] = [];
    mock_hook(runtime, 'helo', () => (calls.push('second'), [DENY, 'gotcha']), 'b');
    mock_hook(runtime, 'helo', () => (calls.push('first'), [DECLINED, 'nm']), 'a');
    mock_hook(runtime, 'helo', () => (calls.push('never'), OK), 'c');
    // mock_hook prepends, so c runs first… re-register to get a, b order only
    runtime.hooks.unregister('helo', 'c');
    const r = await qp.run_hooks('helo', 'somearg');
    expect(calls).toEqual(['first', 'second']);
    expect(r).toMatchObject({ rc: DENY, msg: ['gotcha'], plugin: 'b' });
  });

  it('passes the transaction first, then the hook arguments; `this` is the session view', async () => {
    const { qp, runtime } = await session();
    let seen: unknown[] = [];
    mock_hook(runtime, 'rcpt', function (this: Plugin, txn: unknown, ...args: unknown[]) {
      seen = [txn, this.qp, this.connection, this.hook_name(), ...args];
      return OK;
    });
    await qp.run_hooks('rcpt', 'addr', { notify: 'NEVER' });
    expect(seen).toEqual([qp.transaction, qp, qp.connection, 'rcpt', 'addr', { notify: 'NEVER' }]);
  });

  it('skips an unknown return value with a LOGERROR naming plugin and hook', async () => {
    const { qp, runtime, logged } = await session();
    mock_hook(runtime, 'helo', () => [DENY, 'goaway'], 'second');
    mock_hook(runtime, 'helo', () => [123456, undefined]);
    const r = await qp.run_hooks('helo', 'x');
    expect(r).toMatchObject({ rc: DENY, msg: ['goaway'] });
    expect(logged.some((l) => l.endsWith('Plugin ___MockHook___, hook helo returned 123456'))).toBe(true);
  });

  it('treats undefined as DECLINED', async () => {
    const { qp, runtime } = await session();
    mock_hook(runtime, 'helo', () => [DENY, 'nm'], 'second');
    mock_hook(runtime, 'helo', () => undefined);
    expect((await qp.run_hooks('helo')).rc).toBe(DENY);
  });

  it('a throwing plugin is logged LOGCRIT and answers a temporary failure (DECISIONS: no silent continue)', async () => {
    const { qp, runtime, logged } = await session();
    mock_hook(runtime, 'helo', () => [DENY, 'begone'], 'second');
    mock_hook(runtime, 'helo', () => {
      throw new Error('dead');
    });
    const r = await qp.run_hooks('helo');
    expect(r.rc).toBe(DENYSOFT);
    expect(r.msg).toEqual([FAULT_MESSAGE]);
    expect(r.fault).toBeInstanceOf(Error);
    expect(logged.some((l) => l.endsWith('FATAL PLUGIN ERROR [___MockHook___]: dead'))).toBe(true);
  });

  it('continue_on_error restores qpsmtpd behaviour: log and run the next plugin', async () => {
    const { qp, runtime } = await session();
    mock_hook(runtime, 'helo', () => [DENY, 'begone'], 'second');
    const p = mock_hook(runtime, 'helo', async () => {
      throw new Error('dead');
    });
    p.continue_on_error = true;
    expect(await qp.run_hooks('helo')).toMatchObject({ rc: DENY, msg: ['begone'] });
  });

  it('a hook past its timeout is aborted and becomes a temporary failure', async () => {
    const { qp, runtime, logged } = await session();
    let aborted: unknown;
    const p = mock_hook(runtime, 'data_post', function (this: Plugin) {
      return new Promise((resolve) => {
        this.signal!.addEventListener('abort', () => {
          aborted = this.signal!.reason;
          resolve(OK);
        });
      });
    });
    p.hook_timeout = 0.05;
    const started = Date.now();
    const r = await qp.run_hooks('data_post');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(r.rc).toBe(DENYSOFT);
    expect(r.fault).toBeInstanceOf(HookTimeoutError);
    expect(aborted).toBeInstanceOf(HookTimeoutError);
    expect(logged.some((l) => l.includes('did not finish hook data_post within 0.05 s'))).toBe(true);
  });

  it('a signal first asked for while the hook runs is aborted at the timeout; each call has its own', async () => {
    const { qp, runtime } = await session();
    const signals: AbortSignal[] = [];
    let late: AbortSignal | undefined;
    const p = mock_hook(runtime, 'data_post', function (this: Plugin) {
      // asked for only after the hook's first await
      return new Promise<number>((resolve) => setTimeout(() => {
        late = this.signal;
        late!.addEventListener('abort', () => resolve(OK));
      }, 10));
    });
    p.hook_timeout = 0.1;
    const r = await qp.run_hooks('data_post');
    expect(r.fault).toBeInstanceOf(HookTimeoutError);
    expect(late?.aborted).toBe(true);
    expect(late?.reason).toBeInstanceOf(HookTimeoutError);
    mock_hook(runtime, 'helo', function (this: Plugin) {
      signals.push(this.signal!);
      return DECLINED;
    });
    await qp.run_hooks('helo');
    await qp.run_hooks('helo');
    expect(signals).toHaveLength(2);
    expect(signals[1]).not.toBe(signals[0]);
    expect(signals.map((x) => x.aborted)).toEqual([false, false]);
  });

  it('uses the hook_timeout config when a plugin has no own timeout', async () => {
    const { qp, runtime } = await session({ hook_timeout: '1' });
    expect(runtime.hook_timeout_ms()).toBe(1000);
    mock_hook(runtime, 'queue', () => new Promise(() => {}));
    const r = await qp.run_hooks('queue');
    expect(r.fault).toBeInstanceOf(HookTimeoutError);
  });

  it('splits messages on newlines, drops trailing empty lines, accepts promises', async () => {
    const { qp, runtime } = await session();
    mock_hook(runtime, 'helo', async () => [DENYSOFT, 'line1\nline2\n']);
    expect(await qp.run_hooks('helo')).toMatchObject({ rc: DENYSOFT, msg: ['line1', 'line2'] });
  });

  it('a parse hook returns its parser function untouched', async () => {
    const { qp, runtime } = await session();
    const parser = () => [OK, 'x'];
    mock_hook(runtime, 'mail_parse', () => [OK, parser]);
    const r = await qp.run_hooks('mail_parse', 'FROM:<a@b>');
    expect(r.parser).toBe(parser);
  });

  it('runs deny and ok notification hooks with plugin name, code and message', async () => {
    const { qp, runtime } = await session();
    const notes: unknown[][] = [];
    mock_hook(runtime, 'deny', (_t: unknown, ...a: unknown[]) => (notes.push(['deny', ...a]), DECLINED), 'watcher');
    mock_hook(runtime, 'ok', (_t: unknown, ...a: unknown[]) => (notes.push(['ok', ...a]), DECLINED), 'watcher');
    mock_hook(runtime, 'rcpt', () => [DENY_DISCONNECT, 'bye'], 'denier');
    mock_hook(runtime, 'rcpt', () => DECLINED, 'decliner');
    await qp.run_hooks('rcpt');
    expect(notes).toEqual([
      ['ok', 'decliner', DECLINED, ''],
      ['deny', 'denier', DENY_DISCONNECT, 'bye'],
    ]);
  });

  it("records the return code in a plugin's transaction note hash", async () => {
    const { qp, runtime } = await session();
    mock_hook(runtime, 'mail', () => DONE, 'recorder');
    qp.transaction.notes('recorder', {});
    await qp.run_hooks('mail');
    expect(qp.transaction.notes('recorder')).toEqual({ hook_mail: { return: DONE } });
  });

  it('run_hooks_no_respond logs throws and carries on', async () => {
    const { qp, runtime, logged } = await session();
    mock_hook(runtime, 'disconnect', () => OK, 'second');
    mock_hook(runtime, 'disconnect', () => {
      throw new Error('boom');
    });
    expect(await qp.run_hooks_no_respond('disconnect')).toEqual([OK]);
    expect(logged.some((l) => l.includes('FATAL PLUGIN ERROR [___MockHook___]: boom'))).toBe(true);
  });

  it('register_hook rejects an invalid hook name', async () => {
    const { runtime } = await session();
    const p = mock_hook(runtime, 'noop', () => DECLINED);
    expect(() => p.register_hook('bogus_hook', 'x')).toThrow('___MockHook___: Invalid hook: bogus_hook');
  });
});
