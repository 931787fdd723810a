// auth/auth_checkpassword against a real checkpassword program (t/fixtures/plugins-c/checkpassword):
// qpsmtpd's test_auth_checkpassword as facts, the fd-3 protocol bytes, configuration sources,
// the optional sudo wrapper, timeouts, and SMTP sessions.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DECLINED, OK, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { executable, open_session, quit, temp_dirs, view_of } from '../fixtures/plugins-c/helpers.js';

interface CheckPw extends Plugin {
  auth_checkpassword(t: Transaction | undefined, method: string, user: string, pass?: string | null): Promise<number | [number, string]>;
  get_sudo(binary: string): string[];
}

let CHECKPW = '';
let SUDO = '';
beforeAll(() => {
  [CHECKPW, SUDO] = executable('checkpassword', 'fake-sudo');
});

const tmp = temp_dirs();
afterEach(() => {
  vi.restoreAllMocks();
  delete process.env.CHECKPW_RECORD;
  delete process.env.SUDO_RECORD;
  tmp.cleanup();
});

async function setup(line = `auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true`, files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], loglevel: '7', ...files });
  const plugin = rt.runtime.plugins.find((p) => p.plugin_name() === 'auth::auth_checkpassword')!;
  const { qp, view } = view_of<CheckPw>(rt.runtime, 'auth::auth_checkpassword');
  return { ...rt, qp, view, plugin };
}

const rc = (r: number | [number, string]) => (Array.isArray(r) ? r[0] : r);

describe('auth/auth_checkpassword: qpsmtpd test_auth_checkpassword', () => {
  // qpsmtpd's test expects DENY for the bad password, which this plugin never returns: a
  // failed check is DECLINED (the next auth plugin decides, else 535).
  it.each([
    ['postmaster@example.com', 'Good Strong Passphrase', OK],
    ['bad@example.com', 'not_bad_pass', DECLINED],
    ['none@example.com', '', DECLINED],
  ])('%s / %s', async (user, pass, expected) => {
    const { view, qp } = await setup();
    for (const method of ['LOGIN', 'PLAIN']) {
      expect(rc(await view.auth_checkpassword(qp.transaction, method, user, pass))).toBe(expected);
    }
  });

  it('success: OK "auth_checkpassword" and the connection note authuser', async () => {
    const { view, qp } = await setup();
    expect(await view.auth_checkpassword(qp.transaction, 'plain', 'good@example.com', 'good_pass')).toEqual([OK, 'auth_checkpassword']);
    expect(view.connection.notes('authuser')).toBe('good@example.com');
    expect(view.connection.notes('auth_checkpassword_bin')).toBe(CHECKPW);
    expect(view.connection.notes('auth_checkpassword_true')).toBe('/bin/true');
  });
});

describe('auth/auth_checkpassword: the checkpassword interface', () => {
  it('writes "<user>\\0<password>\\0Y123456\\0" to file descriptor 3', async () => {
    const record = path.join(tmp.make(), 'fd3');
    process.env.CHECKPW_RECORD = record;
    const { view } = await setup();
    await view.auth_checkpassword(undefined, 'login', 'good@example.com', 'good_pass');
    expect(readFileSync(record, 'latin1')).toBe('good@example.com\0good_pass\0Y123456\0');
    await view.auth_checkpassword(undefined, 'plain', 'üser@example.com', 'pä ss');
    expect(readFileSync(record)).toEqual(Buffer.from('üser@example.com\0pä ss\0Y123456\0', 'utf8'));
  });

  it('the exit status of the "true" program decides', async () => {
    const { view, logged } = await setup(`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/false`);
    expect(await view.auth_checkpassword(undefined, 'plain', 'good@example.com', 'good_pass')).toBe(DECLINED);
    expect(logged.some((l) => l.endsWith('fail, auth failed: 256'))).toBe(true);
  });

  it('a NUL in the user name or password is refused without running the program', async () => {
    const record = path.join(tmp.make(), 'fd3');
    process.env.CHECKPW_RECORD = record;
    const { view } = await setup();
    expect(await view.auth_checkpassword(undefined, 'plain', 'good@example.com\0x', 'good_pass')).toBe(DECLINED);
    expect(await view.auth_checkpassword(undefined, 'plain', 'good@example.com', 'good_pass\0bad_pass')).toBe(DECLINED);
    expect(() => readFileSync(record)).toThrow();
  });
});

describe('auth/auth_checkpassword: configuration', () => {
  it('registers auth-plain and auth-login (not CRAM-MD5: there is no clear password to hash)', async () => {
    const { runtime } = await setup();
    expect(runtime.hooks.get('auth-plain')).toHaveLength(1);
    expect(runtime.hooks.get('auth-login')).toHaveLength(1);
    expect(runtime.hooks.get('auth-cram-md5')).toHaveLength(0);
  });

  it('falls back to the smtpauth-checkpassword config file', async () => {
    const { view, runtime, logged } = await setup('auth/auth_checkpassword', { 'smtpauth-checkpassword': `${CHECKPW} /bin/true` });
    expect(runtime.hooks.get('auth-plain')).toHaveLength(1);
    expect(logged.some((l) => l.endsWith('reading config from smtpauth-checkpassword'))).toBe(true);
    expect(rc(await view.auth_checkpassword(undefined, 'plain', 'good@example.com', 'good_pass'))).toBe(OK);
  });

  it('arguments that are not executable fall back to the config file too', async () => {
    const { runtime } = await setup(`auth/auth_checkpassword checkpw /nonexistent/vchkpw true /bin/true`, {
      'smtpauth-checkpassword': `${CHECKPW} /bin/true`,
    });
    expect(runtime.hooks.get('auth-plain')).toHaveLength(1);
  });

  it('nothing usable: logs the error and stays inactive (no AUTH offered)', async () => {
    for (const [line, files] of [
      ['auth/auth_checkpassword', {}],
      ['auth/auth_checkpassword', { 'smtpauth-checkpassword': '/nonexistent/checkpw /bin/true' }],
      ['auth/auth_checkpassword', { 'smtpauth-checkpassword': `${CHECKPW}` }],
      [`auth/auth_checkpassword checkpw ${CHECKPW}`, {}],
    ] as const) {
      const { runtime, logged } = await setup(line, files);
      expect(runtime.hooks.get('auth-plain')).toHaveLength(0);
      expect(logged.some((l) => l.includes('disabled due to invalid configuration'))).toBe(true);
    }
  });

  it('unknown arguments and a bad sudo path stop the start-up', async () => {
    await expect(setup(`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true user vpopmail`)).rejects.toThrow(
      /plugin auth::auth_checkpassword: unknown argument 'user'/,
    );
    await expect(setup(`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true sudo /nonexistent/sudo`)).rejects.toThrow(
      /argument 'sudo': \/nonexistent\/sudo is not an executable file/,
    );
  });
});

describe('auth/auth_checkpassword: sudo', () => {
  it('without the sudo argument the program runs directly', async () => {
    const { view } = await setup();
    vi.spyOn(process, 'geteuid').mockReturnValue(1000);
    expect(view.get_sudo(CHECKPW)).toEqual([]);
  });

  it('with it: `<sudo> -C4`, plus `-u vpopmail` for vchkpw; not as root, nor as uid 89 for vchkpw', async () => {
    const { view } = await setup(`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true sudo ${SUDO}`);
    const euid = vi.spyOn(process, 'geteuid').mockReturnValue(1000);
    expect(view.get_sudo(CHECKPW)).toEqual([SUDO, '-C4']);
    const dir = tmp.make();
    const vchkpw = path.join(dir, 'vchkpw');
    const { copyFileSync, chmodSync } = await import('node:fs');
    copyFileSync(CHECKPW, vchkpw);
    chmodSync(vchkpw, 0o755);
    expect(view.get_sudo(vchkpw)).toEqual([SUDO, '-C4', '-u', 'vpopmail']);
    euid.mockReturnValue(89);
    expect(view.get_sudo(vchkpw)).toEqual([]);
    expect(view.get_sudo(CHECKPW)).toEqual([SUDO, '-C4']);
    euid.mockReturnValue(0);
    expect(view.get_sudo(CHECKPW)).toEqual([]);
    euid.mockReturnValue(1000);
    chmodSync(vchkpw, 0o4711);
    expect(view.get_sudo(vchkpw)).toEqual([]); // setuid program
  });

  it('runs the program through sudo, with fd 3 intact', async () => {
    const record = path.join(tmp.make(), 'sudo');
    process.env.SUDO_RECORD = record;
    const { view } = await setup(`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true sudo ${SUDO}`);
    vi.spyOn(process, 'geteuid').mockReturnValue(1000);
    expect(rc(await view.auth_checkpassword(undefined, 'plain', 'good@example.com', 'good_pass'))).toBe(OK);
    expect(readFileSync(record, 'utf8')).toBe(`-C4 ${CHECKPW} /bin/true\n`);
    expect(rc(await view.auth_checkpassword(undefined, 'plain', 'good@example.com', 'wrong'))).toBe(DECLINED);
  });
});

describe('auth/auth_checkpassword: SMTP sessions', () => {
  const files = { me: 'mx.example.test', rcpthosts: ['example.test'] };

  it('AUTH PLAIN and LOGIN: 235 for the right password, 535 for a wrong one; relaying after success', async () => {
    const { runtime } = await make_runtime({ plugins: [`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true`, 'rcpt_ok'], ...files });
    const s = await open_session(runtime);
    const plain = (u: string, p: string) => Buffer.from(`\0${u}\0${p}`).toString('base64');
    expect(await s.client.cmd(`AUTH PLAIN ${plain('good@example.com', 'nope')}`)).toMatchObject({
      code: 535,
      text: 'PLAIN authentication failed for good@example.com from 127.0.0.1',
    });
    expect(await s.client.cmd('AUTH LOGIN')).toMatchObject({ code: 334 });
    expect(await s.client.cmd(Buffer.from('good@example.com').toString('base64'))).toMatchObject({ code: 334 });
    expect(await s.client.cmd(Buffer.from('good_pass').toString('base64'))).toMatchObject({
      code: 235,
      text: 'LOGIN authentication successful for good@example.com - auth_checkpassword',
    });
    expect((await s.client.cmd('MAIL FROM:<good@example.com>'))!.code).toBe(250);
    expect(await s.client.cmd('RCPT TO:<x@elsewhere.test>')).toMatchObject({ code: 250, text: '<x@elsewhere.test>, recipient ok' });
    await quit(s);
  });

  it('EHLO offers PLAIN and LOGIN', async () => {
    const { runtime } = await make_runtime({ plugins: [`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true`], ...files });
    const { start_session } = await import('../lib/session.js');
    const s = start_session(runtime);
    await s.client.reply();
    expect((await s.client.cmd('EHLO c.test'))!.lines.at(-1)).toBe('AUTH PLAIN LOGIN');
    await quit(s);
  });

  it('a program that hangs is killed at the hook timeout: 451, and the session goes on', async () => {
    const { runtime } = await make_runtime({
      plugins: [`auth/auth_checkpassword checkpw ${CHECKPW} true /bin/true`],
      hook_timeout: '0.5',
      ...files,
    });
    const s = await open_session(runtime);
    const started = Date.now();
    const r = await s.client.cmd(`AUTH PLAIN ${Buffer.from('\0slow@example.com\0x').toString('base64')}`);
    expect(r).toMatchObject({ code: 451 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await s.client.cmd('NOOP'))!.code).toBe(250);
    await quit(s);
  });
});
