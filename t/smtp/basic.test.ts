import { describe, expect, it } from 'vitest';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

describe('smoke', () => {
  it('greets, EHLO, MAIL, RCPT (no plugin decides), QUIT', async () => {
    const { runtime } = await make_runtime({ me: 'mx.example.test', databytes: '100000' });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.text).toMatch(/^mx\.example\.test ESMTP qpsmtpd-ts \S+ ready; send us your mail, but not your spam\.$/);
    const ehlo = (await client.cmd('EHLO client.test'))!;
    expect(ehlo.lines).toEqual(['mx.example.test Hi Unknown [127.0.0.1]', 'PIPELINING', '8BITMIME', 'SIZE 100000', 'SMTPUTF8']);
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.text).toBe('<a@b.test>, sender OK - how exciting to get mail from you!');
    expect(await client.cmd('RCPT TO:<x@example.test>')).toMatchObject({ code: 450, text: 'No plugin decided if relaying is allowed' });
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221, text: 'mx.example.test closing connection. Have a wonderful day.' });
    await done;
    expect(await client.wait_closed()).toBe(true);
  });
});
