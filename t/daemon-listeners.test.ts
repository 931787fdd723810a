// The daemon (bin/qpsmtpd-ts from dist/) with listener flags: a /proxy listener whose PROXY
// header the worker reads before admission (so the per-IP limit and pre-connection hooks judge the real client),
// XCLIENT re-addressing counted by the master, and an LMTP listener on a wildcard address with a
// via/<local ip>/ overlay, reached through 127.0.0.2 and 127.0.0.3. docs/listeners.md.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { proxy_v1, proxy_v2 } from '../lib/server/proxy-protocol.js';
import { connect, daemon_config, kill_all, start_daemon, wait_for, type Daemon } from './lib/daemon.js';
import { make_cert } from './lib/cert.js';
import { TestClient, tls_connect } from './lib/session.js';

const running: Daemon[] = [];
afterEach(() => kill_all(running));

interface Started {
  d: Daemon;
  ports: number[];
  maildir: string;
}

async function daemon(files: Record<string, string | string[]>, listen: string[], extra: string[] = []): Promise<Started> {
  const { dir, maildir } = daemon_config(files);
  const d = await start_daemon(['--config', dir, ...listen.flatMap((l) => ['-l', l]), '--workers', '1', '-H', ...extra]);
  running.push(d);
  await wait_for(() => (d.output().match(/listening on /g) ?? []).length >= listen.length, 5000, 'every listener');
  const ports = [...d.output().matchAll(/listening on \S+:(\d+)/g)].map((m) => Number(m[1]));
  return { d, ports, maildir };
}

function stored(maildir: string): string[] {
  const dir = path.join(maildir, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(path.join(dir, f), 'utf8')) : [];
}

async function greeted(c: TestClient): Promise<void> {
  expect((await c.reply())!.code).toBe(220);
}

describe('a /proxy listener in the daemon', () => {
  it('the header is read first: pre-connection hooks and the worker see the real client; untrusted peers get 554', async () => {
    const s = await daemon({ trusted_proxies: '127.0.0.1', plugins: ['pre_note', 'accept_all'] }, ['0.0.0.0:0/proxy']);
    const port = s.ports[0]!;
    const c = await connect(port);
    c.send(proxy_v1('192.0.2.1', '192.0.2.2', 1234, 25));
    await greeted(c);
    expect(await c.cmd('HELO client.test')).toMatchObject({ code: 550, text: 'note: saw 192.0.2.1' });
    const v2 = await connect(port);
    v2.send(proxy_v2({ src_ip: '198.51.100.4', dst_ip: '192.0.2.2', src_port: 5, dst_port: 25 }));
    await greeted(v2);
    expect(await v2.cmd('HELO client.test')).toMatchObject({ code: 550, text: 'note: saw 198.51.100.4' });
    const untrusted = await connect(port, { local: '127.0.0.2' });
    untrusted.send(proxy_v1('192.0.2.1', '192.0.2.2', 1234, 25));
    expect(await untrusted.reply()).toMatchObject({ code: 554 });
    expect(await untrusted.wait_closed()).toBe(true);
  });

  it('the per-IP limit counts the real client, not the proxy; a message names the real client', async () => {
    const s = await daemon({ trusted_proxies: '127.0.0.1' }, ['127.0.0.1:0/proxy'], ['--max-from-ip', '1']);
    const port = s.ports[0]!;
    const a = await connect(port);
    a.send(proxy_v1('192.0.2.1', '192.0.2.2', 1234, 25) + 'EHLO client.test\r\n');
    await greeted(a);
    expect((await a.reply())!.code).toBe(250);
    const again = await connect(port);
    again.send(proxy_v1('192.0.2.1', '192.0.2.2', 1235, 25));
    expect((await again.reply())!.text).toBe('too many connections from 192.0.2.1, try again later');
    const other = await connect(port);
    other.send(proxy_v1('192.0.2.9', '192.0.2.2', 1236, 25));
    await greeted(other);
    expect((await a.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await a.cmd('RCPT TO:<r@local.test>'))!.code).toBe(250);
    expect((await a.cmd('DATA'))!.code).toBe(354);
    expect((await a.cmd('Subject: t\r\n\r\nhello\r\n.'))!.code).toBe(250);
    const [msg] = stored(s.maildir);
    expect(msg).toMatch(/^Received: from \[192\.0\.2\.1\] \(HELO client\.test\) \(192\.0\.2\.1\)$/m);
  });
});

describe('XCLIENT in the daemon', () => {
  it('moves the per-IP count to the new client; over the limit it is refused with 421', async () => {
    const s = await daemon({ trusted_proxies: '127.0.0.1' }, ['127.0.0.1:0'], ['--max-from-ip', '1']);
    const port = s.ports[0]!;
    const a = await connect(port);
    await greeted(a);
    expect(await a.cmd('XCLIENT ADDR=192.0.2.5')).toMatchObject({ code: 220 });
    // 127.0.0.1 no longer holds a session: another connection from it is welcome
    const b = await connect(port);
    await greeted(b);
    expect(await b.cmd('XCLIENT ADDR=192.0.2.5 NAME=spoof.test')).toMatchObject({ code: 421 });
    expect(await b.wait_closed()).toBe(true);
    // the worker reports the end of b's session right after closing it: let it reach the master
    await new Promise((r) => setTimeout(r, 300));
    const c = await connect(port);
    await greeted(c);
    expect(await c.cmd('XCLIENT ADDR=192.0.2.6')).toMatchObject({ code: 220 });
    expect((await c.cmd('HELO client.test'))!.text).toMatch(/Hi \[192\.0\.2\.6\] \[192\.0\.2\.6\]/);
  });
});

describe('an LMTP listener on a wildcard address with a via overlay', () => {
  it('127.0.0.2 gets its own name; one reply per recipient', async () => {
    const s = await daemon({ 'via/127.0.0.2/me': 'lmtp2.local.test' }, ['0.0.0.0:0/lmtp']);
    const port = s.ports[0]!;
    const two = await connect(port, { host: '127.0.0.2' });
    expect((await two.reply())!.text).toMatch(/^lmtp2\.local\.test LMTP qpsmtpd-ts /);
    expect((await two.cmd('LHLO client.test'))!.lines[0]).toMatch(/^lmtp2\.local\.test Hi /);
    expect((await two.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await two.cmd('RCPT TO:<x@local.test>'))!.code).toBe(250);
    expect((await two.cmd('RCPT TO:<y@local.test>'))!.code).toBe(250);
    expect((await two.cmd('DATA'))!.code).toBe(354);
    two.send('Subject: t\r\n\r\nhello\r\n.\r\n');
    expect(await two.reply()).toMatchObject({ code: 250, text: expect.stringMatching(/^<x@local\.test> /) });
    expect(await two.reply()).toMatchObject({ code: 250, text: expect.stringMatching(/^<y@local\.test> /) });
    expect(stored(s.maildir)[0]).toMatch(/ by lmtp2\.local\.test \(qpsmtpd-ts\/[^)]+\) with LMTP /);
    const three = await connect(port, { host: '127.0.0.3' });
    expect((await three.reply())!.text).toMatch(/^mx\.local\.test LMTP /);
  });
});

describe('an implicit TLS listener next to a plain one', () => {
  it('each listener keeps its kind: SMTPS greets inside TLS, the plain port in clear', async () => {
    const { cert, key } = make_cert('mx.local.test');
    const s = await daemon({ tls_cert: cert, tls_key: key }, ['127.0.0.1:0/tls', '127.0.0.1:0'], ['--workers', '2']);
    const [tls_port, plain_port] = s.ports as [number, number];
    const secure = new TestClient(await tls_connect({ host: '127.0.0.1', port: tls_port }));
    expect((await secure.reply())!.code).toBe(220);
    expect((await secure.cmd('EHLO client.test'))!.code).toBe(250);
    expect((await secure.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect((await secure.cmd('RCPT TO:<x@local.test>'))!.code).toBe(250);
    expect((await secure.cmd('DATA'))!.code).toBe(354);
    expect((await secure.cmd('Subject: t\r\n\r\nhello\r\n.'))!.code).toBe(250);
    expect(stored(s.maildir)[0]).toMatch(/ with ESMTPS /);
    const plain = await connect(plain_port);
    expect((await plain.reply())!.code).toBe(220);
  });

  it('listener_parameters hooks are told the port the kernel chose for -p 0', async () => {
    const s = await daemon({ plugins: ['listener_port', 'accept_all'] }, ['127.0.0.1:0']);
    const c = await connect(s.ports[0]!);
    await greeted(c);
    expect(await c.cmd('HELO client.test')).toMatchObject({ code: 550, text: `listener port ${s.ports[0]}` });
  });
});
