// virus/klez_filter: qpsmtpd has no plugin test for it; these are the facts of its code (size
// floor, 41-line window, Content-type before the signature) and SMTP sessions.
import { afterEach, describe, expect, it } from 'vitest';
import { DECLINED, DENY, type Plugin, type Transaction } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { fill_transaction, open_session, quit, send_message, view_of } from '../fixtures/plugins-c/helpers.js';

interface Klez extends Plugin {
  hook_data_post(t: Transaction): number | [number, string];
}

const SIG = 'TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const PAD = 'A'.repeat(76);
const HEAD = 'From: a@b.test\nSubject: hi\nContent-Type: multipart/alternative; boundary="b"\n';

/** A body: `before` lines, the part header lines, then the signature, padded to `size` bytes. */
function klez_body(opts: { before?: number; ctype?: string | null; sig?: string; size?: number } = {}): string {
  const lines = ['', ...Array.from({ length: opts.before ?? 3 }, (_, i) => `filler ${i}`), '--b'];
  if (opts.ctype !== null) lines.push(opts.ctype ?? 'Content-Type: audio/x-wav;', ' name="readme.exe"', 'Content-Transfer-Encoding: base64', '');
  lines.push(opts.sig ?? SIG);
  let s = lines.join('\n') + '\n';
  while (s.length < (opts.size ?? 61_000)) s += PAD + '\n';
  return s;
}

const transactions: Transaction[] = [];
afterEach(async () => {
  for (const t of transactions.splice(0)) await t.cleanup();
});

async function check(body: string, files: Record<string, string> = {}) {
  const { runtime } = await make_runtime({ plugins: ['virus/klez_filter'], ...files });
  const { qp, view } = view_of<Klez>(runtime, 'virus::klez_filter');
  transactions.push(qp.transaction);
  await fill_transaction(qp.transaction, HEAD, body);
  return view.hook_data_post(qp.transaction);
}

describe('virus/klez_filter', () => {
  it('audio or application part followed by the PE signature → DENY "Klez Virus Detected"', async () => {
    expect(await check(klez_body())).toEqual([DENY, 'Klez Virus Detected']);
    expect(await check(klez_body({ ctype: 'content-type: APPLICATION/octet-stream' }))).toEqual([DENY, 'Klez Virus Detected']);
  });

  it('also when the body stays in memory (size_threshold above the message size)', async () => {
    expect(await check(klez_body(), { size_threshold: '1000000' })).toEqual([DENY, 'Klez Virus Detected']);
  });

  it('messages under 60000 bytes are not looked at', async () => {
    expect(await check(klez_body({ size: 1000 }))).toBe(DECLINED);
  });

  it('no signature, or the signature without an audio/application part → DECLINED', async () => {
    expect(await check(klez_body({ sig: 'SGVsbG8gd29ybGQ=' }))).toBe(DECLINED);
    expect(await check(klez_body({ ctype: null }))).toBe(DECLINED);
    expect(await check(klez_body({ ctype: 'Content-Type: text/plain' }))).toBe(DECLINED);
  });

  it('only the first 41 body lines count', async () => {
    // body line 0 is the blank separator; the signature is body line before+6
    expect(await check(klez_body({ before: 34 }))).toEqual([DENY, 'Klez Virus Detected']); // line 40
    expect(await check(klez_body({ before: 35 }))).toBe(DECLINED); // line 41
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['virus/klez_filter strict'] })).rejects.toThrow(/plugin virus::klez_filter: unknown argument 'strict'/);
  });
});

describe('virus/klez_filter: SMTP sessions', () => {
  it('a Klez message gets 552 Klez Virus Detected; a big clean one is queued', async () => {
    const { runtime } = await make_runtime({ plugins: ['virus/klez_filter', 'rcpt_ok', 'queue/discard'], me: 'mx.example.test', rcpthosts: ['example.test'] });
    const s = await open_session(runtime);
    const lines = (body: string) => [...HEAD.trimEnd().split('\n'), ...body.replace(/\n$/, '').split('\n')];
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], lines(klez_body()))).toMatchObject({ code: 552, text: 'Klez Virus Detected' });
    expect(await send_message(s.client, '<a@b.test>', ['<x@example.test>'], lines(klez_body({ sig: 'UEsDBBQAAAAIAA' })))).toMatchObject({ code: 250 });
    await quit(s);
  });
});
