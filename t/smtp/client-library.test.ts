// End to end with a real SMTP client library (nodemailer) over TCP on 127.0.0.1: pipelining,
// AUTH, STARTTLS with a certificate made here, and a 50 MiB message with bounded memory.
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listen } from '../../lib/server/serve.js';
import { make_cert } from '../lib/cert.js';
import { PLUGIN_DIR, REPO, make_runtime } from '../lib/harness.js';

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
  server = await listen(runtime, { port: 0 });
  port = (server.address() as net.AddressInfo).port;
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

  it('a 50 MiB message is spooled, queued intact, and memory stays bounded', async () => {
    const line = 'y'.repeat(998) + '\r\n';
    const lines = Math.ceil((50 * 1024 * 1024) / line.length);
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= lines) return void this.push(null);
        const n = Math.min(256, lines - sent);
        sent += n;
        this.push(line.repeat(n));
      },
    });
    const before = process.memoryUsage().rss;
    let peak = before;
    const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const info = await transport().sendMail({
        envelope: { from: 'big@example.test', to: ['big@local.test'] },
        raw: Readable.from(
          (async function* () {
            yield 'Message-ID: <big@test>\r\nSubject: big\r\n\r\n';
            for await (const chunk of body) yield chunk;
          })(),
        ),
      });
      expect(info.response).toMatch(/^250 /);
    } finally {
      clearInterval(sample);
    }
    const file = readdirSync(path.join(queue, 'new')).map((f) => path.join(queue, 'new', f)).find((f) => statSync(f).size >= lines * 999)!;
    expect(readFileSync(file, "latin1").includes("Message-ID: <big@test>")).toBe(true);
    // client and server share this process; 50 MiB held in memory would show here
    expect(peak - before).toBeLessThan(48 * 1024 * 1024);
  }, 120000);
});
