// queue/qmail-queue: hand every accepted message to qmail-queue (or a program speaking its
// protocol: simscan, qmail-scanner, spamdyke's wrappers…).
//
//   queue/qmail-queue [<path>]
//
// <path>   the program; default `$QMAIL/bin/qmail-queue` (`/var/qmail/bin/qmail-queue`). The
//          environment variable QMAILQUEUE, when set, wins over both. It must be an absolute
//          path of letters, digits and `/-_.` (checked at start-up).
//
// The protocol (qmail-queue(8)): the program reads the message (header + body, LF line ends)
// on file descriptor 0, then the envelope on descriptor 1: `F<sender>\0`, `T<recipient>\0` for
// each recipient, and a final `\0`. It exits 0 once the message is safely in the queue.
//
// Exit 0 → `250 Queued! <unix time> qp <pid of the program> <Message-Id>`. Any other exit
// status, a signal, or the program not reading everything → `451 Unable to queue message
// (<status>)`; a program that cannot be run → `451 Unable to queue message (6)` (qpsmtpd's
// code for a failed exec). A program still running when the hook's time is up is killed.
import { spawn } from 'node:child_process';
import { accessSync, constants as FS } from 'node:fs';
import type { Writable } from 'node:stream';
import { DECLINED, LOGERROR, LOGINFO, LOGNOTICE, LOGWARN, OK, Plugin, PluginArgumentError, type Transaction } from '../../lib/index.js';

const SAFE_PATH = /^\/[/\-_.a-zA-Z0-9]*$/;

function end_stream(stream: Writable, data: Buffer | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    stream.once('error', reject);
    stream.end(data, () => resolve());
  });
}

async function write_stream(stream: Writable, data: Buffer): Promise<void> {
  if (stream.write(data)) return;
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      stream.off('drain', done);
      stream.off('error', done);
      stream.off('close', closed);
      if (err) reject(err);
      else resolve();
    };
    const closed = () => done(new Error('closed by the program'));
    stream.once('drain', done);
    stream.once('error', done);
    stream.once('close', closed);
  });
}

export default class extends Plugin {
  _queue_exec = '';

  override register(...args: string[]): void {
    const name = this.plugin_name();
    if (args.length > 1) throw new PluginArgumentError(`plugin ${name}: takes one argument, the path of qmail-queue; got '${args.join(' ')}'`);
    const env = this.qp.runtime.env;
    let exec = args[0] || `${env.QMAIL || '/var/qmail'}/bin/qmail-queue`;
    if (env.QMAILQUEUE) exec = env.QMAILQUEUE;
    if (!SAFE_PATH.test(exec)) {
      throw new PluginArgumentError(`plugin ${name}: Unexpected characters in the qmail-queue path '${exec}' (an absolute path of letters, digits and /-_. is required)`);
    }
    this._queue_exec = exec;
    try {
      accessSync(exec, FS.X_OK);
    } catch {
      this.log(LOGWARN, `${exec} is not an executable file (yet); every message will get a 451 until it is`);
    }
  }

  async hook_queue(transaction: Transaction): Promise<number | [number, string]> {
    const signal = this.signal;
    const exec = this._queue_exec;
    // stdio 1 is a socket pair, not a pipe: the parent end is writable, as qmail-queue needs
    const child = spawn(exec, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, sig: null, error }));
      child.once('exit', (code, sig) => resolve({ code, sig }));
    });
    const on_abort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', on_abort, { once: true });
    const message_out = child.stdin!;
    const envelope_out = child.stdout as unknown as Writable;
    let write_error: Error | undefined;
    let written = false;
    // EPIPE and friends when the program exits early: its exit status tells what happened
    message_out.on('error', (e) => (write_error ??= e));
    envelope_out.on('error', (e) => (write_error ??= e));
    const writes = (async () => {
      if (typeof envelope_out.write !== 'function' || !envelope_out.writable) {
        throw new Error('cannot write to the envelope descriptor (this Node.js does not give stdio socket pairs)');
      }
      // the message first, all of it: a truncated message must never meet a complete envelope
      for await (const chunk of transaction.message_stream()) {
        if (signal?.aborted) throw new Error('hook timed out');
        await write_stream(message_out, chunk as Buffer);
      }
      await end_stream(message_out, undefined);
      const sender = transaction.sender()?.address() || '';
      const rcpts = transaction.recipients().map((r) => `T${r.address()}\0`);
      await end_stream(envelope_out, Buffer.from(`F${sender}\0${rcpts.join('')}\0`, 'utf8'));
      written = true;
    })().catch((e: Error) => {
      write_error ??= e;
      child.kill('SIGKILL'); // no envelope: qmail-queue must not queue anything
    });
    const status = await exited;
    // the program is gone; writes still pending now will never complete
    await Promise.race([writes, new Promise((r) => setTimeout(r, 200))]);
    const { code, sig, error } = status;
    signal?.removeEventListener('abort', on_abort);
    envelope_out.destroy();
    if (error) {
      this.log(LOGERROR, `could not run ${exec}: ${error.message}`);
      return [DECLINED, 'Unable to queue message (6)'];
    }
    if (sig) {
      this.log(LOGERROR, `${exec} was killed by ${sig}`);
      return [DECLINED, `Unable to queue message (${sig})`];
    }
    if (code !== 0) {
      this.log(LOGERROR, `${exec} exited with status ${code}`);
      return [DECLINED, `Unable to queue message (${code})`];
    }
    if (write_error || !written) {
      this.log(LOGERROR, `${exec} exited 0 without reading the whole message: ${write_error?.message ?? 'still writing'}`);
      return [DECLINED, 'Unable to queue message (incomplete)'];
    }
    let msg_id = (transaction.header()?.get('Message-Id') ?? '').replace(/[\r\n][\s\S]*$/, '');
    if (!/^<.*>$/.test(msg_id)) msg_id = `<${msg_id}>`;
    this.log(LOGNOTICE, `queued by ${exec} (pid ${child.pid})`);
    this.log(LOGINFO, 'pass');
    return [OK, `Queued! ${Math.floor(Date.now() / 1000)} qp ${child.pid} ${msg_id}`];
  }
}
