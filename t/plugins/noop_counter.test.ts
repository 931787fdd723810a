// noop_counter: consecutive NOOPs, the resets, per-session counters.
// (qpsmtpd has no plugin test for it.)
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY_DISCONNECT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface NoopCounter extends Plugin {
  _noop_count: number;
  _max_noop: number;
  hook_noop(): number | [number, string];
  hook_mail(): number;
}

async function setup(line = 'noop_counter', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const plugin = rt.runtime.plugins[0] as NoopCounter;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as NoopCounter;
  return { ...rt, plugin, qp, view };
}

const STOP = 'Stop wasting my time, too many consecutive NOOPs';

describe('noop_counter: hooks', () => {
  it('the max-th consecutive NOOP disconnects; other commands reset the count', async () => {
    const { view } = await setup();
    expect(view._max_noop).toBe(3);
    expect(view.hook_noop()).toBe(DECLINED);
    expect(view.hook_noop()).toBe(DECLINED);
    expect(view.hook_mail()).toBe(DECLINED);
    expect(view._noop_count).toBe(0);
    expect(view.hook_noop()).toBe(DECLINED);
    expect(view.hook_noop()).toBe(DECLINED);
    expect(view.hook_noop()).toEqual([DENY_DISCONNECT, STOP]);
  });

  it('resets on helo ehlo mail rcpt data reset_transaction vrfy help', async () => {
    const { runtime } = await setup();
    for (const h of ['noop', 'helo', 'ehlo', 'mail', 'rcpt', 'data', 'reset_transaction', 'vrfy', 'help']) {
      expect(runtime.hooks.get(h).length).toBe(1);
    }
    expect(runtime.hooks.has('quit')).toBe(false);
  });

  it('arguments: the maximum; 0 means 3; others refused at start-up', async () => {
    expect((await setup('noop_counter 5')).view._max_noop).toBe(5);
    expect((await setup('noop_counter 0')).view._max_noop).toBe(3);
    await expect(setup('noop_counter lots')).rejects.toThrow(/noop_counter: the maximum must be a number, got 'lots'/);
    await expect(setup('noop_counter 3 4')).rejects.toThrow(/takes one argument/);
  });
});

describe('noop_counter: SMTP session', () => {
  it('NOOP NOOP RSET NOOP NOOP are fine; the third NOOP in a row gets 500 and the connection closes', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250, text: 'OK' });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    expect(await client.cmd('RSET')).toMatchObject({ code: 250 });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    expect(await client.cmd('HELP')).toMatchObject({ code: 214 });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 500, text: STOP });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('counts per connection', async () => {
    const { runtime } = await setup('noop_counter 2');
    const a = start_session(runtime);
    const b = start_session(runtime);
    await a.client.reply();
    await b.client.reply();
    expect((await a.client.cmd('NOOP'))!.code).toBe(250);
    expect((await b.client.cmd('NOOP'))!.code).toBe(250);
    expect(await a.client.cmd('NOOP')).toMatchObject({ code: 500, text: STOP });
    expect((await b.client.cmd('HELO b.test'))!.code).toBe(250);
    expect((await b.client.cmd('NOOP'))!.code).toBe(250);
    await b.client.cmd('QUIT');
    await Promise.all([a.done, b.done]);
  });
});
