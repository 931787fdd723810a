// qpsmtpd.md Appendix A, replayed against qpsmtpd-ts over real TCP with the same plugins and
// config. Every server line is asserted byte for byte (CRLF included). Where qpsmtpd-ts differs
// on purpose the expected line is ours, with the reason next to it:
//   - `qpsmtpd-ts <version>` instead of `qpsmtpd 1.00` (greeting, HELP, Received);
//   - AUTH mechanisms in the fixed order PLAIN CRAM-MD5 LOGIN (qpsmtpd: Perl hash order), and
//     EHLO offers SMTPUTF8 (RFC 6531) after SIZE;
//   - a second HELO/EHLO is accepted and resets the transaction (DECISIONS.md; qpsmtpd: 503);
//   - every leading dot of a DATA line is removed (RFC 5321 4.5.2), so `.single` is stored as
//     `single` (qpsmtpd removed only the first of two dots);
//   - a timeout answers `421 4.4.2 Connection Timed Out` with CRLF (qpsmtpd: no code, bare LF);
//   - Received names the transaction: `with ESMTP id <uuid>.<n>; <date>` where qpsmtpd 1.00
//     wrote `with ESMTP ; <date>` (docs/compat.md section 3).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start_dns, type TestDns } from '../lib/dns-server.js';
import { delivered, start_ours, type OurServer } from '../compat/lib/ours.js';
import { WireClient, type Outcome } from '../compat/lib/wire.js';

const PKG_VERSION = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version as string;

let dns: TestDns;
let main: OurServer; // databytes 100000
let small: OurServer; // databytes 60 (A.3)
let slow: OurServer; // timeout 2 (A.6)
let VER: string;
const clients: WireClient[] = [];

beforeAll(async () => {
  dns = await start_dns(); // NXDOMAIN for everything: "no PTR for 127.0.0.1", as in Appendix A
  [main, small, slow] = await Promise.all([start_ours(dns.port), start_ours(dns.port, { databytes: '60' }), start_ours(dns.port, { timeout: '2' })]);
  VER = main.runtime.version;
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all([main?.close(), small?.close(), slow?.close()]);
  await dns?.close();
});

async function open(server: OurServer): Promise<WireClient> {
  const c = await WireClient.connect(server.port);
  clients.push(c);
  return c;
}

/** Asserts a reply is exactly these lines, each ended by CRLF. */
function is(o: Outcome, ...lines: string[]): void {
  expect(typeof o === 'string' ? o : o.raw).toBe(lines.map((l) => `${l}\r\n`).join(''));
}

const GREETING = () => `220 mx.example.test ESMTP qpsmtpd-ts ${VER} ready; send us your mail, but not your spam.`;
const EHLO = (size = '100000') => [
  '250-mx.example.test Hi Unknown [127.0.0.1]',
  '250-PIPELINING',
  '250-8BITMIME',
  `250-SIZE ${size}`,
  '250-SMTPUTF8', // not in Appendix A: qpsmtpd-ts offers RFC 6531
  '250 AUTH PLAIN CRAM-MD5 LOGIN', // fixed order; qpsmtpd printed Perl hash order
];
const DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/;

describe('qpsmtpd.md Appendix A against qpsmtpd-ts', () => {
  it('runs the server version of package.json', () => {
    expect(VER).toBe(PKG_VERSION);
  });

  it('A.1 basic flow and state errors', async () => {
    const c = await open(main);
    is(await c.reply(), GREETING());
    is(await c.cmd('HELP'), `214-This is qpsmtpd-ts ${VER}`, '214-See http://smtpd.develooper.com/', '214 To report bugs or send comments, mail to <ask@develooper.com>.');
    is(await c.cmd('NOOP'), '250 OK');
    is(await c.cmd('VRFY foo'), "252 Just try sending a mail and we'll see how it turns out ...");
    is(await c.cmd('MAIL FROM:<a@b.test>'), '503 please say hello first ...');
    is(await c.cmd('RCPT TO:<x@example.test>'), '503 Use MAIL before RCPT');
    is(await c.cmd('DATA'), '503 MAIL first');
    is(await c.cmd('EHLO'), '501 ehlo requires domain/address - see RFC-2821 4.1.1.1');
    is(await c.cmd('EHLO client.test'), ...EHLO());
    // qpsmtpd: "503 but you already said HELO ..."; we accept a second greeting (RFC 5321 4.1.4)
    is(await c.cmd('HELO client.test'), '250 mx.example.test Hi Unknown [127.0.0.1]; I am so happy to meet you.');
    is(await c.cmd('MAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
    is(await c.cmd('RCPT TO:<x@other.test>'), '550 Relaying denied (#5.7.1)');
    is(await c.cmd('RCPT TO:<>'), '501 could not parse recipient');
    is(await c.cmd('RCPT TO:<X@Example.Test> NOTIFY=NEVER'), '250 <X@Example.Test>, recipient ok');
    is(await c.cmd('RSET'), '250 OK');
    is(await c.cmd('DATA'), '503 MAIL first');
    is(await c.cmd('QUIT'), '221 mx.example.test closing connection. Have a wonderful day.');
    expect(await c.wait_closed()).toBe(true);
    expect(c.pending()).toBe('');
    // the PTR lookup went to the loopback stub (and got NXDOMAIN, hence "Unknown")
    expect(dns.queries).toContain('PTR 1.0.0.127.in-addr.arpa');
  });

  it('A.2 DATA and the stored message', async () => {
    const before = delivered(main.maildir);
    const c = await open(main);
    is(await c.reply(), GREETING());
    is(await c.cmd('EHLO client.test'), ...EHLO());
    is(await c.cmd('MAIL FROM:<a@b.test>'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
    is(await c.cmd('RCPT TO:<x@example.test>'), '250 <x@example.test>, recipient ok');
    is(await c.cmd('RCPT TO:<y@example.test>'), '250 <y@example.test>, recipient ok');
    is(await c.cmd('DATA'), '354 go ahead');
    c.send(['Subject: hi', 'From: a@b.test', 'X-Long: a', ' b', '', 'line1', '..dotline', '.single', 'end', '.'].map((l) => `${l}\r\n`).join(''));
    is(await c.reply(), '250 Queued! '); // trailing space: no Message-Id
    is(await c.cmd('QUIT'), '221 mx.example.test closing connection. Have a wonderful day.');
    expect(await c.wait_closed()).toBe(true);

    const files = [...delivered(main.maildir)].filter(([n]) => !before.has(n));
    expect(files).toHaveLength(1);
    const [name, stored] = files[0]!;
    expect(name).toMatch(/^\d+\.P\d+M\d+Q\d+\.[\w.-]+$/);
    const lines = stored.split('\n');
    const received_id = /^ by mx\.example\.test \(qpsmtpd-ts\/[^)]+\) with ESMTP id ([0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.1); /.exec(lines[5]!)![1];
    const received_date = lines[5]!.replace(/^ by mx\.example\.test \(qpsmtpd-ts\/[^)]+\) with ESMTP id \S+; /, '');
    expect(received_date).toMatch(DATE);
    expect(stored).toBe(
      [
        'Return-Path: <a@b.test>',
        'Delivered-To: y@example.test',
        'Delivered-To: x@example.test',
        'Authentication-Results: mx.example.test; auth=none',
        'Received: from Unknown (HELO client.test) (127.0.0.1)',
        ` by mx.example.test (qpsmtpd-ts/${VER}) with ESMTP id ${received_id}; ${received_date}`,
        'Subject: hi',
        'From: a@b.test',
        'X-Long: a',
        ' b',
        '',
        'line1',
        '.dotline',
        'single', // qpsmtpd kept ".single": it only unstuffed a doubled dot
        'end',
        '',
      ].join('\n'),
    );
  });

  it('A.3 size limit (databytes 60) and a bare-LF terminator', async () => {
    const before = delivered(small.maildir);
    const c = await open(small);
    is(await c.reply(), GREETING());
    is(await c.cmd('EHLO client.test'), ...EHLO('60'));
    is(await c.cmd('MAIL FROM:<a@b.test>'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
    is(await c.cmd('RCPT TO:<x@example.test>'), '250 <x@example.test>, recipient ok');
    is(await c.cmd('DATA'), '354 go ahead');
    const line = 'x'.repeat(69) + '\r\n';
    expect(line).toHaveLength(71);
    c.send(line + '.\r\n');
    is(await c.reply(), '552 Message too big!');
    is(await c.cmd('MAIL FROM:<a@b.test>'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
    is(await c.cmd('RCPT TO:<x@example.test>'), '250 <x@example.test>, recipient ok');
    is(await c.cmd('DATA'), '354 go ahead');
    c.send('body\n.\n');
    is(await c.reply(), '421 See http://smtpd.develooper.com/barelf.html');
    expect(await c.wait_closed()).toBe(true);
    expect(c.pending()).toBe('');
    expect(new Map([...delivered(small.maildir)].filter(([n]) => !before.has(n))).size).toBe(0);
  });

  it('A.4 AUTH', async () => {
    const before = delivered(main.maildir);
    const c = await open(main);
    is(await c.reply(), GREETING());
    is(await c.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGdvb2RfcGFzcw=='), '500 Unrecognized command');
    is(await c.cmd('EHLO c.test'), ...EHLO());
    is(await c.cmd('AUTH'), '504 Unimplemented authentication mechanism: ');
    is(await c.cmd('AUTH FOO'), '504 Unimplemented authentication mechanism: foo');
    const wrong = '535 PLAIN authentication failed for good@example.test from 127.0.0.1 - auth_flat_file - wrong password';
    is(await c.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGJhZA=='), wrong);
    is(await c.cmd('AUTH PLAIN'), '334  ');
    is(await c.cmd('AGdvb2RAZXhhbXBsZS50ZXN0AGJhZA=='), wrong);
    is(await c.cmd('AUTH LOGIN'), '334 VXNlcm5hbWU6');
    is(await c.cmd('Z29vZEBleGFtcGxlLnRlc3Q='), '334 UGFzc3dvcmQ6');
    is(await c.cmd('Z29vZF9wYXNz'), '235 LOGIN authentication successful for good@example.test - auth_flat_file');
    is(await c.cmd('AUTH PLAIN AGdvb2RAZXhhbXBsZS50ZXN0AGdvb2RfcGFzcw=='), '503 but you already said AUTH ...');
    is(await c.cmd('MAIL FROM:<a@b.test>'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
    is(await c.cmd('RCPT TO:<x@other.test>'), '250 <x@other.test>, recipient ok'); // relay_client set by AUTH
    is(await c.cmd('DATA'), '354 go ahead');
    c.send('Subject: auth\r\n\r\nhello\r\n.\r\n');
    is(await c.reply(), '250 Queued! ');
    is(await c.cmd('QUIT'), '221 mx.example.test closing connection. Have a wonderful day.');

    const files = [...delivered(main.maildir)].filter(([n]) => !before.has(n)).map(([, s]) => s);
    expect(files).toHaveLength(1);
    const lines = files[0]!.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      'Return-Path: <a@b.test>',
      'Delivered-To: x@other.test',
      'Authentication-Results: mx.example.test; auth=pass (login) smtp.auth=good@example.test',
      'Received: from Unknown (HELO c.test) (127.0.0.1)',
    ]);
    expect(lines[4]).toMatch(new RegExp(`^ by mx\\.example\\.test \\(qpsmtpd-ts/${VER.replace(/\./g, '\\.')}\\) with ESMTPA id [0-9A-F-]{36}\\.1; `));
    expect(lines[4]!.replace(/^.* with ESMTPA id \S+; /, '')).toMatch(DATE);
    expect(lines.slice(5)).toEqual(['Subject: auth', '', 'hello', '']);
  });

  it('A.5 unrecognized commands and odd input: the 4th closes the connection', async () => {
    const c = await open(main);
    is(await c.reply(), GREETING());
    is(await c.cmd(''), '500 Unrecognized command');
    is(await c.cmd(' EHLO x'), '500 Unrecognized command');
    is(await c.cmd('MAIL\tFROM:<a@b>'), '500 Unrecognized command');
    is(await c.cmd('x'), '521 Closing connection, 4 unrecognized commands. Perhaps you should read RFC 2821?');
    expect(await c.wait_closed()).toBe(true);
    expect(c.pending()).toBe('');

    // the rest of A.5 in a second session (each of these counts as well)
    const d = await open(main);
    is(await d.reply(), GREETING());
    is(await d.cmd('STARTTLS'), '500 Unrecognized command'); // no tls plugin loaded
    is(await d.cmd('verylongcommandname'), '500 Unrecognized command');
    is(await d.cmd('QUIT'), '221 mx.example.test closing connection. Have a wonderful day.');
  });

  it('A.6 timeout (timeout 2): 421 with CRLF at the prompt and inside DATA', async () => {
    const before = delivered(slow.maildir);
    const idle = async () => {
      const c = await open(slow);
      is(await c.reply(), GREETING());
      const t0 = Date.now();
      // qpsmtpd: "421 Connection Timed Out\n" (no enhanced code, bare LF)
      is(await c.reply(6000), '421 4.4.2 Connection Timed Out');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
      expect(await c.wait_closed()).toBe(true);
    };
    const in_data = async () => {
      const c = await open(slow);
      is(await c.reply(), GREETING());
      is(await c.cmd('EHLO client.test'), ...EHLO());
      is(await c.cmd('MAIL FROM:<a@b.test>'), '250 <a@b.test>, sender OK - how exciting to get mail from you!');
      is(await c.cmd('RCPT TO:<x@example.test>'), '250 <x@example.test>, recipient ok');
      is(await c.cmd('DATA'), '354 go ahead');
      c.send('Subject: slow\r\n\r\npart of a body\r\n');
      const t0 = Date.now();
      is(await c.reply(6000), '421 4.4.2 Connection Timed Out');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
      expect(await c.wait_closed()).toBe(true);
    };
    await Promise.all([idle(), in_data()]);
    expect([...delivered(slow.maildir)].filter(([n]) => !before.has(n))).toHaveLength(0);
  });
});
