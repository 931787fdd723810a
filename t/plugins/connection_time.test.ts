// connection_time: start time per session, `<s.mmm> s.` logged at post-connection.
// (qpsmtpd has no plugin test for it.)
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface ConnectionTime extends Plugin {
  _connection_start?: bigint;
  connect_handler(): number;
  hook_post_connection(): number;
}

async function setup(line = 'connection_time', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', loglevel: '6', ...files });
  return rt;
}

const timing = (logged: string[]) => logged.filter((l) => /connection_time: \d+\.\d{3} s\.$/.test(l));

describe('connection_time: hooks', () => {
  it('registers pre-connection, connect and post-connection', async () => {
    const { runtime } = await setup();
    for (const h of ['pre-connection', 'connect', 'post-connection']) expect(runtime.hooks.get(h).length).toBe(1);
  });

  it('connect keeps a start time set at pre-connection; post-connection logs the duration', async () => {
    const { runtime, logged } = await setup();
    const qp = new Qpsmtpd(runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
    const view = qp.plugin_view(runtime.plugins[0]!) as ConnectionTime;
    await qp.run_hooks('pre-connection', { remote_ip: '127.0.0.1' });
    const start = view._connection_start;
    expect(typeof start).toBe('bigint');
    await new Promise((r) => setTimeout(r, 120));
    await qp.run_hooks('connect');
    expect(view._connection_start).toBe(start);
    expect(view.hook_post_connection()).toBe(DECLINED);
    const line = timing(logged)[0]!;
    expect(line).toBeDefined();
    expect(Number(/(\d+\.\d{3}) s\./.exec(line)![1])).toBeGreaterThanOrEqual(0.1);
  });

  it('without a start time it logs an error', async () => {
    const { runtime, logged } = await setup();
    const qp = new Qpsmtpd(runtime, new Connection());
    const view = qp.plugin_view(runtime.plugins[0]!) as ConnectionTime;
    expect(view.hook_post_connection()).toBe(DECLINED);
    expect(logged.some((l) => l.endsWith('connection_time: Start time not set?!'))).toBe(true);
  });

  it('the start time belongs to the session (views do not share it)', async () => {
    const { runtime } = await setup();
    const a = new Qpsmtpd(runtime, new Connection());
    const b = new Qpsmtpd(runtime, new Connection());
    await a.run_hooks('connect');
    expect((a.plugin_view(runtime.plugins[0]!) as ConnectionTime)._connection_start).toBeDefined();
    expect((b.plugin_view(runtime.plugins[0]!) as ConnectionTime)._connection_start).toBeUndefined();
    expect((runtime.plugins[0] as ConnectionTime)._connection_start).toBeUndefined();
  });
});

describe('connection_time: arguments', () => {
  it('loglevel (named, or one legacy level as a number or LOG* name) moves the line', async () => {
    // loglevel 6 file: a line moved to LOGDEBUG (7) is not written
    const quiet = await setup('connection_time loglevel +1');
    let s = start_session(quiet.runtime);
    await s.client.reply();
    await s.client.cmd('QUIT');
    await s.done;
    expect(timing(quiet.logged)).toEqual([]);

    const legacy = await setup('connection_time LOGDEBUG');
    expect(legacy.runtime.plugins[0]!._args.loglevel).toBe('7');
    const legacy_num = await setup('connection_time 4');
    expect(legacy_num.runtime.plugins[0]!._args.loglevel).toBe('4');
    s = start_session(legacy_num.runtime);
    await s.client.reply();
    await s.client.cmd('QUIT');
    await s.done;
    expect(timing(legacy_num.logged).length).toBe(1);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(setup('connection_time precision 3')).rejects.toThrow(/connection_time: unknown argument 'precision'/);
    await expect(setup('connection_time LOGLOUD')).rejects.toThrow(/unknown log level 'LOGLOUD'/);
  });
});

describe('connection_time: SMTP session', () => {
  it('logs the length of the session after it ended', async () => {
    const { runtime, logged } = await setup();
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await new Promise((r) => setTimeout(r, 60));
    expect((await client.cmd('QUIT'))!.code).toBe(221);
    await done;
    const lines = timing(logged);
    expect(lines.length).toBe(1);
    expect(Number(/(\d+\.\d{3}) s\./.exec(lines[0]!)![1])).toBeGreaterThanOrEqual(0.05);
  });
});
