// http_config: config values from a web server the test runs on 127.0.0.1, through the
// plugin's cache (config hooks are synchronous in qpsmtpd-ts). qpsmtpd has no plugin test.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Connection, DECLINED, OK, Qpsmtpd, type Plugin, type Runtime } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface HttpConfig extends Plugin {
  _urls: string[];
  _refresh_ms: number;
  _timeout_ms: number;
  hook_config(t: unknown, name: string): number | [number, ...string[]];
  fetch_name(name: string): Promise<void>;
  refresh_all(): Promise<void>;
  ready(): Promise<void>;
}

interface TestHttp {
  base: string;
  pages: Map<string, { status?: number; body: string }>;
  requests: string[];
  close(): Promise<void>;
}

async function start_http(): Promise<TestHttp> {
  const pages = new Map<string, { status?: number; body: string }>();
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    const page = pages.get(req.url ?? '');
    res.writeHead(page ? (page.status ?? 200) : 404, { 'content-type': 'text/plain' });
    res.end(page ? page.body : 'not found\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    base: `http://127.0.0.1:${port}`,
    pages,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const servers: TestHttp[] = [];
const runtimes: Runtime[] = [];
afterEach(async () => {
  for (const r of runtimes.splice(0)) await r.close();
  for (const s of servers.splice(0)) await s.close();
});

async function server(): Promise<TestHttp> {
  const s = await start_http();
  servers.push(s);
  return s;
}

async function setup(line: string, files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.file.test', ...files });
  runtimes.push(rt.runtime);
  const plugin = rt.runtime.plugins[0] as HttpConfig;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  return { ...rt, plugin, qp };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('http_config: lookups', () => {
  it('prefetched names are answered from the first URL with usable lines; comments and blank lines dropped', async () => {
    const h = await server();
    h.pages.set('/a/me', { body: 'mx.http.test\n' });
    h.pages.set('/a/rcpthosts', { body: '# nothing here\n\n   \n' });
    h.pages.set('/b/rcpthosts', { body: 'example.test\r\n# comment\r\n.sub.example.test\r\n' });
    const { qp } = await setup(`http_config ${h.base}/a/ ${h.base}/b/ prefetch me,rcpthosts refresh 0`);
    expect(qp.config('me')).toBe('mx.http.test');
    expect(qp.config_list('rcpthosts')).toEqual(['example.test', '.sub.example.test']);
    expect(h.requests.sort()).toEqual(['/a/me', '/a/rcpthosts', '/b/rcpthosts']);
  });

  it('a name neither URL has falls through to the files', async () => {
    const h = await server();
    const { qp, plugin } = await setup(`http_config ${h.base}/a/ prefetch me refresh 0`);
    expect(qp.config('me')).toBe('mx.file.test');
    expect(plugin.hook_config(undefined, 'me')).toBe(DECLINED);
  });

  it('another name is fetched in the background at its first lookup; the files answer until then', async () => {
    const h = await server();
    h.pages.set('/cfg/timeout', { body: '42\n' });
    const { qp, plugin } = await setup(`http_config ${h.base}/cfg/ refresh 0`, { timeout: '600' });
    expect(qp.config('timeout')).toBe('600');
    await plugin.ready();
    expect(qp.config('timeout')).toBe('42');
    expect(plugin.hook_config(undefined, 'timeout')).toEqual([OK, '42']);
    // one request: answers come from the cache now
    qp.config('timeout');
    expect(h.requests).toEqual(['/cfg/timeout']);
  });

  it('the cache is shared by sessions', async () => {
    const h = await server();
    h.pages.set('/cfg/me', { body: 'mx.http.test\n' });
    const { runtime } = await setup(`http_config ${h.base}/cfg/ prefetch me refresh 0`);
    const a = new Qpsmtpd(runtime, new Connection());
    const b = new Qpsmtpd(runtime, new Connection());
    expect(a.config('me')).toBe('mx.http.test');
    expect(b.config('me')).toBe('mx.http.test');
    expect(h.requests).toEqual(['/cfg/me']);
  });
});

describe('http_config: refreshing', () => {
  it('names looked up are fetched again every `refresh` seconds', async () => {
    const h = await server();
    h.pages.set('/cfg/me', { body: 'one.test\n' });
    const { qp } = await setup(`http_config ${h.base}/cfg/ prefetch me refresh 0.2`);
    expect(qp.config('me')).toBe('one.test');
    h.pages.set('/cfg/me', { body: 'two.test\n' });
    const deadline = Date.now() + 5000;
    while (qp.config('me') !== 'two.test' && Date.now() < deadline) await sleep(50);
    expect(qp.config('me')).toBe('two.test');
  });

  it('an answer without lines removes the value; no answer at all keeps it', async () => {
    const h = await server();
    h.pages.set('/cfg/me', { body: 'one.test\n' });
    const { qp, plugin } = await setup(`http_config ${h.base}/cfg/ prefetch me refresh 0 timeout 1`);
    expect(qp.config('me')).toBe('one.test');
    h.pages.set('/cfg/me', { status: 500, body: 'oops\n' });
    await plugin.refresh_all();
    expect(qp.config('me')).toBe('mx.file.test');

    h.pages.set('/cfg/me', { body: 'three.test\n' });
    await plugin.refresh_all();
    expect(qp.config('me')).toBe('three.test');
    await h.close();
    servers.splice(servers.indexOf(h), 1);
    await plugin.refresh_all();
    expect(qp.config('me')).toBe('three.test');
  });

  it('a server that never answers costs at most `timeout` at start-up', async () => {
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s)); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const t0 = Date.now();
      const { qp } = await setup(`http_config http://127.0.0.1:${port}/ prefetch me refresh 0 timeout 0.3`);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(qp.config('me')).toBe('mx.file.test');
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('http_config: arguments', () => {
  it('URLs in order, options with values', async () => {
    const { plugin } = await setup('http_config http://127.0.0.1:9/a/ https://127.0.0.1:9/b?config= refresh 30 timeout 2');
    expect(plugin._urls).toEqual(['http://127.0.0.1:9/a/', 'https://127.0.0.1:9/b?config=']);
    expect(plugin._refresh_ms).toBe(30000);
    expect(plugin._timeout_ms).toBe(2000);
  });

  it('refuses anything else at start-up', async () => {
    await expect(setup('http_config ftp://127.0.0.1/x/')).rejects.toThrow(/http_config: unknown argument 'ftp:\/\/127.0.0.1\/x\/'/);
    await expect(setup('http_config http://127.0.0.1:9/ refresh soon')).rejects.toThrow(/refresh must be a number of seconds/);
    await expect(setup('http_config http://127.0.0.1:9/ prefetch')).rejects.toThrow(/argument 'prefetch' needs a value/);
  });

  it('without URLs it answers nothing', async () => {
    const { qp, plugin } = await setup('http_config');
    expect(plugin.hook_config(undefined, 'me')).toBe(DECLINED);
    expect(qp.config('me')).toBe('mx.file.test');
  });
});

describe('http_config: SMTP session', () => {
  it('the greeting and the local domains come from the web server', async () => {
    const h = await server();
    h.pages.set('/cfg/me', { body: 'mx.http.test\n' });
    h.pages.set('/cfg/rcpthosts', { body: 'http.test\n' });
    const { runtime } = await make_runtime({
      me: 'mx.file.test',
      rcpthosts: ['file.test'],
      plugins: [`http_config ${h.base}/cfg/ prefetch me,rcpthosts`, 'rcpt_ok'],
    });
    runtimes.push(runtime);
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.text).toMatch(/^mx\.http\.test ESMTP /);
    await client.cmd('HELO client.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    expect(await client.cmd('RCPT TO:<u@http.test>')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<u@file.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    await client.cmd('QUIT');
    await done;
  });
});
