// random_error: the per-hook failure probability and the two failure kinds, with the random
// source replaced. (qpsmtpd has no plugin test for it.)
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENYSOFT, DENYSOFT_DISCONNECT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

type R = number | [number, string];
interface RandomError extends Plugin {
  _how: number;
  rand: () => number;
  random_fail(): R;
  hook_connect(): R;
}

async function setup(line = 'random_error', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const plugin = rt.runtime.plugins[0] as RandomError;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as RandomError;
  return { ...rt, plugin, qp, view };
}

/** A random source that yields `values` in turn. */
const seq = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length]!;
};

describe('random_error: arguments', () => {
  it('percentage default 1, 0 also means 1, negative allowed', async () => {
    expect((await setup()).plugin._how).toBe(1);
    expect((await setup('random_error 0')).plugin._how).toBe(1);
    expect((await setup('random_error 50')).plugin._how).toBe(50);
    expect((await setup('random_error -1')).plugin._how).toBe(-1);
  });

  it('refuses more than one argument, or a non-number', async () => {
    await expect(setup('random_error 1 2')).rejects.toThrow(/random_error: Invalid args: '1 2'/);
    await expect(setup('random_error often')).rejects.toThrow(/must be a number, got 'often'/);
  });

  it('registers connect, helo, ehlo, mail, rcpt, data, data_post', async () => {
    const { runtime } = await setup();
    for (const h of ['connect', 'helo', 'ehlo', 'mail', 'rcpt', 'data', 'data_post']) expect(runtime.hooks.get(h).length).toBe(1);
  });
});

describe('random_error: failures', () => {
  it('per hook the threshold is (1 - p)^(1/6); below it passes', async () => {
    const { view, qp, logged } = await setup('random_error 50', { loglevel: '6' });
    const threshold = 0.5 ** (1 / 6); // 0.890898718140339
    view.rand = seq(threshold - 0.001);
    expect(view.hook_connect()).toBe(DECLINED);
    expect(qp.connection.notes('random_fail_%')).toBe(50);
    expect(logged.some((l) => l.endsWith('to fail, rand(1) must be more than 0.890898718140339'))).toBe(true);
    // rand(1) at or over the threshold fails; then rand(5) < 2 (2 in 5) disconnects
    view.rand = seq(threshold, 0.39);
    expect(view.random_fail()).toEqual([DENYSOFT_DISCONNECT, 'random failure']);
    view.rand = seq(0.95, 0.4);
    expect(view.random_fail()).toEqual([DENYSOFT, 'random failure']);
  });

  it('the rate comes from the connection note random_fail_% (other plugins may change it)', async () => {
    const { view, qp } = await setup('random_error 100');
    view.rand = seq(0.999999);
    qp.connection.notes('random_fail_%', 0);
    expect(view.random_fail()).toBe(DECLINED);
    qp.connection.notes('random_fail_%', 100);
    view.rand = seq(0, 0.9);
    expect(view.random_fail()).toEqual([DENYSOFT, 'random failure']);
  });

  it('a negative percentage never fails', async () => {
    const { view } = await setup('random_error -5');
    view.rand = seq(0.999999);
    for (let i = 0; i < 5; i++) expect(view.hook_connect()).toBe(DECLINED);
  });

  it('over many calls the failure rate per hook is about 1 - (1-p)^(1/6)', async () => {
    const { view, qp } = await setup('random_error 60');
    qp.connection.notes('random_fail_%', 60);
    let fails = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) if (view.random_fail() !== DECLINED) fails++;
    expect(fails / n).toBeGreaterThan(0.1);
    expect(fails / n).toBeLessThan(0.19); // expected 0.1416
  });
});

describe('random_error: SMTP session', () => {
  it('a failure at connect answers 450 random failure; a pass greets', async () => {
    const { runtime, plugin } = await setup('random_error 100');
    plugin.rand = seq(0.99, 0.1);
    let s = start_session(runtime);
    expect(await s.client.reply()).toMatchObject({ code: 450, text: 'random failure' });
    expect(await s.client.wait_closed()).toBe(true);
    await s.done;

    plugin.rand = seq(0.99, 0.9); // DENYSOFT at every hook
    s = start_session(runtime);
    expect(await s.client.reply()).toMatchObject({ code: 450, text: 'random failure' });
    await s.done;

    const ok = await setup('random_error -1');
    s = start_session(ok.runtime);
    expect((await s.client.reply())!.code).toBe(220);
    expect((await s.client.cmd('HELO x.test'))!.code).toBe(250);
    expect((await s.client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    await s.client.cmd('QUIT');
    await s.done;
  });

  it('a failure at MAIL answers 450 random failure and the session goes on', async () => {
    const { runtime, plugin } = await setup('random_error 50');
    // connect passes, HELO passes, MAIL fails (then 0.9*5 >= 2: DENYSOFT), the next MAIL passes
    plugin.rand = seq(0, 0, 0.99, 0.9, 0);
    const s = start_session(runtime);
    expect((await s.client.reply())!.code).toBe(220);
    expect((await s.client.cmd('HELO x.test'))!.code).toBe(250);
    expect(await s.client.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 450, text: 'random failure' });
    expect((await s.client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    await s.client.cmd('QUIT');
    await s.done;
  });
});
