// DATA (qpsmtpd 3.7–3.9): the data hooks, reception into the spool with header parsing,
// the core headers, data_post, and the queue phase.
import {
  DECLINED,
  DENY,
  DENYSOFT,
  DENYSOFT_DISCONNECT,
  DENY_DISCONNECT,
  DONE,
  LOGALERT,
  LOGDEBUG,
  LOGERROR,
  OK,
} from '../constants.js';
import type { Address } from '../address.js';
import { MailHeader } from '../header.js';
import type { HookResult } from '../hooks.js';
import { add_authentication_results, add_received_line, clean_authentication_results } from './headers.js';
import { start_message } from './facts.js';
import { deny_table, has_text, message_or } from './reply.js';
import type { SmtpSession } from './session.js';
import { xforward_reset } from './xclient.js';

const NL = 0x0a;
const DATA_DENIED = deny_table([554, 'Message denied'], [451, 'Message denied temporarily']);
const DATA_POST_DENIED = deny_table([552, 'Message denied'], [452, 'Message denied temporarily']);
/** Headers past this size end the header section anyway, so memory stays bounded. */
const MAX_HEADER_BYTES = 1024 * 1024;

/** The DATA command. Resolves true when the 354 was sent (the message phase was entered). */
export async function data_command(s: SmtpSession): Promise<boolean> {
  const r = await s.run_hooks('data');
  if (r.rc === DONE) return false;
  const denied = await s.deny_respond(r, DATA_DENIED);
  if (denied) {
    if (!s.closed) await s.reset_transaction();
    return false;
  }
  const txn = s.transaction;
  if (!txn.sender()) return void s.respond(503, 'MAIL first'), false;
  if (!txn.recipients().length) return void s.respond(503, 'RCPT first'), false;
  if (s.reader.buffered() > 0) {
    // the client sent message content before our 354 (RFC 2920 3.1): never parse it
    await s.sync_error();
    return true;
  }
  start_message(s);
  s.respond(354, 'go ahead');
  // LMTP (RFC 2033 4.2): whatever ends the message is answered once per accepted recipient
  if (s.opts.lmtp) s.lmtp_fanout = txn.recipients();
  try {
    if (await receive(s)) await finish_message(s);
  } finally {
    s.lmtp_fanout = undefined;
    xforward_reset(s);
  }
  return true;
}

/**
 * Reads the message into the transaction. Returns false when the session or the message is
 * over (a reply has been sent or the client is gone).
 */
async function receive(s: SmtpSession): Promise<boolean> {
  const txn = s.transaction;
  const max = Number(s.config('databytes')) || 0;
  let size = 0;
  let in_header = true;
  let at_line_start = true;
  const header_parts: Buffer[] = [];
  let header_bytes = 0;
  /** A data_headers_end plugin failed: the message is read to its end, then refused with 451. */
  let fault: HookResult | undefined;

  const end_headers = async (): Promise<boolean> => {
    in_header = false;
    txn.header(MailHeader.parse(Buffer.concat(header_parts).toString('latin1')));
    header_parts.length = 0;
    const r = await s.run_hooks('data_headers_end');
    if (r.rc === DENY_DISCONNECT || r.rc === DENYSOFT_DISCONNECT) {
      s.respond(r.rc === DENY_DISCONNECT ? 554 : 421, has_text(r.msg) ? r.msg[0] : r.rc === DENY_DISCONNECT ? 'Message denied' : 'Message denied temporarily');
      await s.disconnect();
      return false;
    }
    if (r.fault) fault = r;
    txn.set_body_start();
    return true;
  };

  const write = async (chunk: Buffer): Promise<void> => {
    if (max && size > max) return; // keep reading to the end, store nothing more
    size += chunk.length;
    await txn.body_write(chunk);
  };

  for (;;) {
    s.set_deadline(true);
    const ev = await s.next_or_close('data');
    if (!ev) {
      // connection gone before the terminator: nothing is queued
      s.log(LOGDEBUG, 'Incomplete DATA');
      s.respond(451, 'Incomplete DATA');
      await s.reset_transaction();
      return false;
    }
    if (ev.type === 'bad_line_ending') {
      s.respond(421, 'See http://smtpd.develooper.com/barelf.html');
      await s.disconnect();
      return false;
    }
    if (ev.type === 'end') {
      if (in_header && !(await end_headers())) return false;
      break;
    }
    if (ev.type !== 'data') continue;
    let chunk = ev.chunk;
    if (in_header) {
      // the first empty line ends the headers; it is the first line of the body
      let cut = at_line_start && chunk[0] === NL ? 0 : chunk.indexOf('\n\n');
      if (cut > 0) cut += 1;
      if (cut < 0 && header_bytes + chunk.length > MAX_HEADER_BYTES) cut = chunk.length;
      if (cut >= 0) {
        const head = chunk.subarray(0, cut);
        header_parts.push(head);
        await write(head);
        if (!(await end_headers())) return false;
        chunk = chunk.subarray(cut);
      } else {
        header_parts.push(chunk);
        header_bytes += chunk.length;
      }
    }
    if (chunk.length) {
      at_line_start = chunk[chunk.length - 1] === NL;
      await write(chunk);
    }
  }
  if (fault) {
    s.fault_reply(fault);
    await s.reset_transaction();
    return false;
  }
  if (max && size > max) {
    s.log(LOGALERT, `Message too big: size: ${size} (max size: ${max})`);
    s.respond(552, 'Message too big!');
    await s.reset_transaction();
    return false;
  }
  return true;
}

/** After the terminator: core headers, data_post, then the queue phase. */
async function finish_message(s: SmtpSession): Promise<void> {
  const txn = s.transaction;
  const header = txn.header() ?? txn.header(new MailHeader())!;
  // results are ignored (qpsmtpd), but a failing plugin must not let the message through
  const post_headers = await s.run_hooks('data_post_headers');
  if (post_headers.fault) return fault_and_reset(s, post_headers);
  clean_authentication_results(s, header);
  const received = await add_received_line(s, header);
  if (received.fault) return fault_and_reset(s, received);
  add_authentication_results(s, header);
  const r = await s.run_hooks('data_post');
  if (r.rc === DONE) return;
  const denied = await s.deny_respond(r, DATA_POST_DENIED);
  if (denied) {
    if (!s.closed) await s.reset_transaction();
    return;
  }
  await queue(s);
}

async function fault_and_reset(s: SmtpSession, r: HookResult): Promise<void> {
  s.fault_reply(r);
  await s.reset_transaction();
}

async function queue(s: SmtpSession): Promise<void> {
  const pre = await s.run_hooks('queue_pre');
  if (pre.rc === DONE) return;
  if (pre.fault || (pre.rc !== OK && pre.rc !== 0 && pre.rc !== DECLINED)) {
    // one command, one reply (qpsmtpd sent none here and then a bogus 451 fault)
    if (!pre.fault) s.log(LOGERROR, 'pre plugin returned illegal value');
    s.fault_reply(pre);
    await s.reset_transaction();
    return;
  }
  const rcpts = s.transaction.recipients();
  const r = await s.run_hooks('queue');
  await s.reset_transaction();
  if (r.rc === DONE) return;
  if (s.lmtp_fanout && !r.fault && rcpts.some((a) => a.notes('lmtp_result') !== undefined)) {
    // LMTP, and the queue plugin decided per recipient (docs/listeners.md)
    s.lmtp_fanout = undefined;
    for (const rcpt of rcpts) lmtp_reply(s, rcpt, r);
  } else if (r.fault) s.fault_reply(r);
  else if (r.rc === OK) s.respond(250, message_or(r.msg, 'Queued'));
  else if (r.rc === DENY) s.respond(552, message_or(r.msg, 'Message denied'));
  else if (r.rc === DENYSOFT) s.respond(452, message_or(r.msg, 'Message denied temporarily'));
  else s.respond(451, message_or(r.msg, 'Queuing declined or disabled; try again later'));
  if (r.rc === OK && !r.fault) s.junk_commands = 0;
  const post = await s.run_hooks('queue_post');
  if (post.rc !== OK && post.rc !== 0 && post.msg.length) s.log(LOGERROR, ...post.msg);
}

/**
 * One LMTP reply for `rcpt`: its `lmtp_result` note (`rc` or `[rc, message]`, set by the queue
 * plugin), else the queue hook's result, with the queue's reply codes.
 */
function lmtp_reply(s: SmtpSession, rcpt: Address, queued: HookResult): void {
  const note = rcpt.notes('lmtp_result') as number | readonly unknown[] | undefined;
  let rc = queued.rc;
  let msg = queued.msg;
  if (typeof note === 'number') [rc, msg] = [note, []];
  else if (Array.isArray(note)) [rc, msg] = [Number(note[0]), note.slice(1).filter((m) => m !== undefined && m !== null).flatMap((m) => String(m).split('\n'))];
  const [code, def] =
    rc === OK
      ? [250, 'Queued']
      : rc === DENY
        ? [552, 'Message denied']
        : rc === DENYSOFT
          ? [452, 'Message denied temporarily']
          : [451, 'Queuing declined or disabled; try again later'];
  const lines = message_or(msg, def);
  s.respond(code, `${rcpt.format()} ${lines[0]}`, ...lines.slice(1));
}
