// SMTP clients for tests: a byte-level client that reads whole replies on any stream (an
// in-process session's Duplex, a TCP socket, TLS on top), and in-process sessions.
import { once } from 'node:events';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { expect } from 'vitest';
import { Connection } from '../../lib/connection.js';
import type { Runtime } from '../../lib/runtime.js';
import { SmtpSession } from '../../lib/smtp/session.js';

/** Two connected Duplex streams (what one writes, the other reads). */
export function duplex_pair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
  const make = (other: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        other().push(chunk);
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
      destroy(err, cb) {
        const o = other();
        if (!o.readableEnded) o.push(null);
        cb(err);
      },
    });
  a = make(() => b);
  b = make(() => a);
  return [a, b];
}

export interface Reply {
  code: number;
  lines: string[];
  text: string;
}

/** Bytes from a stream as latin1 (one char per byte), with waits for more bytes or for the end. */
export class StreamClient<S extends Duplex = Duplex> {
  /** Bytes received and not yet consumed. */
  buf = '';
  closed = false;
  private waiters: Array<() => void> = [];
  private readonly on_data = (d: Buffer) => {
    this.buf += d.toString('latin1');
    this.notify();
  };
  private readonly on_close = () => {
    this.closed = true;
    this.notify();
  };
  constructor(readonly stream: S) {
    stream.on('data', this.on_data);
    stream.on('end', this.on_close);
    stream.on('close', this.on_close);
    stream.on('error', this.on_close);
  }
  private notify(): void {
    for (const f of this.waiters.splice(0)) f();
  }
  /** Until more bytes arrive, the stream ends or `ms` pass. */
  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  /** What `take` finds in the buffer, waiting for bytes as needed: `'closed'` if the stream ended first, `'silent'` after `ms`. */
  protected async next<T>(take: () => T | undefined, ms: number): Promise<T | 'closed' | 'silent'> {
    const deadline = Date.now() + ms;
    for (;;) {
      const r = take();
      if (r !== undefined) return r;
      if (this.closed) return 'closed';
      const left = deadline - Date.now();
      if (left <= 0) return 'silent';
      await this.wait(left);
    }
  }
  /** Writes the bytes (a string as latin1), unless the stream can no longer be written. */
  send(data: string | Buffer): void {
    if (this.stream.writableEnded || this.stream.destroyed) return;
    this.stream.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }
  /** Bytes received and not yet consumed. */
  pending(): string {
    return this.buf;
  }
  /** Waits until `cond(buf)` holds or the stream ends; throws after `ms`. */
  async until(cond: (buf: string) => boolean, ms = 10000): Promise<void> {
    if ((await this.next(() => cond(this.buf) || undefined, ms)) === 'silent') {
      throw new Error(`timed out; have ${JSON.stringify(this.buf.slice(-300))}`);
    }
  }
  /** Whatever arrives within `ms` (nothing consumed). */
  async idle(ms: number): Promise<string> {
    await this.next(() => undefined, ms);
    return this.buf;
  }
  /** True once the stream has ended, false if `ms` passed first. */
  async wait_closed(ms = 5000): Promise<boolean> {
    await this.next(() => undefined, ms);
    return this.closed;
  }
  /** Stops reading (errors stay ignored), for a TLS layer to take over the stream. */
  detach(): S {
    this.stream.off('data', this.on_data);
    this.stream.off('end', this.on_close);
    this.stream.off('close', this.on_close);
    this.stream.pause();
    return this.stream;
  }
  end(): void {
    this.stream.end();
  }
  destroy(): void {
    this.stream.destroy();
  }
}

/** A raw SMTP client: exact bytes out, complete replies in. */
export class TestClient<S extends Duplex = Duplex> extends StreamClient<S> {
  /** How long reply() waits unless told. */
  timeout_ms = 5000;
  /** Takes one complete reply off the buffer. */
  protected take(): Reply | undefined {
    const m = /^((?:\d{3}-[^\r\n]*\r\n)*)(\d{3}) ([^\r\n]*)\r\n/.exec(this.buf);
    if (!m) return undefined;
    this.buf = this.buf.slice(m[0].length);
    const lines = m[0].split('\r\n').filter(Boolean).map((l) => l.slice(4));
    return { code: Number(m[2]), lines, text: lines.join('\n') };
  }
  /** The next complete reply, or null if the server closed first; throws after `timeout_ms`. */
  async reply(timeout_ms = this.timeout_ms): Promise<Reply | null> {
    const r = await this.next(() => this.take(), timeout_ms);
    if (r === 'silent') throw new Error(`no reply within ${timeout_ms} ms; buffered: ${JSON.stringify(this.buf)}`);
    return r === 'closed' ? null : r;
  }
  /** Sends a line (CRLF added) and returns the reply. */
  async cmd(line: string, timeout_ms?: number): Promise<Reply | null> {
    this.send(line + '\r\n');
    return this.reply(timeout_ms);
  }
  /** Sends a line and expects a reply with `code`. */
  async expect_cmd(line: string, code: number): Promise<Reply> {
    const r = await this.cmd(line);
    expect(r, `${line} → connection closed`).not.toBeNull();
    expect(r!.code, `${line} → ${r!.code} ${r!.text}`).toBe(code);
    return r!;
  }
  /** After a 220 to STARTTLS: the handshake on this client's stream; the new client reads inside TLS. */
  async starttls(opts: tls.ConnectionOptions = {}): Promise<TestClient<tls.TLSSocket>> {
    return new TestClient(await tls_connect({ ...opts, socket: this.detach() }));
  }
}

/** A TLS client that checks no certificate, over `opts.socket` or to `opts.host`:`opts.port`; resolves after the handshake. */
export async function tls_connect(opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  const socket = tls.connect({ rejectUnauthorized: false, ...opts });
  await once(socket, 'secureConnect');
  return socket;
}

export interface InProcess {
  session: SmtpSession;
  client: TestClient;
  done: Promise<void>;
}

/** Starts a session on an in-memory stream; the client has read nothing yet. */
export function start_session(runtime: Runtime, conn: Partial<Record<string, unknown>> = {}): InProcess {
  const [server, clientSide] = duplex_pair();
  const connection = new Connection().start({
    remote_ip: '127.0.0.1',
    remote_port: 40000,
    remote_host: 'Unknown',
    remote_info: 'Unknown',
    local_ip: '127.0.0.1',
    local_port: 25,
    ...conn,
  });
  const session = new SmtpSession(runtime, server, connection);
  const done = session.run();
  return { session, client: new TestClient(clientSide), done };
}
