// Facts of qpsmtpd's t/qpsmtpd.t that belong to the core (the helo responder table lives
// with the SMTP engine's tests).
import { existsSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DECLINED, LOGINFO, LOGWARN, OK } from '../lib/constants.js';
import { Address } from '../lib/address.js';
import { Connection } from '../lib/connection.js';
import { Qpsmtpd } from '../lib/qpsmtpd.js';
import { make_runtime, mock_hook, unmock_hook } from './lib/harness.js';

describe('Qpsmtpd core object', () => {
  it('has a version', async () => {
    const { runtime } = await make_runtime();
    expect(runtime.server_qp.version()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('hooks: empty, then populated by loaded plugins', async () => {
    const { runtime } = await make_runtime();
    expect(runtime.hooks.names()).toEqual([]);
    expect(runtime.server_qp.hook_entries('connect')).toEqual([]);
    mock_hook(runtime, 'connect', () => DECLINED);
    expect(runtime.server_qp.hook_entries('connect')).toHaveLength(1);
    expect(await runtime.server_qp.run_hooks_no_respond('connect')).toEqual([DECLINED]);
  });

  it('temp_file and temp_dir live in the spool dir; spool_dir is created 0700', async () => {
    const { runtime, dir } = await make_runtime();
    const qp = runtime.server_qp;
    const spool = qp.spool_dir();
    expect(spool.endsWith('/')).toBe(true);
    expect(statSync(spool).mode & 0o777).toBe(0o700);
    expect(qp.temp_file().startsWith(spool)).toBe(true);
    expect(qp.temp_file()).not.toBe(qp.temp_file());
    const d = qp.temp_dir();
    expect(d.startsWith(spool) && existsSync(d)).toBe(true);
    const d2 = qp.temp_dir(0o775);
    expect(statSync(d2).isDirectory()).toBe(true);
    expect(dir).toBeTruthy();
  });

  it('creates a missing spool dir and warns when its permissions differ from spool_perms', async () => {
    const { runtime, logged } = await make_runtime({ spool_perms: '0750' });
    runtime.spool_dir();
    expect(logged.some((l) => /Permissions on spool_dir .* are not 0750/.test(l))).toBe(true);
  });

  it('size_threshold comes from config, default 0', async () => {
    expect((await make_runtime({ size_threshold: '10000' })).runtime.server_qp.size_threshold()).toBe(10000);
    expect((await make_runtime()).runtime.server_qp.size_threshold()).toBe(0);
  });

  it('authenticated, auth_user and auth_mechanism default to empty', async () => {
    const qp = (await make_runtime()).runtime.server_qp;
    expect(qp.authenticated()).toBe('');
    qp._auth = OK;
    expect(qp.authenticated()).toBe(OK);
    expect(qp.auth_user()).toBe('');
    qp._auth_user = 'matt';
    expect(qp.auth_user()).toBe('matt');
    expect(qp.auth_mechanism()).toBe('');
    qp._auth_mechanism = 'MD5';
    expect(qp.auth_mechanism()).toBe('MD5');
  });

  it('the built-in logger writes "<pid> msg" up to loglevel (default LOGWARN)', async () => {
    const { runtime, logged } = await make_runtime();
    runtime.server_qp.log(LOGWARN, 'test log message');
    runtime.server_qp.log(LOGINFO, 'not shown');
    expect(logged).toEqual([`${process.pid} test log message`]);
  });

  it('log lines never carry raw CR, LF or NUL', async () => {
    const { runtime, logged } = await make_runtime();
    runtime.server_qp.log(LOGWARN, 'evil\r\nX-Injected: yes\0');
    expect(logged[0]).toBe(`${process.pid} evil\\x0d\\x0aX-Injected: yes\\x00`);
  });

  it('config_dir names the directory a setting comes from', async () => {
    const { runtime, dir } = await make_runtime({ logging: '' });
    expect(runtime.server_qp.config_dir('logging')).toBe(dir);
  });

  // t/qpsmtpd.t __config: user_config and config hook combinations
  const cases: Array<{ pref: string; user_config?: unknown[]; config?: unknown[]; user: unknown; global: unknown; descr: string }> = [
    { pref: 'size_threshold', user: '10000', global: '10000', descr: 'no hooks, fall back to the config file' },
    { pref: 'timeout', user: '1200', global: '1200', descr: 'no hooks, fall back to defaults' },
    { pref: 'timeout', user_config: [DECLINED], config: [DECLINED], user: '1200', global: '1200', descr: 'both decline' },
    { pref: 'timeout', user_config: [DECLINED], config: [OK, 1000], user: 1000, global: 1000, descr: 'global hook returns' },
    { pref: 'timeout', user_config: [OK, 500], config: [OK, undefined], user: 500, global: undefined, descr: 'user int, global undef' },
    { pref: 'timeout', user_config: [OK, undefined], config: [OK, 1000], user: undefined, global: 1000, descr: 'user undef, global int' },
  ];
  for (const t of cases) {
    it(`config with hooks: ${t.descr}`, async () => {
      const { runtime } = await make_runtime({ size_threshold: '10000' });
      const qp = new Qpsmtpd(runtime, new Connection());
      if (t.config) mock_hook(runtime, 'config', () => t.config);
      if (t.user_config) mock_hook(runtime, 'user_config', () => t.user_config);
      const addr = Address.parse('<user@example.com>')!;
      expect(qp.config(t.pref, addr)).toBe(t.user);
      expect(qp.config(t.pref)).toBe(t.global);
      unmock_hook(runtime, 'config');
      unmock_hook(runtime, 'user_config');
      expect(qp.config('timeout')).toBe('1200');
    });
  }

  it('an Address made by qp.address looks up per-user config through user_config hooks', async () => {
    const { runtime } = await make_runtime();
    const qp = new Qpsmtpd(runtime, new Connection());
    mock_hook(runtime, 'user_config', (_t: unknown, addr: Address, name: string) => [OK, `${name} for ${addr.address()}`]);
    expect(qp.address('<u@example.test>')!.config('spamassassin')).toBe('spamassassin for u@example.test');
  });

  it('a config hook that returns a Promise is reported and ignored', async () => {
    const { runtime, logged } = await make_runtime({ me: 'mx.example.test' });
    mock_hook(runtime, 'config', async () => [OK, 'async.example']);
    expect(runtime.server_qp.config('me')).toBe('mx.example.test');
    expect(logged.some((l) => l.includes('hook config must be synchronous'))).toBe(true);
  });

  it('reset_transaction runs reset_transaction hooks for an existing transaction and cleans it up', async () => {
    const { runtime } = await make_runtime();
    const qp = new Qpsmtpd(runtime, new Connection());
    let resets = 0;
    mock_hook(runtime, 'reset_transaction', () => (resets++, DECLINED));
    await qp.reset_transaction();
    expect(resets).toBe(0);
    const first = qp.transaction;
    await first.body_write('Subject: x\n\nbody\n');
    const file = await first.body_filename();
    const second = await qp.reset_transaction();
    expect(resets).toBe(1);
    expect(second).not.toBe(first);
    expect(existsSync(file)).toBe(false);
  });
});
