// queue/discard: accepts and drops every message, and says so at start-up.
import { describe, expect, it } from 'vitest';
import { Connection, LOGWARN, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

describe('queue/discard', () => {
  it('warns at registration (LOGWARN) that it drops all mail', async () => {
    const { logged } = await make_runtime({ plugins: ['queue/discard'], loglevel: String(LOGWARN) });
    expect(logged).toContain(
      `${process.pid} queue::discard: WARNING: queue/discard is loaded: every accepted message is DROPPED, nothing is delivered`,
    );
  });

  it('hook_queue → OK, "Queued (discarded)"', async () => {
    const { runtime } = await make_runtime({ plugins: ['queue/discard'] });
    const qp = new Qpsmtpd(runtime, new Connection());
    const view = qp.plugin_view(runtime.plugins[0]!) as Plugin & { hook_queue(t: unknown): unknown };
    expect(view.hook_queue(qp.transaction)).toEqual([OK, 'Queued (discarded)']);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['queue/discard /var/mail'] })).rejects.toThrow(/unknown argument '\/var\/mail'/);
  });

  it('SMTP session: 250 Queued (discarded)', async () => {
    const { runtime } = await make_runtime({ plugins: ['rcpt_ok', 'queue/discard'], me: 'mx.example.test', rcpthosts: ['example.test'] });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO c.test');
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await client.cmd('RCPT TO:<x@example.test>'))!.code).toBe(250);
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect(await client.cmd('Subject: x\r\n\r\nbody\r\n.')).toMatchObject({ code: 250, text: 'Queued (discarded)' });
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221 });
    await done;
  });
});
