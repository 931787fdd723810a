// Connection start over real TCP: rDNS sanitising and RFC 1413 ident, with local fake servers.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { parse_ident } from '../lib/server/ident.js';
import { connect } from './lib/daemon.js';
import { start_dns } from './lib/dns-server.js';
import { listen_port, make_runtime } from './lib/harness.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

async function fake_identd(reply: (query: string) => string | null): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d) => {
      const r = reply(d.toString());
      if (r !== null) s.end(r);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => {
    server.close();
    server.unref();
  });
  return (server.address() as net.AddressInfo).port;
}

async function serve(files: Record<string, string>) {
  const { runtime } = await make_runtime({ me: 'mx.local.test', dns_servers: '127.0.0.1:9', ...files });
  const { server, port } = await listen_port(runtime);
  cleanup.push(() => {
    server.close(); // sessions still open end with the test's sockets
    server.unref();
  });
  return port;
}

describe('ident (RFC 1413)', () => {
  it('asks "<client port> , <server port>" and puts the user id into remote_info', async () => {
    let asked = '';
    const identd = await fake_identd((q) => ((asked = q), `${q.trim()} : USERID : UNIX : alice\r\n`));
    const port = await serve({ ident: '1', ident_port: String(identd) });
    const c = await connect(port);
    await c.reply();
    expect((await c.cmd('HELO x.test'))!.text).toBe('mx.local.test Hi alice@Unknown [127.0.0.1]; I am so happy to meet you.');
    expect(asked).toMatch(new RegExp(`^\\d+ , ${port}\\r\\n$`));
  });

  it('a silent identd delays the greeting only up to ident_timeout', async () => {
    const identd = await fake_identd(() => null);
    const port = await serve({ ident: '1', ident_port: String(identd), ident_timeout: '1' });
    const started = Date.now();
    const c = await connect(port);
    expect((await c.reply())!.code).toBe(220);
    expect(Date.now() - started).toBeLessThan(1800);
    expect((await c.cmd('HELO x.test'))!.text).toMatch(/Hi Unknown \[/);
  });

  it('hostile answers are capped and sanitised', async () => {
    const big = await fake_identd(() => 'x'.repeat(65536));
    const port = await serve({ ident: '1', ident_port: String(big) });
    const c = await connect(port);
    await c.reply();
    expect((await c.cmd('HELO x.test'))!.text).toMatch(/Hi Unknown \[/);
    expect(parse_ident('1 , 2 : USERID : UNIX : a(b)"c\r')).toBe('abc');
    expect(parse_ident('1 , 2 : ERROR : NO-USER')).toBeUndefined();
  });
});

describe('reverse DNS names', () => {
  it('keeps only [a-zA-Z.-0-9[]] of a hostile PTR name', async () => {
    const dns = await start_dns({ 'PTR 1.0.0.127.in-addr.arpa': ['evil"(x);host.example.'] });
    cleanup.push(() => dns.close());
    const port = await serve({ dns_servers: `127.0.0.1:${dns.port}` });
    const c = await connect(port);
    await c.reply();
    expect((await c.cmd('HELO x.test'))!.text).toBe('mx.local.test Hi evilxhost.example [127.0.0.1]; I am so happy to meet you.');
  });
});
