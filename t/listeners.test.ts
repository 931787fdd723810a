// Listener features over real TCP, in-process (lib/server/serve.ts listen()): PROXY v1/v2
// headers, XCLIENT/XFORWARD from trusted and untrusted peers (INJ-06), the stunnel plugin,
// LMTP, SMTPUTF8/BODY/SIZE at MAIL, the via/<local ip>/ overlay and the listener_parameters
// hook on a wildcard listener reached through 127.0.0.2 and 127.0.0.3, and certificates chosen
// per listener and by SNI. docs/listeners.md.
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Address } from '../lib/address.js';
import { DECLINED, DENY, DENYSOFT, OK } from '../lib/constants.js';
import type { Connection } from '../lib/connection.js';
import type { Runtime } from '../lib/runtime.js';
import { parse_proxy_header, proxy_v1, proxy_v2 } from '../lib/server/proxy-protocol.js';
import { parse_listen } from '../lib/server/options.js';
import type { ListenOptions } from '../lib/server/serve.js';
import type { Transaction } from '../lib/transaction.js';
import { make_cert } from './lib/cert.js';
import { connect, open_socket, type Target } from './lib/daemon.js';
import { PLUGIN_DIR, listen_port, make_runtime, mock_hook, tmp_dir } from './lib/harness.js';
import { TestClient, tls_connect } from './lib/session.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

interface Stored {
  received: string;
  remote_ip?: string;
  proxy: ReturnType<Connection['proxy']>;
  notes: Record<string, unknown>;
  rcpts: string[];
}

interface Srv {
  runtime: Runtime;
  dir: string;
  port: number;
  stored: Stored[];
  connects: string[];
}

/** A runtime with `files`, a queue that records messages, rcpt OK for all but `reject*@`. */
async function serve(files: Record<string, string | string[]> = {}, opts: Partial<ListenOptions> = {}, setup?: (rt: Runtime) => void): Promise<Srv> {
  const { runtime, dir } = await make_runtime({ me: 'mx.local.test', dns_servers: '127.0.0.1:9', databytes: '100000', ...files });
  const stored: Stored[] = [];
  const connects: string[] = [];
  mock_hook(runtime, 'connect', function (this: { connection: Connection }) {
    connects.push(this.connection.remote_ip() ?? '');
    return DECLINED;
  });
  mock_hook(runtime, 'rcpt', (_t: Transaction, rcpt: Address) => (/^reject/.test(rcpt.user() ?? '') ? [DENY, 'no such user'] : OK));
  mock_hook(runtime, 'queue', function (this: { connection: Connection }, t: Transaction) {
    stored.push({
      received: t.header()!.get('Received') ?? '',
      remote_ip: this.connection.remote_ip(),
      proxy: this.connection.proxy(),
      notes: { xforward: t.notes('xforward'), smtputf8: t.notes('smtputf8'), body_type: t.notes('body_type') },
      rcpts: t.recipients().map((r) => r.address()),
    });
    return [OK, 'Queued'];
  });
  setup?.(runtime);
  const { server, port } = await listen_port(runtime, { no_rdns: true, ...opts });
  cleanup.push(() => {
    server.close();
    server.unref();
  });
  return { runtime, dir, port, stored, connects };
}

async function open(port: number, target: Target = {}): Promise<TestClient> {
  const c = await connect(port, target);
  cleanup.push(() => c.destroy());
  return c;
}

/** MAIL, RCPT(s), DATA, a small message: the final reply(ies). */
async function message(c: TestClient, rcpts = ['r@local.test'], from = '<a@b.test>'): Promise<void> {
  expect((await c.cmd(`MAIL FROM:${from}`))!.code).toBe(250);
  for (const r of rcpts) await c.cmd(`RCPT TO:<${r}>`);
  expect((await c.cmd('DATA'))!.code).toBe(354);
  c.send('Subject: t\r\n\r\nhello\r\n.\r\n');
}

describe('listener flags (-l ADDR[:PORT][/flags])', () => {
  it('parses tls, proxy and lmtp, alone and combined; refuses unknown flags', () => {
    expect(parse_listen('127.0.0.1:25/proxy', [2525])).toEqual([{ host: '127.0.0.1', port: 25, proxy: true }]);
    expect(parse_listen('[::1]:465/tls,proxy', [])).toEqual([{ host: '::1', port: 465, tls: true, proxy: true }]);
    expect(parse_listen('0.0.0.0/lmtp', [24, 2424])).toEqual([
      { host: '0.0.0.0', port: 24, lmtp: true },
      { host: '0.0.0.0', port: 2424, lmtp: true },
    ]);
    expect(parse_listen('127.0.0.1:25/tls', [])).toEqual([{ host: '127.0.0.1', port: 25, tls: true }]);
    expect(() => parse_listen('127.0.0.1:25/bogus', [])).toThrow(/Unknown listener flag 'bogus'/);
  });
});

describe('PROXY protocol header parsing', () => {
  it('v1 TCP4, TCP6 and UNKNOWN; malformed and oversized lines', () => {
    const p = (s: string | Buffer) => parse_proxy_header(Buffer.isBuffer(s) ? s : Buffer.from(s, 'latin1'));
    expect(p('PROXY TCP4 192.0.2.1 192.0.2.2 1234 25\r\nEHLO')).toEqual({
      header: { version: 1, src_ip: '192.0.2.1', dst_ip: '192.0.2.2', src_port: 1234, dst_port: 25 },
      length: 40,
    });
    expect(p('PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n')).toMatchObject({ header: { src_ip: '2001:db8::1', dst_ip: '2001:db8::2' } });
    expect(p('PROXY UNKNOWN\r\n')).toEqual({ header: { version: 1 }, length: 15 });
    expect(p('PROXY TCP4 192.0.2.1')).toEqual({ need: true });
    expect(p('PRO')).toEqual({ need: true });
    expect(p('PROXY TCP4 192.0.2.1 192.0.2.2 99999 25\r\n')).toHaveProperty('error');
    expect(p('PROXY TCP4 2001:db8::1 192.0.2.2 1 25\r\n')).toHaveProperty('error');
    expect(p('PROXY TCP4 ' + 'x'.repeat(120))).toHaveProperty('error');
    expect(p('EHLO x\r\n')).toEqual({ error: 'no PROXY header' });
  });

  it('v2 PROXY (IPv4, IPv6, with TLVs) and LOCAL', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x02, 0x61, 0x62]); // PP2_TYPE_NOOP
    const v4 = proxy_v2({ src_ip: '198.51.100.7', dst_ip: '192.0.2.25', src_port: 40000, dst_port: 25 }, tlv);
    expect(parse_proxy_header(Buffer.concat([v4, Buffer.from('QUIT\r\n')]))).toEqual({
      header: { version: 2, src_ip: '198.51.100.7', dst_ip: '192.0.2.25', src_port: 40000, dst_port: 25 },
      length: v4.length,
    });
    const v6 = proxy_v2({ src_ip: '2001:db8::7', dst_ip: '2001:db8::25', src_port: 1, dst_port: 2 });
    expect(parse_proxy_header(v6)).toMatchObject({ header: { version: 2, src_ip: '2001:db8::7', dst_ip: '2001:db8::25' } });
    expect(parse_proxy_header(proxy_v2())).toEqual({ header: { version: 2 }, length: 16 });
    expect(parse_proxy_header(v4.subarray(0, 20))).toEqual({ need: true });
    const bad = Buffer.from(v4);
    bad[12] = 0x11; // version 1 in a v2 signature
    expect(parse_proxy_header(bad)).toHaveProperty('error');
  });
});

describe('a /proxy listener', () => {
  it('PROXY v1 from a trusted proxy: the real client drives remote_ip, hooks, Received; bytes after the header are kept', async () => {
    const s = await serve({ trusted_proxies: ['# the load balancer', '127.0.0.0/30'] }, { proxy: true });
    const c = await open(s.port);
    c.send(proxy_v1('192.0.2.1', '192.0.2.2', 1234, 25) + 'NOOP\r\n');
    expect((await c.reply())!.code).toBe(220);
    expect((await c.reply())!.code).toBe(250); // the NOOP that came with the header
    expect((await c.cmd('EHLO client.test'))!.lines[0]).toBe('mx.local.test Hi [192.0.2.1] [192.0.2.1]');
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.connects).toEqual(['192.0.2.1']);
    expect(s.stored[0]!.received).toMatch(/^from \[192\.0\.2\.1\] \(HELO client\.test\) \(192\.0\.2\.1\)/);
    expect(s.stored[0]!.proxy).toEqual({ allowed: false, ip: '127.0.0.1', type: 'proxy-v1' });
  });

  it('PROXY v2 (IPv4 and LOCAL) from a trusted proxy', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' }, { proxy: true });
    const c = await open(s.port);
    c.send(proxy_v2({ src_ip: '198.51.100.7', dst_ip: '192.0.2.25', src_port: 40000, dst_port: 25 }, Buffer.from([0x04, 0x00, 0x00])));
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('HELO client.test'))!.text).toMatch(/Hi \[198\.51\.100\.7\] \[198\.51\.100\.7\]/);
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]).toMatchObject({ remote_ip: '198.51.100.7', proxy: { type: 'proxy-v2', ip: '127.0.0.1' } });
    // LOCAL: the proxy's own health check, it is the client
    const h = await open(s.port);
    h.send(proxy_v2());
    expect((await h.reply())!.code).toBe(220);
    expect((await h.cmd('HELO lb.test'))!.text).toMatch(/Hi \[127\.0\.0\.1\] \[127\.0\.0\.1\]/);
  });

  it('an untrusted peer gets 554 and its header is never read (INJ-06)', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.2' }, { proxy: true });
    const c = await open(s.port);
    c.send(proxy_v1('192.0.2.1', '192.0.2.2', 1234, 25));
    expect(await c.reply()).toMatchObject({ code: 554, text: '5.7.1 This port takes connections only through a trusted proxy' });
    expect(await c.wait_closed()).toBe(true);
    expect(s.connects).toEqual([]);
  });

  it('a trusted peer without a header: 554 for other bytes, 421 when nothing comes in time', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' }, { proxy: true, proxy_timeout_ms: 300 });
    const c = await open(s.port);
    c.send('EHLO client.test\r\n');
    expect((await c.reply())!.text).toBe('5.5.0 Malformed PROXY header, closing connection');
    expect(await c.wait_closed()).toBe(true);
    const slow = await open(s.port);
    expect(await slow.reply()).toMatchObject({ code: 421 });
    expect(s.connects).toEqual([]);
  });
});

describe('PROXY, XCLIENT and XFORWARD from untrusted peers (INJ-06)', () => {
  it('are refused, and a later message still names 127.0.0.1', async () => {
    const s = await serve();
    const p = await open(s.port);
    expect((await p.reply())!.code).toBe(220);
    expect(await p.cmd('PROXY TCP4 192.0.2.1 192.0.2.2 1234 25')).toMatchObject({ code: 554 });
    expect(await p.wait_closed()).toBe(true);

    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    const ehlo = (await c.cmd('EHLO client.test'))!;
    expect(ehlo.lines.some((l) => /^X(CLIENT|FORWARD)/.test(l))).toBe(false);
    expect(await c.cmd('XCLIENT ADDR=192.0.2.1 NAME=spoof.test')).toMatchObject({ code: 550, text: '5.7.0 Error: insufficient authorization' });
    expect(await c.cmd('XFORWARD ADDR=192.0.2.1 NAME=spoof.test')).toMatchObject({ code: 550 });
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]!.received).toMatch(/\(127\.0\.0\.1\)\n/);
    expect(s.stored[0]!.received).not.toMatch(/192\.0\.2\.1|spoof/);
    expect(s.stored[0]!.proxy).toEqual({ allowed: false, type: null });
  });
});

describe('XCLIENT from a trusted peer', () => {
  it('advertised; replaces the client, runs connect again, answers 220; the new client is in Received', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    const ehlo = (await c.cmd('EHLO proxy.test'))!;
    expect(ehlo.lines).toContain('XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT');
    expect(ehlo.lines).toContain('XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE');
    expect(await c.cmd('XCLIENT BOGUS=1')).toMatchObject({ code: 501 });
    expect(await c.cmd('XCLIENT ADDR=not-an-ip')).toMatchObject({ code: 501, text: '5.5.4 Bad ADDR syntax' });
    expect(await c.cmd('XCLIENT NAME=client+2Eexample PORT=4242 ADDR=192.0.2.7')).toMatchObject({ code: 220 });
    expect(s.connects).toEqual(['127.0.0.1', '192.0.2.7']);
    // back at the greeting stage: greet again
    expect(await c.cmd('MAIL FROM:<a@b.test>')).toMatchObject({ code: 503 });
    expect((await c.cmd('EHLO client.test'))!.lines[0]).toBe('mx.local.test Hi client.example [192.0.2.7]');
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]!.received).toMatch(/^from client\.example \(HELO client\.test\) \(192\.0\.2\.7\)/);
    expect(s.stored[0]!.proxy).toEqual({ allowed: true, ip: '127.0.0.1', type: 'xclient' });
    // not inside a transaction
    expect((await c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await c.cmd('XCLIENT ADDR=192.0.2.8')).toMatchObject({ code: 503, text: '5.5.1 Error: MAIL transaction in progress' });
  });

  it('HELO/PROTO/LOGIN: no greeting needed, the login counts as authenticated (ESMTPA)', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect(await c.cmd('XCLIENT ADDR=IPV6:2001:db8::5 HELO=webmail.test PROTO=ESMTP LOGIN=alice')).toMatchObject({ code: 220 });
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]!.received).toMatch(/\(HELO webmail\.test\) \(2001:db8::5\)\n.* with ESMTPA /);
  });

  it('over the per-IP limit (the daemon asks its master): 421 and close', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' }, { readdress: async (ip) => ip !== '192.0.2.66' });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect(await c.cmd('XCLIENT ADDR=192.0.2.66')).toMatchObject({ code: 421 });
    expect(await c.wait_closed()).toBe(true);
  });

  it('queue/smtp-forward with xclient as the client: the downstream server names the original client', async () => {
    const down = await serve({ trusted_proxies: '127.0.0.1' });
    const { runtime: up_rt } = await make_runtime({
      me: 'relay.local.test',
      dns_servers: '127.0.0.1:9',
      plugin_dirs: PLUGIN_DIR,
      plugins: [`queue/smtp-forward 127.0.0.1 ${down.port} xclient`],
    });
    mock_hook(up_rt, 'rcpt', () => OK);
    const up = await listen_port(up_rt, { host: '0.0.0.0', no_rdns: true });
    cleanup.push(() => {
      up.server.close();
      up.server.unref();
    });
    const c = await open(up.port, { local: '127.0.0.3' });
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('EHLO origin.test'))!.code).toBe(250);
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(down.stored[0]!.remote_ip).toBe('127.0.0.3');
    expect(down.stored[0]!.received).toMatch(/\(HELO origin\.test\) \(127\.0\.0\.3\)/);
  });
});

describe('XFORWARD from a trusted peer', () => {
  it('names the up-stream client in the next message only', async () => {
    const s = await serve({ trusted_proxies: '127.0.0.1' });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('EHLO filter.test'))!.code).toBe(250);
    expect(await c.cmd('XFORWARD NAME=up.example ADDR=198.51.100.9 HELO=uphelo.example')).toMatchObject({ code: 250 });
    expect(await c.cmd('XFORWARD SOURCE=REMOTE IDENT=abc PORT=[UNAVAILABLE]')).toMatchObject({ code: 250 });
    expect(await c.cmd('XFORWARD SOURCE=ELSEWHERE')).toMatchObject({ code: 501 });
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]!.received).toMatch(/^from up\.example \(HELO uphelo\.example\) \(198\.51\.100\.9\)/);
    expect(s.stored[0]!.notes.xforward).toEqual({ name: 'up.example', addr: '198.51.100.9', helo: 'uphelo.example', source: 'REMOTE', ident: 'abc' });
    expect(s.stored[0]!.remote_ip).toBe('127.0.0.1');
    expect(s.stored[1]!.received).toMatch(/^from \[127\.0\.0\.1\] \(HELO filter\.test\) \(127\.0\.0\.1\)/);
    expect(s.stored[1]!.notes.xforward).toBeUndefined();
  });
});

describe('the stunnel plugin (proxy on)', () => {
  it('takes the PROXY line from 127.0.0.1 without a reply; a second one closes', async () => {
    const s = await serve({ plugins: 'stunnel proxy on', plugin_dirs: PLUGIN_DIR });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    c.send('PROXY TCP4 192.0.2.9 192.0.2.10 5555 465\r\n');
    expect((await c.cmd('HELO client.test'))!.text).toBe('mx.local.test Hi [192.0.2.9] [192.0.2.9]; I am so happy to meet you.');
    await message(c);
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]).toMatchObject({ remote_ip: '192.0.2.9', proxy: { type: 'stunnel', ip: '127.0.0.1' } });
    expect(await c.cmd('PROXY TCP4 192.0.2.11 192.0.2.10 5555 465')).toMatchObject({ code: 521 });
    expect(await c.wait_closed()).toBe(true);
  });

  it('refuses the line from elsewhere, and a malformed one', async () => {
    const s = await serve({ plugins: 'stunnel proxy on', plugin_dirs: PLUGIN_DIR }, { host: '0.0.0.0' });
    const c = await open(s.port, { local: '127.0.0.2' });
    expect((await c.reply())!.code).toBe(220);
    expect(await c.cmd('PROXY TCP4 192.0.2.9 192.0.2.10 5555 465')).toMatchObject({ code: 521 });
    const m = await open(s.port);
    expect((await m.reply())!.code).toBe(220);
    expect(await m.cmd('PROXY TCP4 not an ip 1')).toMatchObject({ code: 521 });
  });
});

describe('LMTP (RFC 2033)', () => {
  it('LHLO only; one reply per accepted recipient after DATA, in order', async () => {
    const s = await serve({}, { lmtp: true });
    const c = await open(s.port);
    expect((await c.reply())!.text).toMatch(/^mx\.local\.test LMTP qpsmtpd-ts /);
    expect(await c.cmd('EHLO client.test')).toMatchObject({ code: 500, text: '5.5.1 This is an LMTP server: greet with LHLO' });
    expect(await c.cmd('HELO client.test')).toMatchObject({ code: 500 });
    const lhlo = (await c.cmd('LHLO client.test'))!;
    expect(lhlo.lines).toEqual(expect.arrayContaining(['PIPELINING', '8BITMIME', 'SMTPUTF8']));
    await message(c, ['a@local.test', 'reject-b@local.test', 'c@local.test']);
    expect(await c.reply()).toMatchObject({ code: 250, text: '<a@local.test> Queued' });
    expect(await c.reply()).toMatchObject({ code: 250, text: '<c@local.test> Queued' });
    expect(await c.cmd('NOOP')).toMatchObject({ code: 250, text: 'OK' });
    expect(s.stored[0]!.received).toMatch(/ with LMTP id /);
    expect(s.stored[0]!.rcpts).toEqual(['a@local.test', 'c@local.test']);
  });

  it('mixed outcomes from the queue (lmtp_result notes) and a rejection after DATA', async () => {
    const s = await serve({}, { lmtp: true }, (rt) =>
      mock_hook(
        rt,
        'queue',
        (t: Transaction) => {
          for (const r of t.recipients()) if (r.user() === 'full') r.notes('lmtp_result', [DENYSOFT, '4.2.2 Mailbox full']);
          return DECLINED;
        },
        'quota',
      ),
    );
    let deny = false;
    mock_hook(s.runtime, 'data_post', () => (deny ? [DENY, 'spam'] : DECLINED), 'spam');
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('LHLO client.test'))!.code).toBe(250);
    await message(c, ['a@local.test', 'full@local.test', 'reject@local.test', 'b@local.test']);
    expect(await c.reply()).toMatchObject({ code: 250, text: '<a@local.test> Queued' });
    expect(await c.reply()).toMatchObject({ code: 452, text: '<full@local.test> 4.2.2 Mailbox full' });
    expect(await c.reply()).toMatchObject({ code: 250, text: '<b@local.test> Queued' });
    deny = true;
    await message(c, ['a@local.test', 'b@local.test']);
    expect(await c.reply()).toMatchObject({ code: 552, text: '<a@local.test> spam' });
    expect(await c.reply()).toMatchObject({ code: 552, text: '<b@local.test> spam' });
    expect(await c.cmd('NOOP')).toMatchObject({ code: 250 });
  });

  it('LHLO is refused on an SMTP listener', async () => {
    const s = await serve();
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect(await c.cmd('LHLO client.test')).toMatchObject({ code: 500, text: 'Unrecognized command' });
  });
});

describe('envelope facts at MAIL: SMTPUTF8, BODY, SIZE', () => {
  it('SMTPUTF8 is advertised; UTF-8 addresses only when the client asked', async () => {
    const s = await serve();
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('EHLO client.test'))!.lines).toContain('SMTPUTF8');
    c.send(Buffer.from('MAIL FROM:<jörg@exämple.test>\r\n', 'utf8'));
    expect(await c.reply()).toMatchObject({ code: 553, text: '5.6.7 Non-ASCII address needs SMTPUTF8' });
    c.send(Buffer.from('MAIL FROM:<jörg@exämple.test> SMTPUTF8 BODY=8BITMIME\r\n', 'utf8'));
    expect((await c.reply())!.code).toBe(250);
    c.send(Buffer.from('RCPT TO:<ünïcode@local.test>\r\n', 'utf8'));
    expect((await c.reply())!.code).toBe(250);
    expect((await c.cmd('DATA'))!.code).toBe(354);
    c.send('Subject: t\r\n\r\nhello\r\n.\r\n');
    expect((await c.reply())!.code).toBe(250);
    expect(s.stored[0]!.notes).toMatchObject({ smtputf8: true, body_type: '8BITMIME' });
    expect(s.stored[0]!.rcpts).toEqual(['ünïcode@local.test']);
    // a transaction without SMTPUTF8 refuses UTF-8 recipients
    expect((await c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    c.send(Buffer.from('RCPT TO:<ünïcode@local.test>\r\n', 'utf8'));
    expect(await c.reply()).toMatchObject({ code: 553 });
    expect(await c.cmd('MAIL FROM:<a@b.test> SMTPUTF8=yes')).toMatchObject({ code: 501 });
  });

  it('BODY=8BITMIME/7BIT accepted, BOGUS 501, BINARYMIME 555; SIZE over databytes 552 at MAIL', async () => {
    const s = await serve({ databytes: '1000' });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('EHLO client.test'))!.lines).toContain('SIZE 1000');
    expect((await c.cmd('MAIL FROM:<a@b.test> BODY=7bit'))!.code).toBe(250);
    expect((await c.cmd('MAIL FROM:<a@b.test> BODY=BOGUS'))!.code).toBe(501);
    expect((await c.cmd('MAIL FROM:<a@b.test> BODY=BINARYMIME'))!.code).toBe(555);
    expect(await c.cmd('MAIL FROM:<a@b.test> SIZE=1001')).toMatchObject({ code: 552, text: '5.3.4 Message size exceeds fixed maximum message size' });
    expect((await c.cmd('MAIL FROM:<a@b.test> SIZE=1000'))!.code).toBe(250);
    expect(await c.cmd('MAIL FROM:<a@b.test> SIZE=1 SIZE=2')).toMatchObject({ code: 501, text: '5.5.4 Syntax error in parameters (SIZE given twice)' });
  });
});

describe('the overlay file layer (Config#get_overlay)', () => {
  it('undefined when absent, [] when empty, lines when present; no way out of the config directory', async () => {
    const { runtime, dir } = await make_runtime({ me: 'base.test', 'via/127.0.0.2/me': 'two.test', 'via/127.0.0.4/me': '' });
    const config = runtime.config;
    expect(config.get_overlay('via/127.0.0.2', 'me')).toEqual(['two.test']);
    expect(config.get_overlay('via/127.0.0.4', 'me')).toEqual([]);
    expect(config.get_overlay('via/127.0.0.3', 'me')).toBeUndefined();
    expect(config.get_overlay('via/..', 'me')).toBeUndefined();
    expect(config.get_overlay('via/127.0.0.2/../..', path.basename(dir))).toBeUndefined();
  });
});

describe('per-listener parameters on a wildcard listener reached through 127.0.0.2 and 127.0.0.3', () => {
  it('via/<local ip>/ files win over config/<name> for that address only', async () => {
    const s = await serve(
      {
        'via/127.0.0.2/me': 'mx2.local.test',
        'via/127.0.0.2/smtpgreeting': 'mx2.local.test ESMTP second listener',
        'via/127.0.0.3/databytes': '1000',
      },
      { host: '0.0.0.0' },
    );
    const two = await open(s.port, { host: '127.0.0.2' });
    expect((await two.reply())!.text).toBe('mx2.local.test ESMTP second listener');
    const e2 = (await two.cmd('EHLO client.test'))!;
    expect(e2.lines[0]).toMatch(/^mx2\.local\.test Hi /);
    expect(e2.lines).toContain('SIZE 100000');
    expect((await two.cmd('MAIL FROM:<a@b.test> SIZE=5000'))!.code).toBe(250);

    const three = await open(s.port, { host: '127.0.0.3' });
    expect((await three.reply())!.text).toMatch(/^mx\.local\.test ESMTP qpsmtpd-ts/);
    expect((await three.cmd('EHLO client.test'))!.lines).toContain('SIZE 1000');
    expect((await three.cmd('MAIL FROM:<a@b.test> SIZE=5000'))!.code).toBe(552);
    await message(three);
    expect((await three.reply())!.code).toBe(250);
    expect(s.stored[0]!.received).toMatch(/ by mx\.local\.test /);
  });

  it('the listener_parameters hook overrides the files per connection', async () => {
    let seen: Record<string, unknown> | undefined;
    const s = await serve({ 'via/127.0.0.3/me': 'file.local.test', 'via/127.0.0.3/databytes': '1000' }, { host: '0.0.0.0' }, (rt) =>
      mock_hook(rt, 'listener_parameters', (_t: unknown, args: Record<string, unknown>) => {
        seen = args;
        return args.local_ip === '127.0.0.3' ? [OK, { me: 'hooked.local.test', databytes: 500 }] : DECLINED;
      }),
    );
    const three = await open(s.port, { host: '127.0.0.3' });
    expect((await three.reply())!.text).toMatch(/^hooked\.local\.test ESMTP/);
    expect((await three.cmd('EHLO client.test'))!.lines).toContain('SIZE 500');
    expect(seen).toMatchObject({ local_ip: '127.0.0.3', remote_ip: '127.0.0.1', host: '0.0.0.0', port: s.port });
    const two = await open(s.port, { host: '127.0.0.2' });
    expect((await two.reply())!.text).toMatch(/^mx\.local\.test ESMTP/);
  });
});

describe('certificates per listener address and by SNI', () => {
  const files: Record<string, string> = {};
  beforeAll(() => {
    const certs = tmp_dir('qpts-sni-');
    const def = make_cert('default.test', certs);
    const b = make_cert('b.test', certs);
    const wild = make_cert('wild.example.test', certs);
    const via = make_cert('via.test', certs);
    Object.assign(files, {
      tls_cert: def.cert,
      tls_key: def.key,
      'sni/b.test/tls_cert': b.cert,
      'sni/b.test/tls_key': b.key,
      'sni/*.example.test/tls_cert': wild.cert,
      'sni/*.example.test/tls_key': wild.key,
      'via/127.0.0.2/tls_cert': via.cert,
      'via/127.0.0.2/tls_key': via.key,
    });
  });

  async function cn(port: number, host: string, servername?: string): Promise<string> {
    const s = await tls_connect({ host, port, ...(servername ? { servername } : {}) });
    const subject = s.getPeerCertificate().subject;
    s.destroy();
    return String(subject.CN);
  }

  it('implicit TLS: SNI name, wildcard, the listener address default, the global default', async () => {
    const s = await serve(files, { host: '0.0.0.0', tls: true });
    expect(await cn(s.port, '127.0.0.1')).toBe('default.test');
    expect(await cn(s.port, '127.0.0.1', 'b.test')).toBe('b.test');
    expect(await cn(s.port, '127.0.0.1', 'mx.example.test')).toBe('wild.example.test');
    expect(await cn(s.port, '127.0.0.1', 'unknown.test')).toBe('default.test');
    expect(await cn(s.port, '127.0.0.2')).toBe('via.test');
    expect(await cn(s.port, '127.0.0.2', 'b.test')).toBe('b.test');
  });

  it('/tls,proxy: the PROXY header in clear, then the handshake with SNI; the real client in the session', async () => {
    const s = await serve({ ...files, trusted_proxies: '127.0.0.1' }, { tls: true, proxy: true });
    const socket = await open_socket(s.port);
    cleanup.push(() => socket.destroy());
    socket.write(proxy_v1('192.0.2.44', '127.0.0.2', 5000, 465));
    const t = await tls_connect({ socket, servername: 'b.test' });
    cleanup.push(() => t.destroy());
    expect(t.getPeerCertificate().subject.CN).toBe('b.test');
    const c = new TestClient(t);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('HELO client.test'))!.text).toMatch(/Hi \[192\.0\.2\.44\] \[192\.0\.2\.44\]/);
  });

  it('/tls,proxy: the front-end address of the PROXY header picks the via certificate', async () => {
    const s = await serve({ ...files, trusted_proxies: '127.0.0.1' }, { tls: true, proxy: true });
    const socket = await open_socket(s.port);
    cleanup.push(() => socket.destroy());
    socket.write(proxy_v1('192.0.2.44', '127.0.0.2', 5000, 465));
    const t = await tls_connect({ socket });
    cleanup.push(() => t.destroy());
    expect(t.getPeerCertificate().subject.CN).toBe('via.test');
  });

  it('STARTTLS (plugins/tls) picks the SNI certificate too', async () => {
    const s = await serve({ ...files, plugins: 'tls', plugin_dirs: PLUGIN_DIR });
    const c = await open(s.port);
    expect((await c.reply())!.code).toBe(220);
    expect((await c.cmd('EHLO client.test'))!.lines).toContain('STARTTLS');
    expect((await c.cmd('STARTTLS'))!.code).toBe(220);
    const t = await c.starttls({ servername: 'b.test' });
    cleanup.push(() => t.destroy());
    expect(String(t.stream.getPeerCertificate().subject.CN)).toBe('b.test');
  });
});
