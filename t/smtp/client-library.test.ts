// End to end with a real SMTP client library (nodemailer) over TCP on 127.0.0.1: pipelining,
// AUTH, STARTTLS with a certificate made here, and a 50 MiB message with bounded memory.
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { make_cert } from '../lib/cert.js';
import { start_daemon } from '../lib/daemon.js';
import { PLUGIN_DIR, REPO, listen_port, make_runtime, write_config } from '../lib/harness.js';

let port = 0;
let server: net.Server;
const queue = mkdtempSync(path.join(os.tmpdir(), 'qpts-nm-q-'));

beforeAll(async () => {
  const { cert, key } = make_cert('localhost');
  const { runtime } = await make_runtime({
    me: 'mx.local.test',
    plugin_dirs: [path.join(REPO, 't', 'fixtures', 'plugins'), PLUGIN_DIR],
    plugins: ['tls', 'auth/auth_flat_file', 'test_rcpt_local', 'test_queue'],
    flat_auth_pw: 'alice@local.test:s3cret',
    tls_cert: cert,
    tls_key: key,
    test_queue_dir: queue,
    databytes: String(60 * 1024 * 1024),
    size_threshold: '65536',
  });
  ({ server, port } = await listen_port(runtime));
});
afterAll(() => {
  server.close();
  server.unref();
});

function transport(opts: Record<string, unknown> = {}) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    name: 'client.local.test',
    tls: { rejectUnauthorized: false },
    ...opts,
  } as never);
}

function stored(id: string): string | undefined {
  const dir = path.join(queue, 'new');
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.eml'))) {
    const text = readFileSync(path.join(dir, f), 'latin1');
    if (text.includes(id)) return text;
  }
  return undefined;
}

describe('nodemailer as the client', () => {
  it('sends a pipelined message to several recipients; one is refused', async () => {
    const info = await transport().sendMail({
      from: 'sender@example.test',
      to: ['a@local.test', 'b@local.test', 'x@elsewhere.test'],
      subject: 'pipelined',
      text: 'hello\n.leading dot\n',
      messageId: '<pipelined@test>',
    });
    expect(info.accepted).toEqual(['a@local.test', 'b@local.test']);
    expect(info.rejected).toEqual(['x@elsewhere.test']);
    const msg = stored('pipelined@test')!;
    expect(msg).toMatch(/^Received: from Unknown \(HELO client\.local\.test\)/m);
    expect(msg).toMatch(/\n\.leading dot\n/);
  });

  it('upgrades with STARTTLS and authenticates with PLAIN and LOGIN', async () => {
    for (const method of ['PLAIN', 'LOGIN']) {
      const info = await transport({ ignoreTLS: false, requireTLS: true, auth: { user: 'alice@local.test', pass: 's3cret', method } }).sendMail({
        from: 'alice@local.test',
        to: 'c@local.test',
        subject: `auth ${method}`,
        text: 'x',
        messageId: `<auth-${method}@test>`,
      });
      expect(info.response).toMatch(/^250 /);
      const msg = stored(`auth-${method}@test`)!;
      expect(msg).toMatch(new RegExp(`with ESMTPSA \\(\\S+ encrypted\\)`));
      expect(msg).toMatch(new RegExp(`auth=pass \\(${method.toLowerCase()}\\) smtp\\.auth=alice@local\\.test`));
    }
  });

  it('a wrong password is refused with 535', async () => {
    const err = await transport({ ignoreTLS: false, requireTLS: true, auth: { user: 'alice@local.test', pass: 'nope' } })
      .sendMail({ from: 'alice@local.test', to: 'c@local.test', text: 'x' })
      .catch((e: { responseCode?: number }) => e);
    expect(err.responseCode).toBe(535);
  });

  it('messages of 20 and 120 MiB through the daemon: queued intact; worker memory does not grow with size', async () => {
    const md = mkdtempSync(path.join(os.tmpdir(), 'qpts-nm-md-'));
    const dir = write_config({
      me: 'mx.local.test',
      plugin_dirs: [path.join(REPO, 't', 'fixtures', 'daemon'), path.join(REPO, 'dist', 'plugins')],
      plugins: ['accept_all', `queue/maildir ${md}`],
      spool_dir: mkdtempSync(path.join(os.tmpdir(), 'qpts-nm-sp-')),
      databytes: String(200 * 1024 * 1024),
      size_threshold: '65536',
      dns_servers: '127.0.0.1:9',
      loglevel: '2',
    });
    const d = await start_daemon(['--config', dir, '-l', '127.0.0.1', '-p', '0', '--workers', '1']);
    try {
      const [worker] = d.workers();
      // VmHWM is the worker's peak resident size since it started
      const peak_kib = () => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${worker}/status`, 'utf8'))![1]);
      const line = 'y'.repeat(998) + '\r\n';
      const send = async (mib: number) => {
        const lines = Math.ceil((mib * 1024 * 1024) / line.length);
        const info = await nodemailer
          .createTransport({ host: '127.0.0.1', port: d.port, secure: false, ignoreTLS: true, name: 'client.local.test' } as never)
          .sendMail({
            envelope: { from: 'big@example.test', to: ['big@local.test'] },
            raw: Readable.from(
              (async function* () {
                yield `Message-ID: <big-${mib}@test>\r\nSubject: big\r\n\r\n`;
                for (let sent = 0; sent < lines; sent += 256) yield line.repeat(Math.min(256, lines - sent));
              })(),
            ),
          });
        expect(info.response).toMatch(/^250 /);
        return lines;
      };
      await send(20);
      const after_small = peak_kib();
      const lines = await send(120);
      // holding the message would add ~100 MiB here; streaming leaves the peak where it was
      const growth = peak_kib() - after_small;
      expect(growth).toBeLessThan(40 * 1024);
      const sizes = readdirSync(path.join(md, 'new')).map((f) => statSync(path.join(md, 'new', f)).size);
      expect(Math.max(...sizes)).toBeGreaterThanOrEqual(lines * 999);
    } finally {
      await d.stop();
    }
  }, 120000);
});
