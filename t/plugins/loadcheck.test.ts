// loadcheck: load sources, the cache, the rejection. (qpsmtpd has no plugin test for it.)
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENYSOFT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { REPO, make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

const FIX = path.join(REPO, 't', 'fixtures', 'plugins-a', 'loadavg');

interface Loadcheck extends Plugin {
  _kern_loadavg: string;
  _proc_loadavg: string;
  _state: { load: number; time: number };
  _method?: () => Promise<void> | void;
  loadcheck(t?: unknown): Promise<number | [number, string]>;
  get_load_method(): (() => Promise<void> | void) | undefined;
}

async function setup(line = 'loadcheck', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const plugin = rt.runtime.plugins[0] as Loadcheck;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as Loadcheck;
  return { ...rt, plugin, qp, view };
}

/** Points the loaded plugin at fixture files and picks the method again. */
function use_sources(p: Loadcheck, sources: { kern?: string; proc?: string; uptime?: string }) {
  p._kern_loadavg = sources.kern ?? '/nonexistent/kern/loadavg';
  p._proc_loadavg = sources.proc ?? '/nonexistent/proc/loadavg';
  p._args.uptime = sources.uptime ?? '/nonexistent/uptime';
  p._state = { load: -1, time: 0 };
  p._method = p.get_load_method();
}

describe('loadcheck: arguments', () => {
  it('defaults max_load 7, cache_time 10, uptime /usr/bin/uptime; 0 means the default', async () => {
    expect((await setup()).plugin._args).toMatchObject({ max_load: 7, cache_time: 10, uptime: '/usr/bin/uptime' });
    expect((await setup('loadcheck max_load 0 cache_time 0')).plugin._args).toMatchObject({ max_load: 7, cache_time: 10 });
    expect((await setup('loadcheck max_load 2.5 cache_time 30 uptime /bin/up')).plugin._args).toMatchObject({
      max_load: 2.5,
      cache_time: 30,
      uptime: '/bin/up',
    });
  });

  it('refuses unknown and malformed arguments at start-up', async () => {
    await expect(setup('loadcheck max 3')).rejects.toThrow(/loadcheck: unknown argument 'max'/);
    await expect(setup('loadcheck max_load high')).rejects.toThrow(/max_load must be a number/);
  });

  it('registers connect only when a load source exists', async () => {
    const { runtime, plugin } = await setup();
    // this test machine: /proc/loadavg
    expect(runtime.hooks.get('connect').length).toBe(1);
    use_sources(plugin, {});
    expect(plugin._method).toBeUndefined();
  });
});

describe('loadcheck: load sources', () => {
  it('/proc/loadavg: the first field', async () => {
    const { plugin, view } = await setup();
    use_sources(plugin, { proc: path.join(FIX, 'proc-low') });
    expect(await view.loadcheck()).toEqual([DECLINED, 'continuing with load: 0.42']);
    use_sources(plugin, { proc: path.join(FIX, 'proc-high') });
    expect(await view.loadcheck()).toEqual([DENYSOFT, 'Server load too high, please try again later.']);
  });

  it('/kern/loadavg: fixed-point value divided by the scale (first choice)', async () => {
    const { plugin, view } = await setup();
    use_sources(plugin, { kern: path.join(FIX, 'kern-high'), proc: path.join(FIX, 'proc-low') });
    expect(await view.loadcheck()).toEqual([DENYSOFT, 'Server load too high, please try again later.']);
    expect(plugin._state.load).toBe(10);
  });

  it('uptime: the first load average of its output', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-uptime-'));
    const script = path.join(dir, 'uptime');
    writeFileSync(script, '#!/bin/sh\necho " 10:33AM  up  2:06, 1 user, load averages: 6.55, 3.76, 2.48"\n');
    chmodSync(script, 0o755);
    const { plugin, view } = await setup('loadcheck max_load 6');
    use_sources(plugin, { uptime: script });
    expect(await view.loadcheck()).toEqual([DENYSOFT, 'Server load too high, please try again later.']);
    expect(plugin._state.load).toBe(6.55);
  });

  it('the value is cached for cache_time seconds, across sessions', async () => {
    const { plugin, view, runtime } = await setup('loadcheck cache_time 60');
    use_sources(plugin, { proc: path.join(FIX, 'proc-high') });
    expect((await view.loadcheck()) as unknown[]).toContain(DENYSOFT);
    // the source changes; the cached value still decides, for another session too
    plugin._proc_loadavg = path.join(FIX, 'proc-low');
    const other = new Qpsmtpd(runtime, new Connection()).plugin_view(plugin) as Loadcheck;
    expect((await other.loadcheck()) as unknown[]).toContain(DENYSOFT);
    // once expired it is read again
    plugin._state.time -= 61;
    expect(await other.loadcheck()).toEqual([DECLINED, 'continuing with load: 0.42']);
  });
});

describe('loadcheck: SMTP session', () => {
  it('greets while the load is low; 450 and disconnect while it is too high', async () => {
    const { plugin, runtime } = await setup();
    use_sources(plugin, { proc: path.join(FIX, 'proc-low') });
    let s = start_session(runtime);
    expect((await s.client.reply())!.code).toBe(220);
    await s.client.cmd('QUIT');
    await s.done;

    use_sources(plugin, { proc: path.join(FIX, 'proc-high') });
    s = start_session(runtime);
    expect(await s.client.reply()).toMatchObject({ code: 450, text: 'Server load too high, please try again later.' });
    expect(await s.client.wait_closed()).toBe(true);
    await s.done;
  });
});
