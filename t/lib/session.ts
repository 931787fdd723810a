// In-process SMTP sessions for tests: a Duplex pair, a session on one end, a byte-level client
// on the other that reads whole replies.
import { Duplex } from 'node:stream';
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

/** A raw client: exact bytes out, complete replies in. */
export class TestClient {
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;
  constructor(readonly stream: Duplex) {
    stream.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.notify();
    });
    stream.on('end', () => {
      this.closed = true;
      this.notify();
    });
    stream.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }
  private notify() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  send(data: string | Buffer): void {
    this.stream.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }
  /** The next complete reply, or null if the server closed first. */
  async reply(timeout_ms = 5000): Promise<Reply | null> {
    const deadline = Date.now() + timeout_ms;
    for (;;) {
      const m = /^((?:\d{3}-[^\r\n]*\r\n)*)(\d{3}) ([^\r\n]*)\r\n/.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(m[0].length);
        const lines = m[0].split('\r\n').filter(Boolean).map((l) => l.slice(4));
        return { code: Number(m[2]), lines, text: lines.join('\n') };
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeout_ms} ms; buffered: ${JSON.stringify(this.buf)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  /** Sends a line (CRLF added) and returns the reply. */
  async cmd(line: string, timeout_ms?: number): Promise<Reply | null> {
    this.send(line + '\r\n');
    return this.reply(timeout_ms);
  }
  /** Bytes received and not yet consumed as replies. */
  pending(): string {
    return this.buf;
  }
  async wait_closed(timeout_ms = 5000): Promise<boolean> {
    const deadline = Date.now() + timeout_ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }
  end(): void {
    this.stream.end();
  }
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
