// Running a scenario against one server and turning it into a comparable transcript.
import { createHmac } from 'node:crypto';
import os from 'node:os';
import { WireClient, show, type Outcome } from './wire.js';

/**
 * One client action:
 * - a string: a command line, sent with CRLF; one reply is read;
 * - `{ raw }`: exact bytes; `replies` replies are read (default 1, 0 for none), or with `settle`
 *   every reply that comes before the server has been silent for `settle` ms;
 * - `{ line, quiet: true }`: a line after which a server may stay silent (read for `ms`);
 * - `{ respond }`: a line computed from the previous reply (a CRAM-MD5 answer, say);
 * - `{ idle }`: send nothing and wait up to `idle` ms for a reply (timeouts).
 */
export type Step =
  | string
  | { raw: string; label: string; replies?: number; settle?: number }
  | { line: string; quiet: true; ms?: number; label?: string }
  | { respond: (previous: Outcome) => string; label: string }
  | { idle: number; label: string };

export interface Scenario {
  name: string;
  /** What the scenario covers (one line, for the docs and failure messages). */
  about: string;
  steps: Step[];
  /** Compare the messages delivered to the maildir during the scenario too. */
  stored?: boolean;
  /** Which server pair runs it: the main config (default) or the one with `timeout` 2. */
  server?: 'main' | 'timeout';
}

export interface Exchange {
  /** The client's action as shown in reports (`MAIL FROM:<a@b.test>`, `(greeting)`, …). */
  step: string;
  /** The server's answer, normalised (see `normalise`). */
  reply: string;
}

/** How a step is named in transcripts and in the allow-list. */
export function label(step: Step): string {
  if (typeof step === 'string') return step === '' ? '(empty line)' : printable(step);
  if ('raw' in step || 'respond' in step || 'idle' in step) return step.label;
  return step.label ?? (step.line === '' ? '(empty line)' : printable(step.line));
}

/** Control characters and 8-bit bytes shown as `\t`, `\n`, `\xNN` so a label is one readable ASCII line. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\xff]/g, (c) => (c === '\t' ? '\\t' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/**
 * Makes the two servers' output comparable: product name and version (`qpsmtpd-ts 0.1.0`,
 * `qpsmtpd 0.94`, `qpsmtpd-ts/0.1.0` → `qpsmtpd <version>` / `qpsmtpd/<version>`), RFC 5322
 * dates, CRAM-MD5 challenges (random), Received ids (random: `id <uuid>.<n>` → `id <id>`) and
 * this machine's host name.
 */
export function normalise(text: string): string {
  let t = text
    .replace(/\bqpsmtpd(?:-ts)?([ /])\d+\.\d+[0-9A-Za-z.+/-]*/g, 'qpsmtpd$1<version>')
    .replace(/\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), {1,2}\d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\b/g, '<date>')
    .replace(/ id [0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.\d+;/g, ' id <id>;')
    .replace(/^334 ([A-Za-z0-9+/]+={0,2})$/gm, (all, b64: string) =>
      /^<[0-9a-f]+\.[0-9a-f]+@[^>]+>$/.test(Buffer.from(b64, 'base64').toString('latin1')) ? '334 <cram-md5 challenge>' : all,
    );
  const host = os.hostname();
  if (host && host.length > 3) t = t.split(host).join('<hostname>');
  return t;
}

/** The CRAM-MD5 answer to a `334 <challenge>` reply (RFC 2195). */
export function cram_md5_answer(previous: Outcome, user: string, password: string): string {
  if (typeof previous === 'string') return '*';
  const challenge = Buffer.from(previous.lines[0]!.slice(4), 'base64').toString('latin1');
  const digest = createHmac('md5', password).update(challenge).digest('hex');
  return Buffer.from(`${user} ${digest}`).toString('base64');
}

/** How long to wait for a reply that must come, and for one that may not. */
const REPLY_MS = 8000;
const QUIET_MS = 2000;

/**
 * Runs `scenario` on a new connection to `port`. The first exchange is the greeting, the last
 * records whether the server closed the connection.
 */
export async function run_scenario(port: number, scenario: Scenario): Promise<Exchange[]> {
  const c = await WireClient.connect(port);
  const out: Exchange[] = [];
  let last: Outcome = await c.reply(REPLY_MS);
  const record = (step: string, o: Outcome) => {
    last = o;
    out.push({ step, reply: normalise(show(o)) });
  };
  record('(greeting)', last);
  try {
    for (const step of scenario.steps) {
      const name = label(step);
      if (c.closed && c.pending() === '') {
        record(name, 'closed');
        continue;
      }
      if (typeof step === 'string') {
        record(name, await c.cmd(step, REPLY_MS));
      } else if ('raw' in step) {
        c.send(step.raw);
        if (step.settle) {
          const got: Outcome[] = [];
          for (;;) {
            const o = await c.reply(step.settle);
            if (o === 'silent' || (o === 'closed' && got.length)) break;
            got.push(o);
            if (o === 'closed') break;
          }
          last = got[got.length - 1] ?? 'silent';
          out.push({ step: name, reply: got.length ? got.map((o) => normalise(show(o))).join('\n') : '(no reply)' });
          continue;
        }
        const n = step.replies ?? 1;
        if (n === 0) out.push({ step: name, reply: '(no reply expected)' });
        for (let i = 0; i < n; i++) record(n > 1 ? `${name} [reply ${i + 1}]` : name, await c.reply(REPLY_MS));
      } else if ('quiet' in step) {
        record(name, await c.cmd(step.line, step.ms ?? QUIET_MS));
      } else if ('respond' in step) {
        record(name, await c.cmd(step.respond(last), REPLY_MS));
      } else {
        record(name, await c.reply(step.idle));
      }
    }
    const closed = await c.wait_closed(3000);
    const rest = c.pending();
    out.push({ step: '(end)', reply: (rest ? `unread: ${JSON.stringify(rest)}; ` : '') + (closed ? '(connection closed)' : '(connection open)') });
  } finally {
    c.destroy();
  }
  return out;
}
