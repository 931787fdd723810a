// queue/smtp-forward: hand every accepted message to another SMTP server.
//
//   queue/smtp-forward <host> [<port>] [xclient]
//
// <host>     name or IP address of the downstream server (letters, digits, `.`, `_`, `-`, or an
//            IPv6 address); required
// <port>     default 25
// xclient    send the client's NAME, ADDR, PORT, HELO and PROTO with Postfix's XCLIENT command
//            (as many of them as the server lists in its EHLO reply), then greet again with the
//            client's HELO name
//
// The conversation: greeting, `EHLO <me>` (HELO if EHLO is refused), [XCLIENT + EHLO],
// `MAIL FROM:<sender>`, `RCPT TO:<rcpt>` for each recipient, `DATA`, the message (header and
// body, CRLF line ends, dot-stuffed), `.`, `QUIT`. Each step waits at most `command_timeout`
// seconds (60, Net::SMTP's default) and the whole delivery ends when the hook's time runs out.
//
// Replies to the client:
// - `250 queued as <last word of the server's final reply>` only after the server accepted the
//   end of DATA;
// - a 4xx / 5xx from the server to MAIL, RCPT, DATA or the final dot → `452` / `552` with the
//   server's own text;
// - anything else that goes wrong (connection refused, greeting or EHLO refused, a timeout, the
//   connection lost, XCLIENT unsupported or refused) → `451 Unable to queue message (<why>)`.
import net from 'node:net';
import { hostname } from 'node:os';
import {
  DECLINED,
  DENY,
  DENYSOFT,
  LOGDEBUG,
  LOGERROR,
  LOGINFO,
  OK,
  Plugin,
  PluginArgumentError,
  type Transaction,
} from '../../lib/index.js';
import { DotStuffer } from '../../lib/smtp/dot-stuff.js';

/** A reply bigger than this is a broken server. */
const MAX_REPLY = 64 * 1024;
/** XCLIENT: at most this many characters of attributes per command (qpsmtpd's limit). */
const XCLIENT_MAX = 500;

export interface SmtpReply {
  code: number;
  lines: string[];
}

/** Something went wrong that is not a reply from the server: becomes 451. */
class TransportError extends Error {}

/** A reply we did not want: 4xx/5xx are passed to the client. */
class ReplyError extends Error {
  constructor(
    readonly step: string,
    readonly reply: SmtpReply,
  ) {
    super(`${step}: ${reply.code} ${reply.lines.join(' / ')}`);
  }
}

/** A minimal SMTP client over one socket: one reply at a time, each within a deadline. */
class SmtpClient {
  private buf = '';
  private waiter?: () => void;
  private failure?: Error;

  constructor(
    readonly socket: net.Socket,
    private readonly timeout_ms: number,
    private readonly signal: AbortSignal | undefined,
    private readonly debug: (msg: string) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      if (this.buf.length > MAX_REPLY) this.fail(new TransportError('reply too long'));
      this.wake();
    });
    socket.on('end', () => this.fail(new TransportError('connection closed by the server')));
    socket.on('close', () => this.fail(new TransportError('connection closed')));
    socket.on('error', (e) => this.fail(new TransportError(e.message)));
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }

  /** Waits for `cond` (re-checked on every event) within the step's deadline. */
  private async wait_until<T>(what: string, cond: () => T | undefined): Promise<T> {
    const deadline = Date.now() + this.timeout_ms;
    for (;;) {
      const v = cond();
      if (v !== undefined) return v;
      if (this.signal?.aborted) throw new TransportError('hook timed out');
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new TransportError(`timeout waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.signal?.addEventListener('abort', done, { once: true });
        this.waiter = done;
      });
    }
  }

  /** The next complete (possibly multi-line) reply. */
  read_reply(what: string): Promise<SmtpReply> {
    return this.wait_until(what, () => {
      const lines: string[] = [];
      let pos = 0;
      for (;;) {
        const nl = this.buf.indexOf('\n', pos);
        if (nl < 0) return undefined;
        const line = this.buf.slice(pos, nl).replace(/\r$/, '');
        pos = nl + 1;
        const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
        if (!m) throw new TransportError(`garbled reply: ${JSON.stringify(line.slice(0, 100))}`);
        lines.push(m[3]!);
        if (m[2] !== '-') {
          this.buf = this.buf.slice(pos);
          this.debug(`<< ${m[1]} ${lines.join(' / ')}`);
          return { code: Number(m[1]), lines };
        }
      }
    });
  }

  async write(data: string | Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.socket.write(data)) return;
    let drained = false;
    const on_drain = () => {
      drained = true;
      this.wake();
    };
    this.socket.once('drain', on_drain);
    try {
      await this.wait_until('the server to read the message', () => (drained ? true : undefined));
    } finally {
      this.socket.off('drain', on_drain);
    }
  }

  async command(line: string): Promise<SmtpReply> {
    this.debug(`>> ${line}`);
    await this.write(Buffer.from(line + '\r\n', 'utf8'));
    return this.read_reply(`the reply to ${line.split(' ')[0]}`);
  }
}


/** RFC 3461 xtext, which Postfix's XCLIENT wants for attribute values. */
export function xtext(s: string): string {
  return Buffer.from(s, 'utf8').reduce((acc, b) => acc + (b < 33 || b > 126 || b === 0x2b || b === 0x3d ? '+' + b.toString(16).toUpperCase().padStart(2, '0') : String.fromCharCode(b)), '');
}

export default class extends Plugin {
  _smtp_server = '';
  _smtp_port = 25;
  _flags: Record<string, boolean> = {};
  /** Seconds each step (connect, every reply, every write) may take; Net::SMTP's 60. */
  command_timeout = 60;

  override register(...args: string[]): void {
    const name = this.plugin_name();
    if (!args.length) throw new PluginArgumentError(`plugin ${name}: No SMTP server specified in smtp-forward config`);
    const [host, port, ...flags] = args;
    if (!/^[.\w-]+$/.test(host!) && !net.isIPv6(host!.replace(/^\[(.*)\]$/, '$1'))) {
      throw new PluginArgumentError(`plugin ${name}: Bad data in smtp server: ${host}`);
    }
    this._smtp_server = host!.replace(/^\[(.*)\]$/, '$1');
    if (port !== undefined) {
      if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
        throw new PluginArgumentError(`plugin ${name}: argument '${port}' is not a port number`);
      }
      this._smtp_port = Number(port);
    }
    for (const f of flags) {
      const flag = f.toLowerCase();
      if (flag !== 'xclient') throw new PluginArgumentError(`plugin ${name}: unknown argument '${f}' (known flag: xclient)`);
      this._flags[flag] = true;
    }
  }

  async hook_queue(transaction: Transaction): Promise<number | [number, ...string[]]> {
    const signal = this.signal;
    const target = `${this._smtp_server}:${this._smtp_port}`;
    this.log(LOGINFO, `forwarding to ${target}`);
    let client: SmtpClient | undefined;
    try {
      client = await this.connect(signal);
      const ehlo = await this.hello(client, this.qp.config('me') || hostname(), 'the greeting');
      if (this._flags.xclient) await this.xclient(client, ehlo);

      const sender = transaction.sender();
      const rcpts = transaction.recipients();
      const utf8 = [sender, ...rcpts].some((a) => a && /[^\x00-\x7f]/.test(a.format()));
      const mail_params = utf8 && ehlo.has('SMTPUTF8') ? ' SMTPUTF8' : '';
      this.expect(await client.command(`MAIL FROM:${sender ? sender.format() : '<>'}${mail_params}`), 'MAIL', 2);
      for (const r of rcpts) this.expect(await client.command(`RCPT TO:${r.format()}`), 'RCPT', 2);
      this.expect(await client.command('DATA'), 'DATA', 3);
      const enc = new DotStuffer(true);
      for await (const chunk of transaction.message_stream()) {
        if (signal?.aborted) throw new TransportError('hook timed out');
        await client.write(enc.encode(chunk as Buffer));
      }
      await client.write(enc.finish());
      const final = this.expect(await client.read_reply('the reply to the end of DATA'), 'end of DATA', 2);
      // accepted downstream: from here on nothing may fail the delivery
      const words = final.lines.join(' ').split(/\s+/).filter(Boolean);
      const qid = words[words.length - 1] ?? '';
      await this.quit(client);
      this.log(LOGINFO, 'finished queueing');
      return [OK, `queued as ${qid}`];
    } catch (e) {
      if (client) void this.quit(client, true);
      if (e instanceof ReplyError) {
        this.log(LOGERROR, `${target} refused the message at ${e.message}`);
        const text = e.reply.lines.length && e.reply.lines.some(Boolean) ? e.reply.lines : [`${e.reply.code}`];
        if (e.reply.code >= 500 && e.reply.code < 600) return [DENY, ...text];
        if (e.reply.code >= 400 && e.reply.code < 500) return [DENYSOFT, ...text];
        return [DECLINED, `Unable to queue message (unexpected reply ${e.reply.code} to ${e.step})`];
      }
      const why = e instanceof Error ? e.message : String(e);
      this.log(LOGERROR, `forwarding to ${target} failed: ${why}`);
      return [DECLINED, `Unable to queue message (${why})`];
    }
  }

  /** A 2xx (or 3xx for DATA) reply, else a ReplyError. */
  private expect(r: SmtpReply, step: string, want: number): SmtpReply {
    if (Math.floor(r.code / 100) !== want) throw new ReplyError(step, r);
    return r;
  }

  private connect(signal: AbortSignal | undefined): Promise<SmtpClient> {
    const ms = this.command_timeout * 1000;
    return new Promise<SmtpClient>((resolve, reject) => {
      const socket = net.connect({ host: this._smtp_server, port: this._smtp_port });
      const fail = (e: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', on_abort);
        socket.destroy();
        reject(new TransportError(`connect: ${e.message}`));
      };
      const on_abort = () => fail(new Error('hook timed out'));
      const timer = setTimeout(() => fail(new Error('timeout')), ms);
      signal?.addEventListener('abort', on_abort, { once: true });
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', on_abort);
        socket.off('error', fail);
        const client = new SmtpClient(socket, ms, signal, (m) => this.log(LOGDEBUG, m));
        // a timed-out hook must not leave the connection open
        signal?.addEventListener('abort', () => socket.destroy(), { once: true });
        resolve(client);
      });
    });
  }

  /** Greeting (first time) and EHLO, falling back to HELO; the EHLO keywords → parameters. */
  private async hello(client: SmtpClient, name: string, greeting?: string): Promise<Map<string, string>> {
    if (greeting) {
      const g = await client.read_reply(greeting);
      if (g.code !== 220) throw new TransportError(`greeting: ${g.code} ${g.lines.join(' ')}`);
    }
    const ehlo = await client.command(`EHLO ${name}`);
    const ext = new Map<string, string>();
    if (ehlo.code === 250) {
      for (const l of ehlo.lines.slice(1)) {
        const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(l);
        if (m) ext.set(m[1]!.toUpperCase(), m[2] ?? '');
      }
      return ext;
    }
    const helo = await client.command(`HELO ${name}`);
    if (helo.code !== 250) throw new TransportError(`HELO: ${helo.code} ${helo.lines.join(' ')}`);
    return ext;
  }

  /** Postfix XCLIENT with the attributes the server asks for, then a new EHLO as the client. */
  private async xclient(client: SmtpClient, ehlo: Map<string, string>): Promise<void> {
    const parts = ehlo.get('XCLIENT');
    if (parts === undefined) throw new TransportError('Server does not advertise XCLIENT support');
    const have = new Set(
      parts
        .split(/\s+/)
        .filter((p) => /^\w+$/.test(p))
        .map((p) => p.toUpperCase()),
    );
    const conn = this.connection;
    const items: string[] = [];
    if (have.has('NAME')) {
      let name = conn.remote_host() || '[UNAVAILABLE]';
      if (name === 'Unknown') name = '[UNAVAILABLE]';
      items.push(`NAME=${xtext(name)}`);
    }
    const ip = conn.remote_ip() ?? '';
    if (have.has('ADDR')) items.push(`ADDR=${net.isIPv6(ip) ? 'IPV6:' : ''}${xtext(ip)}`);
    if (have.has('PORT')) items.push(`PORT=${xtext(String(conn.remote_port() ?? ''))}`);
    const hello_name = conn.hello_host() || '[UNAVAILABLE]';
    if (have.has('HELO')) items.push(`HELO=${xtext(hello_name)}`);
    const hello = conn.hello();
    if (have.has('PROTO') && hello) items.push(`PROTO=${hello.toUpperCase() === 'EHLO' ? 'ESMTP' : 'SMTP'}`);
    while (items.length) {
      const batch: string[] = [];
      let size = 0;
      while (items.length && size + items[0]!.length <= XCLIENT_MAX) {
        size += items[0]!.length;
        batch.push(items.shift()!);
      }
      if (!batch.length) break;
      const r = await client.command(`XCLIENT ${batch.join(' ')}`);
      if (Math.floor(r.code / 100) !== 2) throw new TransportError('XCLIENT failed');
    }
    try {
      await this.hello(client, hello_name);
    } catch (e) {
      if (e instanceof TransportError && /^(HELO|EHLO)/.test(e.message)) throw new TransportError('HELLO after XCLIENT failed');
      throw e;
    }
  }

  /** Best-effort QUIT; never fails the delivery. */
  private async quit(client: SmtpClient, abandon = false): Promise<void> {
    try {
      if (!abandon) await client.command('QUIT');
      else client.socket.write('QUIT\r\n');
    } catch (e) {
      this.log(LOGDEBUG, `QUIT: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      client.socket.end();
      const s = client.socket;
      setTimeout(() => s.destroy(), 1000).unref();
    }
  }
}
