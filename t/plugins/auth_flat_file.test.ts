// auth/auth_flat_file and lib/auth.ts (Qpsmtpd::Auth::validate_password): qpsmtpd's plugin
// test as facts, the string (not regex) user lookup, CRAM-MD5, and Appendix A.4 sessions.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, DENYSOFT, LOGERROR, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { auth_plugin_label, cram_md5_digest, e64, validate_password } from '../../lib/auth.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

type Result = number | [number, string];
interface FlatFile extends Plugin {
  auth_flat_file(t: unknown, method: string, user: string, clear?: string | null, hash?: string | null, ticket?: string | null): Result;
}

/** t/config/flat_auth_pw of qpsmtpd. */
async function setup(files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({
    plugins: ['auth/auth_flat_file'],
    flat_auth_pw: ['good@example.com:good_pass', 'bad@example.com:bad_pass'],
    me: 'mx.example.test',
    loglevel: '7',
    ...files,
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as FlatFile;
  return { ...rt, qp, view };
}

const hmac = (ticket: string, pass: string) => createHmac('md5', pass).update(ticket).digest('hex');

describe('auth/auth_flat_file: qpsmtpd plugin test', () => {
  it.each([
    ['good@example.com', 'good_pass', OK],
    ['bad@example.com', 'not_bad_pass', DENY],
    ['none@example.com', '', DECLINED],
  ])('%s / %s', async (user, pass, expected) => {
    const { view, qp } = await setup();
    const r = view.auth_flat_file(qp.transaction, 'CRAMMD5', user, pass);
    expect(Array.isArray(r) ? r[0] : r).toBe(expected);
  });

  it('gives qpsmtpd\'s messages', async () => {
    const { view } = await setup();
    expect(view.auth_flat_file(undefined, 'plain', 'good@example.com', 'good_pass')).toEqual([OK, 'auth_flat_file']);
    expect(view.auth_flat_file(undefined, 'plain', 'bad@example.com', 'nope')).toEqual([DENY, 'auth_flat_file - wrong password']);
    expect(view.auth_flat_file(undefined, 'plain', 'none@example.com', 'x')).toBe(DECLINED);
    expect(view.auth_flat_file(undefined, 'plain', 'good@example.com')).toEqual([DENY, 'authflat - missing password']);
    expect(view.auth_flat_file(undefined, 'plain', 'good', 'good_pass')).toBe(DECLINED); // no domain
    expect(view.auth_flat_file(undefined, 'plain', 'good@', 'good_pass')).toBe(DECLINED); // empty domain
  });

  it('the user name is lower-cased before the lookup', async () => {
    const { view } = await setup();
    expect(view.auth_flat_file(undefined, 'login', 'Good@Example.COM', 'good_pass')).toEqual([OK, 'auth_flat_file']);
  });

  it('compares user names as strings: regex characters match nothing (qpsmtpd interpolated them)', async () => {
    const { view } = await setup();
    for (const user of ['.*@.*', 'g..d@example.com', 'good@example.com|x', '(good)@example.com', 'good@example.co.', '[g]ood@example.com']) {
      expect(view.auth_flat_file(undefined, 'plain', user, 'good_pass')).toBe(DECLINED);
    }
    // a second '@' does not cut the name short: only `good@example.com` itself matches that line
    expect(view.auth_flat_file(undefined, 'plain', 'good@example.com@evil.test', 'good_pass')).toBe(DECLINED);
    // a line is `user:password`, the password may hold ':'
    const { view: v2 } = await setup({ flat_auth_pw: ['c@example.com:pa:ss'] });
    expect(v2.auth_flat_file(undefined, 'plain', 'c@example.com', 'pa:ss')).toEqual([OK, 'auth_flat_file']);
  });

  it('CRAM-MD5: the HMAC-MD5 of the ticket keyed with the stored password', async () => {
    const { view } = await setup();
    const ticket = '<1896.697170952@mx.example.test>';
    const good = hmac(ticket, 'good_pass');
    expect(view.auth_flat_file(undefined, 'cram-md5', 'good@example.com', undefined, good, ticket)).toEqual([OK, 'auth_flat_file']);
    expect(view.auth_flat_file(undefined, 'cram-md5', 'good@example.com', undefined, hmac(ticket, 'bad'), ticket)).toEqual([
      DENY,
      'auth_flat_file - wrong password',
    ]);
    expect(view.auth_flat_file(undefined, 'cram-md5', 'good@example.com', undefined, good, undefined)).toEqual([DECLINED, 'auth_flat_file']);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(setup({ plugins: ['auth/auth_flat_file file /etc/passwd'] })).rejects.toThrow(/unknown argument 'file'/);
  });
});

describe('lib/auth.ts validate_password (Qpsmtpd::Auth)', () => {
  async function plugin() {
    const { view, logged } = await setup();
    return { p: view, logged };
  }

  it('labels results with the plugin file name', async () => {
    const { p } = await plugin();
    expect(auth_plugin_label(p)).toBe('auth_flat_file');
    expect(validate_password(p, { method: 'plain', src_clear: 'a', attempt_clear: 'a', file: 'x' })).toEqual([OK, 'x']);
  });

  it('no stored password: deny "no such user" (deny defaults to DENY; 0 also means DENY)', async () => {
    const { p } = await plugin();
    expect(validate_password(p, { method: 'plain', attempt_clear: 'a' })).toEqual([DENY, 'auth_flat_file - no such user']);
    expect(validate_password(p, { method: 'plain', src_clear: '', attempt_clear: 'a', deny: DENYSOFT })).toEqual([
      DENYSOFT,
      'auth_flat_file - no such user',
    ]);
    expect(validate_password(p, { method: 'plain', attempt_clear: 'a', deny: 0 })).toEqual([DENY, 'auth_flat_file - no such user']);
  });

  it('clear match → OK; mismatch → deny "wrong password"', async () => {
    const { p } = await plugin();
    expect(validate_password(p, { method: 'login', src_clear: 's3cret', attempt_clear: 's3cret' })).toEqual([OK, 'auth_flat_file']);
    expect(validate_password(p, { method: 'login', src_clear: 's3cret', attempt_clear: 's3cre' })).toEqual([DENY, 'auth_flat_file - wrong password']);
    expect(validate_password(p, { method: 'login', src_clear: '0', attempt_clear: '0' })).toEqual([OK, 'auth_flat_file']);
  });

  it('CRAM-MD5 needs a clear stored password and a ticket', async () => {
    const { p } = await plugin();
    const t = '<a.b@c>';
    expect(validate_password(p, { method: 'CRAM-MD5', src_crypt: 'xyz', attempt_hash: hmac(t, 'x'), ticket: t })).toEqual([DECLINED, 'auth_flat_file']);
    expect(validate_password(p, { method: 'cram-md5', src_clear: 'x', attempt_hash: hmac(t, 'x') })).toEqual([DECLINED, 'auth_flat_file']);
    expect(validate_password(p, { method: 'cram-md5', src_clear: 'x', attempt_hash: hmac(t, 'x'), ticket: t })).toEqual([OK, 'auth_flat_file']);
    expect(validate_password(p, { method: 'cram-md5', src_clear: 'x', attempt_hash: hmac(t, 'y'), ticket: t })).toEqual([DENY, 'auth_flat_file - wrong password']);
    expect(cram_md5_digest(t, 'x')).toBe(hmac(t, 'x'));
  });

  it('RFC 2195 example digest', () => {
    expect(cram_md5_digest('<1896.697170952@postoffice.reston.mci.net>', 'tanstaaftanstaaf')).toBe('b913a602c7eda7a495b4e6e7334d3890');
  });

  it('src_crypt is not supported (no crypt(3) in Node): LOGERROR and DECLINED, never OK', async () => {
    const { view: p, logged } = await setup({ loglevel: String(LOGERROR) }); // only LOGERROR and worse
    p._hook = 'auth-plain';
    expect(validate_password(p, { method: 'plain', src_crypt: 'abJnggxhB/yWI', attempt_clear: 'test' })).toEqual([DECLINED, 'auth_flat_file']);
    expect(logged).toContain(
      `${process.pid} (auth-plain) auth::auth_flat_file: skip: crypt() is not available in Node, a src_crypt password cannot be checked`,
    );
    // a clear password still matches first
    expect(validate_password(p, { method: 'plain', src_clear: 'test', src_crypt: 'abJnggxhB/yWI', attempt_clear: 'test' })).toEqual([OK, 'auth_flat_file']);
  });

  it('method is required', async () => {
    const { p } = await plugin();
    expect(() => validate_password(p, { method: '', src_clear: 'a', attempt_clear: 'a' })).toThrow(/missing method/);
  });

  it('e64 is base64 without line breaks', () => {
    expect(e64('Username:')).toBe('VXNlcm5hbWU6');
    expect(e64('x'.repeat(100))).not.toMatch(/\n/);
  });
});

describe('auth/auth_flat_file: SMTP sessions (Appendix A.4)', () => {
  const files = {
    plugins: ['auth/auth_flat_file', 'rcpt_ok'],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    flat_auth_pw: ['good@example.test:good_pass'],
    loglevel: '6',
  };

  it('AUTH before EHLO, wrong PLAIN, interactive PLAIN, LOGIN success, then relaying', async () => {
    const { runtime, logged } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    expect(await client.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGdvb2RfcGFzcw==')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    const ehlo = (await client.cmd('EHLO c.test'))!;
    expect(ehlo.lines.at(-1)).toBe('AUTH PLAIN CRAM-MD5 LOGIN');
    expect(await client.cmd('AUTH FOO')).toMatchObject({ code: 504, text: 'Unimplemented authentication mechanism: foo' });
    expect(await client.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGJhZA==')).toMatchObject({
      code: 535,
      text: 'PLAIN authentication failed for good@example.test from 127.0.0.1 - auth_flat_file - wrong password',
    });
    expect(await client.cmd('AUTH LOGIN')).toMatchObject({ code: 334, text: 'VXNlcm5hbWU6' });
    expect(await client.cmd('Z29vZEBleGFtcGxlLnRlc3Q=')).toMatchObject({ code: 334, text: 'UGFzc3dvcmQ6' });
    expect(await client.cmd('Z29vZF9wYXNz')).toMatchObject({
      code: 235,
      text: 'LOGIN authentication successful for good@example.test - auth_flat_file',
    });
    expect(await client.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGdvb2RfcGFzcw==')).toMatchObject({ code: 503, text: 'but you already said AUTH ...' });
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<x@other.test>')).toMatchObject({ code: 250, text: '<x@other.test>, recipient ok' });
    await client.cmd('QUIT');
    await done;
    // AUT-19: no password, in clear or base64, in the logs
    for (const secret of ['good_pass', 'Z29vZF9wYXNz', 'AGdvb2RfcGFzcw']) expect(logged.join('\n')).not.toContain(secret);
  });

  it('PLAIN with the initial response on its own line (334 with a single space)', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    client.send('AUTH PLAIN\r\n');
    const r = await client.reply();
    expect(r!.code).toBe(334);
    expect(await client.cmd('AGdvb2RAZXhhbXBsZS50ZXN0AGdvb2RfcGFzcw==')).toMatchObject({
      code: 235,
      text: 'PLAIN authentication successful for good@example.test - auth_flat_file',
    });
    await client.cmd('QUIT');
    await done;
  });

  it('CRAM-MD5 against the ticket', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    const challenge = (await client.cmd('AUTH CRAM-MD5'))!;
    expect(challenge.code).toBe(334);
    const ticket = Buffer.from(challenge.text, 'base64').toString();
    expect(ticket).toMatch(/^<[0-9a-f]+\.[0-9a-f]+@mx\.example\.test>$/);
    const answer = Buffer.from(`good@example.test ${hmac(ticket, 'good_pass')}`).toString('base64');
    expect(await client.cmd(answer)).toMatchObject({
      code: 235,
      text: 'CRAM-MD5 authentication successful for good@example.test - auth_flat_file',
    });
    await client.cmd('QUIT');
    await done;
  });

  it('CRAM-MD5 with a wrong digest → 535 wrong password', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    const ticket = Buffer.from((await client.cmd('AUTH CRAM-MD5'))!.text, 'base64').toString();
    const answer = Buffer.from(`good@example.test ${hmac(ticket, 'guess')}`).toString('base64');
    expect(await client.cmd(answer)).toMatchObject({
      code: 535,
      text: 'CRAM-MD5 authentication failed for good@example.test from 127.0.0.1 - auth_flat_file - wrong password',
    });
    await client.cmd('QUIT');
    await done;
  });

  it('an unknown user is declined: 535 without a plugin message; relaying stays closed', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    const plain = Buffer.from('\0none@example.test\0good_pass').toString('base64');
    expect(await client.cmd(`AUTH PLAIN ${plain}`)).toMatchObject({
      code: 535,
      text: 'PLAIN authentication failed for none@example.test from 127.0.0.1',
    });
    await client.cmd('MAIL FROM:<a@b.test>');
    expect(await client.cmd('RCPT TO:<x@other.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    await client.cmd('QUIT');
    await done;
  });
});
