// count_unrecognized_commands: qpsmtpd's plugin test as facts, t/misc.t and Appendix A.5.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY_DISCONNECT, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface Counter extends Plugin {
  _unrec_cmd_max: number;
  hook_unrecognized_command(t: unknown, cmd: string): number | [number, string];
}

async function setup(line = 'count_unrecognized_commands 4') {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test' });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Counter;
  return { ...rt, qp, view };
}

describe('count_unrecognized_commands: qpsmtpd plugin test', () => {
  it('DECLINED under the limit, DENY_DISCONNECT at and over it, the counter increments', async () => {
    const { view, qp } = await setup();
    view._unrec_cmd_max = 2;
    qp.connection.notes('unrec_cmd_count', 0);
    expect(view.hook_unrecognized_command(undefined, 'hiya')).toBe(DECLINED);
    qp.connection.notes('unrec_cmd_count', 2);
    const [code, msg] = view.hook_unrecognized_command(undefined, 'snookums') as [number, string];
    expect(code).toBe(DENY_DISCONNECT);
    expect(msg).toBe('Closing connection, 3 unrecognized commands. Perhaps you should read RFC 2821?');
    expect((view.hook_unrecognized_command(undefined, 'wtf') as [number, string])[0]).toBe(DENY_DISCONNECT);
    expect(qp.connection.notes('unrec_cmd_count')).toBe(4);
  });
});

describe('count_unrecognized_commands: arguments', () => {
  it('defaults to 4; 0 also means 4 (qpsmtpd `|| 4`)', async () => {
    expect((await setup('count_unrecognized_commands')).view._unrec_cmd_max).toBe(4);
    expect((await setup('count_unrecognized_commands 0')).view._unrec_cmd_max).toBe(4);
    expect((await setup('count_unrecognized_commands 7')).view._unrec_cmd_max).toBe(7);
  });
  it('refuses a non-number and extra arguments at start-up', async () => {
    await expect(setup('count_unrecognized_commands many')).rejects.toThrow(/must be a number, got 'many'/);
    await expect(setup('count_unrecognized_commands 4 5')).rejects.toThrow(/takes one argument/);
  });
});

describe('count_unrecognized_commands: SMTP session', () => {
  it('t/misc.t: nonsense x3 → 500, the 4th → 521 and the connection closes', async () => {
    const { runtime } = await setup();
    const { client, session, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    for (let i = 1; i <= 3; i++) {
      expect(await client.cmd('nonsense')).toMatchObject({ code: 500, text: 'Unrecognized command' });
      expect(session.connection.notes('unrec_cmd_count')).toBe(i);
    }
    expect(await client.cmd('nonsense')).toMatchObject({
      code: 521,
      text: 'Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?',
    });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('Appendix A.5: odd input counts as unrecognized, known commands do not', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime);
    await client.reply();
    expect(await client.cmd('')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect(await client.cmd(' EHLO x')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    expect(await client.cmd('MAIL\tFROM:<a@b>')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect(await client.cmd('x')).toMatchObject({
      code: 521,
      text: 'Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?',
    });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('counts per connection', async () => {
    const { runtime } = await setup('count_unrecognized_commands 2');
    const a = start_session(runtime);
    const b = start_session(runtime);
    await a.client.reply();
    await b.client.reply();
    expect(await a.client.cmd('foo')).toMatchObject({ code: 500 });
    expect(await b.client.cmd('foo')).toMatchObject({ code: 500 });
    expect(await a.client.cmd('bar')).toMatchObject({ code: 521, text: 'Closing connection, 2 unrecognized commands. Perhaps you should read RFC 2821?' });
    expect(await b.client.cmd('QUIT')).toMatchObject({ code: 221 });
    await Promise.all([a.done, b.done]);
  });
});
