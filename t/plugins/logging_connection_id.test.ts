// logging/connection_id: logging/warn with the connection's id instead of the pid (qpsmtpd's copy
// died in register; this one works): id from the connection note `id`, else made at connect.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DECLINED, LOGERROR, LOGINFO, LOGWARN, type Plugin } from '../../lib/index.js';
import { make_runtime, mock_hook, stderr_lines } from '../lib/harness.js';
import { open_session, quit, send_message, view_of } from '../fixtures/plugins-c/helpers.js';
import { new_connection_id } from '../../plugins/logging/connection_id.js';

const pid = process.pid;
const ID = /^\d{10}\.\d{6}\.\d+\.\d+$/;

afterEach(() => {
  vi.restoreAllMocks();
});

interface ConnId extends Plugin {
  _level: number;
  hook_logging(t: unknown, level: number, hook?: string, plugin?: string, text?: string): number;
}

async function setup(line = 'logging/connection_id', plugins: string[] = []) {
  return make_runtime({ logging: [line], plugins, me: 'mx.example.test', rcpthosts: ['example.test'] });
}

describe('logging/connection_id', () => {
  it('ids look like <time>.<usec>.<pid>.<n> and never repeat in a process', () => {
    const a = new_connection_id();
    const b = new_connection_id();
    expect(a).toMatch(ID);
    expect(a.split('.')[2]).toBe(String(pid));
    expect(a).not.toBe(b);
  });

  it('level: default LOGWARN, a number or a LOG* name; bad ones stop the start-up', async () => {
    stderr_lines();
    const p = (rt: Awaited<ReturnType<typeof setup>>) => view_of<ConnId>(rt.runtime, 'logging::connection_id').view._level;
    expect(p(await setup())).toBe(LOGWARN);
    expect(p(await setup('logging/connection_id 6'))).toBe(LOGINFO);
    expect(p(await setup('logging/connection_id LOGERROR'))).toBe(LOGERROR);
    await expect(setup('logging/connection_id LOGLOUD')).rejects.toThrow(/plugin logging::connection_id: invalid log level 'LOGLOUD'/);
    await expect(setup('logging/connection_id 6 7')).rejects.toThrow(/takes one argument/);
  });

  it('outside a session lines carry the pid; its own lines are skipped; the level filters', async () => {
    const err = stderr_lines();
    const { runtime, logged } = await setup('logging/connection_id 5');
    runtime.server_qp.varlog(LOGWARN, 'connect', 'some::plugin', 'a warning');
    runtime.server_qp.varlog(LOGWARN, 'rcpt', undefined, 'from a hook');
    runtime.server_qp.log(LOGINFO, 'too verbose');
    runtime.server_qp.varlog(LOGERROR, undefined, 'logging::connection_id', 'mine');
    expect(err).toEqual([`${pid} some::plugin plugin: a warning`, `${pid} running plugin (rcpt): from a hook`]);
    expect(logged).toEqual([]); // the built-in logger is replaced
  });

  it('a session: every line starts with the id made at connect, stored in the note `id`; sessions differ', async () => {
    const err = stderr_lines();
    const { runtime } = await setup('logging/connection_id LOGINFO', ['rcpt_ok', 'queue/discard']);
    const a = await open_session(runtime);
    const b = await open_session(runtime);
    expect((await send_message(a.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b'])).code).toBe(250);
    await b.client.cmd('NOOP');
    const id_a = a.session.connection.notes('id');
    const id_b = b.session.connection.notes('id');
    expect(id_a).toMatch(ID);
    expect(id_b).toMatch(ID);
    expect(id_a).not.toBe(id_b);
    await quit(a);
    await quit(b);
    expect(err).toContain(`${id_a} Connection from Unknown [127.0.0.1]`);
    expect(err).toContain(`${id_a} dispatching MAIL FROM:<a@b.test>`);
    expect(err).toContain(`${id_a} rcpt_ok plugin: pass: example.test in rcpthosts`);
    expect(err).toContain(`${id_a} 250 Queued (discarded)`);
    expect(err).toContain(`${id_b} dispatching NOOP`);
    expect(err).not.toContain(`${id_a} dispatching NOOP`);
  });

  it('an id that another plugin set in the connection note `id` is used', async () => {
    const err = stderr_lines();
    const { runtime } = await setup('logging/connection_id LOGINFO', ['rcpt_ok']);
    mock_hook(runtime, 'connect', function (this: Plugin) {
      this.connection.notes('id', 'conn-42');
      return DECLINED;
    });
    const s = await open_session(runtime);
    await quit(s);
    expect(err).toContain('conn-42 dispatching EHLO client.test');
    expect(err).toContain('conn-42 dispatching QUIT');
  });
});
