// logging/apache: qpsmtpd's is mod_perl-only (Apache's ErrorLog); ours writes one combined-style
// access-log line per transaction through the logging layer. Checked through SMTP sessions:
// queued, refused at DATA, deferred by the queue, abandoned, authenticated, escaped fields.
import { describe, expect, it } from 'vitest';
import { make_runtime } from '../lib/harness.js';
import { strftime } from '../../lib/strftime.js';
import { open_session, quit, send_message } from '../fixtures/plugins-c/helpers.js';
import { apache_escape } from '../../plugins/logging/apache.js';

const pid = process.pid;
const TIME = /\[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]/;

async function setup(plugins: string[], extra: Record<string, string | string[]> = {}, line = 'logging/apache') {
  return make_runtime({
    logging: [line],
    plugins,
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    flat_auth_pw: ['good@example.test:good_pass'],
    loglevel: '5',
    ...extra,
  });
}

/** The access lines the built-in logger wrote, without its `<pid> <uuid> (<hook>) logging::apache: ` prefix. */
function access_lines(logged: string[]): string[] {
  const re = new RegExp(`^${pid} [0-9A-F-]{36} \\((\\w+)\\) logging::apache: (.*)$`);
  return logged.flatMap((l) => {
    const m = re.exec(l);
    return m ? [m[2]!] : [];
  });
}

describe('logging/apache: SMTP sessions', () => {
  it('a queued message: "DATA <sender> <rcpts>" 250 <bytes> "<helo>" "<User-Agent>"', async () => {
    const { runtime, logged } = await setup(['rcpt_ok', 'queue/discard']);
    const s = await open_session(runtime, 'client.test');
    const before = Date.now();
    const msg = ['From: a@b.test', 'User-Agent: Mutt/2.2 "test"', 'Subject: s', '', 'body'];
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>', '<y@example.test>'], msg)).code).toBe(250);
    await quit(s);
    const lines = access_lines(logged);
    expect(lines).toHaveLength(1);
    const m = /^127\.0\.0\.1 - - (\[[^\]]+\]) "DATA <a@b\.test> <x@example\.test>,<y@example\.test>" 250 (\d+) "client\.test" "Mutt\/2\.2 \\"test\\""$/.exec(lines[0]!);
    expect(m, lines[0]).not.toBeNull();
    expect(m![1]).toMatch(TIME);
    // the transaction's start, local time with its offset
    const [, dd, mon, yyyy, hh, mi, ss, sign, oh, om] = /^\[(\d\d)\/(\w{3})\/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\]$/.exec(m![1]!)!;
    const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
    const offset = (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om));
    const t = Date.UTC(Number(yyyy), months.indexOf(mon!), Number(dd), Number(hh), Number(mi), Number(ss)) - offset * 60_000;
    expect(Math.abs(t - before)).toBeLessThan(5000);
    expect(m![1]).toBe(`[${strftime('%d/%b/%Y:%H:%M:%S %z', new Date(t))}]`);
    // the size of the message as sent (LF line ends)
    expect(Number(m![2])).toBe(msg.join('\n').length + 1);
    expect(logged.some((l) => new RegExp(`^${pid} [0-9A-F-]{36} \\(queue_post\\) logging::apache: `).test(l))).toBe(true);
  });

  it('refused at data_post → its code; deferred by the queue → 451; abandoned → MAIL, last reply, no size', async () => {
    const { runtime, logged } = await setup(['rcpt_ok', 'headers require From,Date']);
    const s = await open_session(runtime, 'client.test');
    expect((await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['From: a@b.test', '', 'no date'])).code).toBe(552);
    // no queue plugin: 451 Queuing declined
    const d = new Date().toUTCString().replace('GMT', '+0000');
    expect((await send_message(s.client, '<>', ['<x@example.test>'], ['From: a@b.test', `Date: ${d}`, '', 'b'])).code).toBe(451);
    expect((await s.client.cmd('MAIL FROM:<c@d.test>'))!.code).toBe(250);
    expect((await s.client.cmd('RCPT TO:<z@example.test>'))!.code).toBe(250);
    expect((await s.client.cmd('RCPT TO:<z@elsewhere.test>'))!.code).toBe(550);
    expect((await s.client.cmd('RSET'))!.code).toBe(250);
    expect((await s.client.cmd('MAIL FROM:<e@f.test>'))!.code).toBe(250);
    await quit(s); // the open transaction ends at disconnect
    const lines = access_lines(logged).map((l) => l.replace(TIME, '[T]'));
    expect(lines).toEqual([
      '127.0.0.1 - - [T] "DATA <a@b.test> <x@example.test>" 552 24 "client.test" "-"',
      expect.stringMatching(/^127\.0\.0\.1 - - \[T\] "DATA <> <x@example\.test>" 451 \d+ "client\.test" "-"$/),
      '127.0.0.1 - - [T] "MAIL <c@d.test> <z@example.test>" 550 - "client.test" "-"',
      '127.0.0.1 - - [T] "MAIL <e@f.test>" 250 - "client.test" "-"',
    ]);
  });

  it('the authenticated user and the ident user fill %u and %l; X-Mailer when there is no User-Agent', async () => {
    const { runtime, logged } = await setup(['auth/auth_flat_file', 'rcpt_ok', 'queue/discard']);
    const s = await open_session(runtime, 'client.test', { remote_info: 'joe@client.test' });
    const plain = Buffer.from('\0good@example.test\0good_pass').toString('base64');
    expect((await s.client.cmd(`AUTH PLAIN ${plain}`))!.code).toBe(235);
    expect((await send_message(s.client, '<good@example.test>', ['<x@far.test>'], ['X-Mailer: Outlook', '', 'b'])).code).toBe(250);
    await quit(s);
    expect(access_lines(logged)[0]).toMatch(/^127\.0\.0\.1 joe good@example\.test \[[^\]]+\] "DATA <good@example\.test> <x@far\.test>" 250 \d+ "client\.test" "Outlook"$/);
  });

  it('loglevel moves the line to another level (LOGNOTICE by default)', async () => {
    const quiet = await setup(['rcpt_ok', 'queue/discard'], { loglevel: '4' });
    let s = await open_session(quiet.runtime);
    await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b']);
    await quit(s);
    expect(access_lines(quiet.logged)).toEqual([]);
    const loud = await setup(['rcpt_ok', 'queue/discard'], { loglevel: '4' }, 'logging/apache loglevel 4');
    s = await open_session(loud.runtime);
    await send_message(s.client, '<a@b.test>', ['<x@example.test>'], ['Subject: s', '', 'b']);
    await quit(s);
    expect(access_lines(loud.logged)).toHaveLength(1);
  });

  it('unknown arguments stop the start-up', async () => {
    await expect(setup([], {}, 'logging/apache /var/log/apache2/access.log')).rejects.toThrow(/plugin logging::apache: unknown argument/);
  });
});

describe('logging/apache: escaping', () => {
  it('quotes, backslashes and control characters as Apache writes them', () => {
    expect(apache_escape('a "b" \\c\x01\x7f')).toBe('a \\"b\\" \\\\c\\x01\\x7f');
    expect(apache_escape('plain')).toBe('plain');
  });
});
