// auth/authdeny: qpsmtpd's plugin test as a fact, and the session behaviour with auth_flat_file.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface AuthDeny extends Plugin {
  hook_auth(t: unknown, method: string, user: string, ...rest: unknown[]): [number, string];
}

describe('auth/authdeny: qpsmtpd plugin test', () => {
  it('hook_auth → DECLINED, "<user> is not free to abuse my relay", logged at LOGWARN', async () => {
    const { runtime, logged } = await make_runtime({ plugins: ['auth/authdeny'] });
    const qp = new Qpsmtpd(runtime, new Connection());
    const view = qp.plugin_view(runtime.plugins[0]!) as AuthDeny;
    view._hook = 'auth';
    expect(view.hook_auth(qp.transaction, 'bogus_method', 'bogus_user')).toEqual([DECLINED, 'bogus_user is not free to abuse my relay']);
    expect(logged).toContain(`${process.pid} (auth) auth::authdeny: fail: cannot authenticate`);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['auth/authdeny 1'] })).rejects.toThrow(/unknown argument '1'/);
  });
});

describe('auth/authdeny: SMTP session', () => {
  const files = {
    plugins: ['auth/auth_flat_file', 'auth/authdeny'],
    me: 'mx.example.test',
    flat_auth_pw: ['good@example.test:good_pass'],
  };

  it('advertises all three mechanisms and fails an unknown user with its message', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    expect((await client.cmd('EHLO c.test'))!.lines.at(-1)).toBe('AUTH PLAIN CRAM-MD5 LOGIN');
    const plain = Buffer.from('\0none@example.test\0whatever').toString('base64');
    expect(await client.cmd(`AUTH PLAIN ${plain}`)).toMatchObject({
      code: 535,
      text: 'PLAIN authentication failed for none@example.test from 127.0.0.1 - none@example.test is not free to abuse my relay',
    });
    await client.cmd('QUIT');
    await done;
  });

  it('does not stand in the way of a user auth_flat_file accepts', async () => {
    const { runtime } = await make_runtime(files);
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    const plain = Buffer.from('\0good@example.test\0good_pass').toString('base64');
    expect(await client.cmd(`AUTH PLAIN ${plain}`)).toMatchObject({ code: 235, text: 'PLAIN authentication successful for good@example.test - auth_flat_file' });
    await client.cmd('QUIT');
    await done;
  });

  it('alone, it offers AUTH and fails every attempt', async () => {
    const { runtime } = await make_runtime({ plugins: ['auth/authdeny'], me: 'mx.example.test' });
    const { client, done } = start_session(runtime);
    await client.reply();
    expect((await client.cmd('EHLO c.test'))!.lines.at(-1)).toBe('AUTH PLAIN CRAM-MD5 LOGIN');
    expect(await client.cmd('AUTH LOGIN')).toMatchObject({ code: 334 });
    expect(await client.cmd(Buffer.from('alice@example.test').toString('base64'))).toMatchObject({ code: 334 });
    expect(await client.cmd(Buffer.from('s3cret').toString('base64'))).toMatchObject({
      code: 535,
      text: 'LOGIN authentication failed for alice@example.test from 127.0.0.1 - alice@example.test is not free to abuse my relay',
    });
    await client.cmd('QUIT');
    await done;
  });
});
