// STARTTLS over real TCP on 127.0.0.1: plugins/tls with lib/smtp/starttls.ts, driven by a raw
// socket that is upgraded in place (reliability.md 2.2, STL-01 … STL-08).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import type tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import TlsPlugin, { protocol_range, tls_context_from_config } from '../../plugins/tls.js';
import { make_cert } from '../lib/cert.js';
import { connect as tcp_client } from '../lib/daemon.js';
import { Opened, PLUGIN_DIR, listen_port, make_runtime, tmp_dir } from '../lib/harness.js';
import { TestClient, tls_connect, type Reply } from '../lib/session.js';

let root: string;
let cert: string;
let key: string;
let plugins: string;
let queue_dir: string;
const opened = new Opened();

beforeAll(() => {
  root = tmp_dir('qpts-tls-');
  ({ cert, key } = make_cert('localhost', root));
  plugins = path.join(root, 'plugins');
  mkdirSync(plugins);
  // accepts every recipient and keeps the header of each queued message in a file
  writeFileSync(
    path.join(plugins, 'test_queue.ts'),
    `import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Plugin, OK } from 'qpsmtpd-ts';
let n = 0;
export default class extends Plugin {
  dir = '';
  override register(dir: string) { this.dir = dir; }
  hook_rcpt() { return OK; }
  hook_queue(transaction: any) {
    writeFileSync(path.join(this.dir, \`\${process.pid}-\${++n}.hdr\`), transaction.header().as_string());
    return [OK, 'Queued'];
  }
}
`,
  );
  writeFileSync(
    path.join(plugins, 'test_auth.ts'),
    `import { Plugin, OK, DENY } from 'qpsmtpd-ts';
export default class extends Plugin {
  hook_auth_plain(_t: unknown, _mech: string, user: string, pass: string) {
    return user === 'alice' && pass === 's3cret' ? [OK, 'test_auth'] : [DENY, 'test_auth - wrong password'];
  }
}
`,
  );
});

afterEach(() => opened.close_all());

interface Setup {
  files?: Record<string, string | string[]>;
  plugins?: string[];
  tls_context?: tls.SecureContext;
}

async function server(setup: Setup = {}) {
  queue_dir = mkdtempSync(path.join(root, 'queue-'));
  const t = await make_runtime({
    me: 'mx.example.test',
    plugin_dirs: [plugins, PLUGIN_DIR],
    plugins: setup.plugins ?? [`tls ${cert} ${key}`, `test_queue ${queue_dir}`],
    tls_handshake_timeout: '5',
    loglevel: '7',
    ...setup.files,
  });
  const { server: srv, port } = await listen_port(t.runtime, { no_rdns: true, ...(setup.tls_context ? { tls_context: setup.tls_context } : {}) });
  opened.servers.push(srv);
  return { ...t, port };
}

async function connect(port: number): Promise<TestClient> {
  const c = await tcp_client(port);
  opened.sockets.push(c.stream);
  return c;
}

/** Greeting read, EHLO sent: the EHLO reply. */
async function hello(w: TestClient, name = 'client.example.test'): Promise<Reply> {
  expect((await w.reply())!.code).toBe(220);
  return (await w.cmd(`EHLO ${name}`))!;
}

/** Client side of the upgrade on the same socket. */
async function upgrade(w: TestClient): Promise<{ wire: TestClient; socket: tls.TLSSocket }> {
  expect(w.pending()).toBe('');
  const wire = await w.starttls({ servername: 'localhost' });
  opened.sockets.push(wire.stream);
  return { wire, socket: wire.stream };
}

async function starttls(w: TestClient): Promise<{ wire: TestClient; socket: tls.TLSSocket }> {
  expect(await w.cmd('STARTTLS')).toMatchObject({ code: 220, text: 'Go ahead with TLS' });
  return upgrade(w);
}

function queued(): string[] {
  return existsSync(queue_dir) ? readdirSync(queue_dir).map((f) => readFileSync(path.join(queue_dir, f), 'latin1')) : [];
}

async function send_message(w: TestClient): Promise<Reply> {
  expect((await w.cmd('MAIL FROM:<a@example.test>'))!.code).toBe(250);
  expect((await w.cmd('RCPT TO:<r@local.test>'))!.code).toBe(250);
  expect((await w.cmd('DATA'))!.code).toBe(354);
  return (await w.cmd('Subject: hi\r\n\r\nbody\r\n.'))!;
}

describe('plugins/tls: STARTTLS', () => {
  it('offers STARTTLS in EHLO and carries on inside TLS', async () => {
    const { port } = await server();
    const w = await connect(port);
    const ehlo = await hello(w);
    expect(ehlo.lines).toContain('STARTTLS');
    const { wire, socket } = await starttls(w);
    expect(socket.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    const again = (await wire.cmd('EHLO client.example.test'))!;
    expect(again.code).toBe(250);
    expect(again.lines).not.toContain('STARTTLS');
    expect(await wire.cmd('QUIT')).toMatchObject({ code: 221 });
    expect(await wire.wait_closed()).toBe(true);
  });

  it('STL-01: a command pipelined behind STARTTLS is discarded, never answered inside TLS', async () => {
    const { port, logged } = await server();
    const w = await connect(port);
    await hello(w);
    w.send('STARTTLS\r\nRSET\r\n');
    expect(await w.reply()).toMatchObject({ code: 220, text: 'Go ahead with TLS' });
    expect(await w.idle(200)).toBe(''); // only the 220 in clear
    const { wire } = await upgrade(w);
    expect(await wire.idle(1000)).toBe('');
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
    expect(logged.some((l) => /discarded 6 bytes/.test(l))).toBe(true);
  });

  it('STL-01 (command-injection-tester variant): no unprompted 250 inside TLS', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    w.send('STARTTLS\r\nEHLO commandinjectiontester\r\n');
    expect((await w.reply())!.code).toBe(220);
    const { wire } = await upgrade(w);
    expect(await wire.idle(1000)).toBe('');
  });

  it('STL-02: an injected MAIL is forgotten', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    w.send('STARTTLS\r\nMAIL FROM:<inj@example.test>\r\n');
    expect((await w.reply())!.code).toBe(220);
    const { wire } = await upgrade(w);
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
    expect(await wire.cmd('RCPT TO:<r@local.test>')).toMatchObject({ code: 503, text: 'Use MAIL before RCPT' });
  });

  it('STL-03: the session state is reset and TLS is not offered again', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    expect((await w.cmd('MAIL FROM:<a@example.test>'))!.code).toBe(250);
    const { wire } = await starttls(w);
    expect(await wire.cmd('MAIL FROM:<a@example.test>')).toMatchObject({ code: 503, text: 'please say hello first ...' });
    const ehlo = (await wire.cmd('EHLO client.example.test'))!;
    expect(ehlo.code).toBe(250);
    expect(ehlo.lines).not.toContain('STARTTLS');
    expect(await wire.cmd('STARTTLS')).toMatchObject({ code: 503, text: '5.5.1 TLS already active' });
    // the session goes on normally
    expect((await wire.cmd('MAIL FROM:<a@example.test>'))!.code).toBe(250);
  });

  it('STARTTLS survives RSET within the same EHLO, but not a HELO', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    expect((await w.cmd('RSET'))!.code).toBe(250);
    expect((await w.cmd('HELO client.example.test'))!.code).toBe(250);
    expect(await w.cmd('STARTTLS')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect((await w.cmd('EHLO client.example.test'))!.lines).toContain('STARTTLS');
    expect((await w.cmd('RSET'))!.code).toBe(250);
    await starttls(w);
  });

  it('STL-04: STARTTLS with an argument is a syntax error, in clear', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    expect(await w.cmd('STARTTLS now')).toMatchObject({ code: 500, text: 'Syntax error (no parameters allowed)' });
    // still plain text, still usable
    expect((await w.cmd('NOOP'))!.code).toBe(250);
  });

  it('STARTTLS before EHLO is not offered: 500 Unrecognized command', async () => {
    const { port } = await server();
    const w = await connect(port);
    expect((await w.reply())!.code).toBe(220);
    expect(await w.cmd('STARTTLS')).toMatchObject({ code: 500, text: 'Unrecognized command' });
  });

  it('STL-05: garbage instead of a ClientHello ends the session; the server keeps serving', async () => {
    const { port, logged } = await server();
    const w = await connect(port);
    await hello(w);
    expect((await w.cmd('STARTTLS'))!.code).toBe(220);
    w.send(Buffer.from('\x16\x03\x01\x00\x05hello', 'latin1'));
    (w.stream as net.Socket).end();
    expect(await w.wait_closed()).toBe(true);
    await expect.poll(() => logged.some((l) => /TLS failed/.test(l))).toBe(true);

    const w2 = await connect(port);
    await hello(w2);
    expect((await w2.cmd('STARTTLS'))!.code).toBe(220);
    w2.stream.destroy(); // abrupt close before any TLS byte
    expect(await w2.wait_closed()).toBe(true);

    const w3 = await connect(port);
    expect((await hello(w3)).code).toBe(250);
    const { wire } = await starttls(w3);
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
  });

  it('STL-05: close_notify in the middle of DATA queues nothing', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    const { wire, socket } = await starttls(w);
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
    expect((await wire.cmd('MAIL FROM:<a@example.test>'))!.code).toBe(250);
    expect((await wire.cmd('RCPT TO:<r@local.test>'))!.code).toBe(250);
    expect((await wire.cmd('DATA'))!.code).toBe(354);
    wire.send('Subject: cut\r\n\r\nhalf a message\r\n');
    socket.end(); // close_notify, then FIN
    expect(await wire.wait_closed()).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
    expect(queued()).toEqual([]);
    // and the server is fine
    const w2 = await connect(port);
    expect((await hello(w2)).code).toBe(250);
  });

  it('STL-07: a stalled handshake is closed within tls_handshake_timeout', async () => {
    const { port } = await server({ files: { tls_handshake_timeout: '1' } });
    const w = await connect(port);
    await hello(w);
    expect((await w.cmd('STARTTLS'))!.code).toBe(220);
    const t0 = Date.now();
    expect(await w.wait_closed(4000)).toBe(true);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(2500);
  });

  it('STL-08: without the tls plugin STARTTLS is an unknown command, never 220', async () => {
    const { port } = await server({ plugins: [`test_queue ${mkdtempSync(path.join(root, 'q-'))}`] });
    const w = await connect(port);
    const ehlo = await hello(w);
    expect(ehlo.lines).not.toContain('STARTTLS');
    expect(await w.cmd('STARTTLS')).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect((await w.cmd('NOOP'))!.code).toBe(250);
  });

  it('the Received header says ESMTPS with the cipher', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    const { wire, socket } = await starttls(w);
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
    expect(await send_message(wire)).toMatchObject({ code: 250, text: 'Queued' });
    const [hdr] = queued();
    const cipher = socket.getCipher().name;
    expect(hdr).toMatch(new RegExp(`with ESMTPS \\(${cipher} encrypted\\) id [0-9A-F-]{36}\\.1; `));
    expect(hdr).toMatch(/^Received: from \[127\.0\.0\.1\] \(HELO client\.example\.test\) \(127\.0\.0\.1\)\n by mx\.example\.test /m);
    expect(hdr).toMatch(/^Authentication-Results: mx\.example\.test; auth=none$/m);
  });

  it('a message sent in clear says ESMTP without a TLS comment', async () => {
    const { port } = await server();
    const w = await connect(port);
    await hello(w);
    expect(await send_message(w)).toMatchObject({ code: 250 });
    expect(queued()[0]).toMatch(/ with ESMTP id [0-9A-F-]{36}\.1; /);
  });

  it('tls_before_auth hides AUTH until STARTTLS; the tls plugin joins the auth hooks', async () => {
    const { port, runtime } = await server({
      files: { tls_before_auth: '1' },
      plugins: ['test_auth', `tls ${cert} ${key}`, `test_queue ${mkdtempSync(path.join(root, 'q-'))}`],
    });
    expect(runtime.hooks.get('auth-plain').map((e) => e.name)).toEqual(['test_auth', 'tls']);
    const w = await connect(port);
    const before = await hello(w);
    expect(before.lines).toContain('STARTTLS');
    expect(before.lines.some((l) => l.startsWith('AUTH'))).toBe(false);
    expect((await w.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`))!.code).toBe(500);
    const { wire } = await starttls(w);
    const after = (await wire.cmd('EHLO client.example.test'))!;
    expect(after.lines).toContain('AUTH PLAIN');
    expect(after.lines).not.toContain('STARTTLS');
    expect((await wire.cmd(`AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`))!.code).toBe(235);
  });

  it('without tls_before_auth AUTH is offered next to STARTTLS', async () => {
    const { port } = await server({ plugins: ['test_auth', `tls ${cert} ${key}`] });
    const w = await connect(port);
    const ehlo = await hello(w);
    expect(ehlo.lines).toEqual(expect.arrayContaining(['STARTTLS', 'AUTH PLAIN']));
    const { wire } = await starttls(w);
    // what the clear-text EHLO enabled is gone until the client greets again
    const auth = `AUTH PLAIN ${Buffer.from('\0alice\0s3cret').toString('base64')}`;
    expect(await wire.cmd(auth)).toMatchObject({ code: 500, text: 'Unrecognized command' });
    expect((await wire.cmd('EHLO client.example.test'))!.lines).toContain('AUTH PLAIN');
    expect((await wire.cmd(auth))!.code).toBe(235);
  });

  it('implicit TLS (SMTPS) greets inside TLS with the same certificate', async () => {
    const t = await make_runtime({ me: 'mx.example.test', plugin_dirs: [plugins, PLUGIN_DIR], plugins: [`tls ${cert} ${key}`] });
    const plugin = t.runtime.plugins.find((p) => p.plugin_name() === 'tls') as TlsPlugin;
    const context = plugin.secure_context();
    const { server: srv, port } = await listen_port(t.runtime, { no_rdns: true, tls_context: context });
    opened.servers.push(srv);
    const socket = await tls_connect({ host: '127.0.0.1', port, servername: 'localhost' });
    opened.sockets.push(socket);
    const wire = new TestClient(socket);
    expect(socket.getPeerCertificate().subject.CN).toBe('localhost');
    expect((await wire.reply())!.code).toBe(220);
    const ehlo = (await wire.cmd('EHLO client.example.test'))!;
    expect(ehlo.lines).not.toContain('STARTTLS');
    expect(await wire.cmd('STARTTLS')).toMatchObject({ code: 503, text: '5.5.1 TLS already active' });
    // the exported helper builds an equivalent context from config
    expect(tls_context_from_config(t.runtime.server_qp, [cert, key])).toBeInstanceOf(Object);
  });
});

describe('plugins/tls: configuration', () => {
  it('a missing certificate is a start-up error naming the file', async () => {
    const missing = path.join(root, 'nope.crt');
    await expect(
      make_runtime({ plugin_dirs: [plugins, PLUGIN_DIR], plugins: [`tls ${missing} ${key}`] }),
    ).rejects.toThrow(new RegExp(`cannot read certificate ${missing.replace(/[.]/g, '\\.')}`));
  });

  it('tls_cert/tls_key config files are used when no argument names the files', async () => {
    const t = await make_runtime({ plugin_dirs: [plugins, PLUGIN_DIR], plugins: ['tls'], tls_cert: cert, tls_key: key });
    const plugin = t.runtime.plugins.find((p) => p.plugin_name() === 'tls') as TlsPlugin;
    expect(plugin.settings).toMatchObject({ cert, key, ciphers: 'HIGH', min_version: 'TLSv1.2', handshake_timeout_ms: 30000 });
  });

  it('relative tls_cert/tls_key paths are taken from the config directory', async () => {
    const t = await make_runtime({
      plugin_dirs: [plugins, PLUGIN_DIR],
      plugins: ['tls'],
      'ssl/server.crt': readFileSync(cert, 'latin1'),
      'ssl/server.key': readFileSync(key, 'latin1'),
      tls_cert: 'ssl/server.crt',
      tls_key: 'ssl/server.key',
    });
    const plugin = t.runtime.plugins.find((p) => p.plugin_name() === 'tls') as TlsPlugin;
    expect(plugin.settings!.cert).toBe(path.join(t.dir, 'ssl/server.crt'));
    expect(plugin.settings!.key).toBe(path.join(t.dir, 'ssl/server.key'));
  });

  it('arguments win over tls_cert/tls_key', async () => {
    const t = await make_runtime({
      plugin_dirs: [plugins, PLUGIN_DIR],
      plugins: [`tls ${cert} ${key}`],
      tls_cert: '/nonexistent/server.crt',
      tls_key: '/nonexistent/server.key',
    });
    const plugin = t.runtime.plugins.find((p) => p.plugin_name() === 'tls') as TlsPlugin;
    expect(plugin.settings).toMatchObject({ cert, key });
  });

  it('tls_protocols limits what the handshake may negotiate', async () => {
    const { port } = await server({ files: { tls_protocols: 'TLSv1_2' } });
    const w = await connect(port);
    await hello(w);
    const { wire, socket } = await starttls(w);
    expect(socket.getProtocol()).toBe('TLSv1.2');
    expect((await wire.cmd('EHLO client.example.test'))!.code).toBe(250);
  });

  it('a bad tls_ciphers is a start-up error', async () => {
    await expect(
      make_runtime({ plugin_dirs: [plugins, PLUGIN_DIR], plugins: [`tls ${cert} ${key}`], tls_ciphers: 'NOSUCHCIPHER' }),
    ).rejects.toThrow(/ciphers 'NOSUCHCIPHER'/);
  });

  it('tls_protocols words map to a node version range', () => {
    expect(protocol_range('')).toEqual(['TLSv1.2', 'TLSv1.3']);
    expect(protocol_range('SSLv23:!SSLv2:!SSLv3')).toEqual(['TLSv1', 'TLSv1.3']);
    expect(protocol_range('SSLv23:!SSLv2:!SSLv3:!TLSv1')).toEqual(['TLSv1.1', 'TLSv1.3']);
    expect(protocol_range('SSLv23:!SSLv2:!SSLv3:!TLSv1:!TLSv1_1')).toEqual(['TLSv1.2', 'TLSv1.3']);
    expect(protocol_range('TLSv1_2')).toEqual(['TLSv1.2', 'TLSv1.2']);
    expect(protocol_range('!TLSv1:!TLSv1.1')).toEqual(['TLSv1.2', 'TLSv1.3']);
    const warned: string[] = [];
    expect(protocol_range('SSLv23:!TLSv1_1', (m) => warned.push(m))).toEqual(['TLSv1.2', 'TLSv1.3']);
    expect(warned).toHaveLength(1);
    expect(() => protocol_range('SSLv23:!TLSv1:!TLSv11:!TLSv12:!TLSv13')).toThrow(/no TLS version/);
    expect(() => protocol_range('TLSv9')).toThrow(/unknown protocol 'TLSv9'/);
  });
});
