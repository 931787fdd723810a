import { describe, expect, it } from 'vitest';
import { LineReader, type ReaderEvent } from '../../lib/smtp/line-reader.js';

const b = (s: string) => Buffer.from(s, 'latin1');
const str = (buf: Buffer) => buf.toString('latin1');

function drain(r: LineReader): ReaderEvent[] {
  const out: ReaderEvent[] = [];
  for (let ev = r.next(); ev; ev = r.next()) out.push(ev);
  return out;
}

const lines = (evs: ReaderEvent[]) => evs.map((e) => (e.type === 'line' ? str(e.line) : `<${e.type}>`));

// Feeds chunks through a data-only reader; returns decoded content and the non-data events.
function decode(chunks: (string | Buffer)[], r = new LineReader()) {
  r.mode = 'data';
  const content: Buffer[] = [];
  const events: ReaderEvent[] = [];
  for (const c of chunks) {
    r.push(typeof c === 'string' ? b(c) : c);
    for (const ev of drain(r)) {
      if (ev.type === 'data') content.push(ev.chunk);
      else events.push(ev);
    }
  }
  return { content: str(Buffer.concat(content)), events, reader: r };
}

// A minimal session: switches to data after a DATA line, records commands and messages.
function session(pushes: string[]) {
  const r = new LineReader();
  const res = { lines: [] as string[], messages: [] as string[], tooLong: 0, bad: false, afterBad: 0 };
  let cur: Buffer[] = [];
  for (const p of pushes) {
    r.push(b(p));
    // pull one event at a time: the mode set for one event governs how the next is parsed
    for (let ev = r.next(); ev; ev = r.next()) {
      if (res.bad) res.afterBad++;
      if (ev.type === 'line') {
        const l = str(ev.line);
        res.lines.push(l);
        if (l.toUpperCase() === 'DATA') {
          r.mode = 'data';
          cur = [];
        }
      } else if (ev.type === 'data') cur.push(ev.chunk);
      else if (ev.type === 'end') res.messages.push(str(Buffer.concat(cur)));
      else if (ev.type === 'too_long') res.tooLong++;
      else res.bad = true;
    }
  }
  return res;
}

describe('command mode', () => {
  it('reads CRLF-terminated lines, pipelined in one push', () => {
    const r = new LineReader();
    r.push(b('EHLO a.test\r\nMAIL FROM:<x@y>\r\nRCPT TO:<r@z>\r\n\r\nNOOP'));
    expect(lines(drain(r))).toEqual(['EHLO a.test', 'MAIL FROM:<x@y>', 'RCPT TO:<r@z>', '']);
    expect(r.buffered()).toBe(4);
    r.push(b('\r\n'));
    expect(lines(drain(r))).toEqual(['NOOP']);
    expect(r.buffered()).toBe(0);
  });

  it('handles a line split across pushes at every position', () => {
    const input = 'EHLO a.test\r\nMAIL FROM:<x@y>\r\n';
    for (let i = 0; i <= input.length; i++) {
      const r = new LineReader();
      const got: ReaderEvent[] = [];
      r.push(b(input.slice(0, i)));
      got.push(...drain(r));
      r.push(b(input.slice(i)));
      got.push(...drain(r));
      expect(lines(got)).toEqual(['EHLO a.test', 'MAIL FROM:<x@y>']);
    }
    const r = new LineReader();
    const got: ReaderEvent[] = [];
    for (const ch of input) {
      r.push(b(ch));
      got.push(...drain(r));
    }
    expect(lines(got)).toEqual(['EHLO a.test', 'MAIL FROM:<x@y>']);
  });

  it('ends lines only at CRLF: bare LF and bare CR stay inside the line', () => {
    const r = new LineReader();
    r.push(b('NOOP\nNOOP\r\nEHLO evil.test\rX-Injected: yes\r\nA\r\rB\r\n'));
    expect(lines(drain(r))).toEqual(['NOOP\nNOOP', 'EHLO evil.test\rX-Injected: yes', 'A\r\rB']);
  });

  it('keeps NUL bytes in a command line', () => {
    const r = new LineReader();
    r.push(b('NOOP\x00\r\n'));
    expect(lines(drain(r))).toEqual(['NOOP\x00']);
  });

  it('accepts a 512-octet command and rejects 513, then reads the next line', () => {
    const r = new LineReader();
    r.push(b('NOOP ' + 'x'.repeat(505) + '\r\n'));
    const [ev] = drain(r);
    expect(ev?.type === 'line' && ev.line.length).toBe(510);
    r.push(b('NOOP ' + 'x'.repeat(506) + '\r\nNOOP\r\n'));
    expect(drain(r)).toEqual([{ type: 'too_long', mode: 'command' }, { type: 'line', line: b('NOOP') }]);
  });

  it('honours a custom command cap', () => {
    const r = new LineReader({ commandMax: 2048 });
    r.push(b('x'.repeat(2046) + '\r\n' + 'x'.repeat(2047) + '\r\n'));
    expect(lines(drain(r))).toEqual(['x'.repeat(2046), '<too_long>']);
  });

  it('an over-long line ending in CR at a push boundary is one too_long', () => {
    const r = new LineReader();
    r.push(b('x'.repeat(600) + '\r'));
    expect(drain(r)).toEqual([]);
    expect(r.buffered()).toBe(1);
    r.push(b('\nNOOP\r\n'));
    expect(lines(drain(r))).toEqual(['<too_long>', 'NOOP']);
  });

  it('LEN-03: the tail of an over-long line is never returned as a line', () => {
    for (const B of [512, 1024, 2048, 4096, 8192, 65536]) {
      const input = 'HELO ' + 'a'.repeat(B - 5) + 'QUIT\r\n';
      // one push, and pushes that end exactly at B octets or at the cap
      for (const cut of [input.length, B, 512, 511, 510]) {
        const r = new LineReader();
        r.push(b(input.slice(0, cut)));
        const evs = drain(r);
        r.push(b(input.slice(cut) + 'NOOP\r\n'));
        evs.push(...drain(r));
        expect(lines(evs)).toEqual(['<too_long>', 'NOOP']);
      }
    }
  });

  it('LEN-04: a 4 MiB line without CRLF keeps buffering bounded', () => {
    const r = new LineReader();
    const chunk = Buffer.alloc(65536, 'A');
    const crChunk = Buffer.concat([Buffer.alloc(65535, 'A'), b('\r')]);
    for (let i = 0; i < 64; i++) {
      r.push(i % 7 === 3 ? crChunk : chunk);
      expect(drain(r)).toEqual([]);
      expect(r.buffered()).toBeLessThanOrEqual(512);
    }
    r.push(b('\r\nNOOP\r\n'));
    expect(lines(drain(r))).toEqual(['<too_long>', 'NOOP']);
    expect(r.buffered()).toBe(0);
  });

  it('discard() after STARTTLS drops the pipelined bytes', () => {
    const r = new LineReader();
    r.push(b('STARTTLS\r\nRSET\r\n'));
    expect(lines([r.next()!])).toEqual(['STARTTLS']);
    expect(r.discard()).toBe(6);
    expect(r.buffered()).toBe(0);
    expect(r.next()).toBeUndefined();
    r.push(b('EHLO c.test\r\n'));
    expect(lines(drain(r))).toEqual(['EHLO c.test']);
  });
});

describe('auth mode', () => {
  it('LEN-07: a 12288-octet response is accepted, 20000 rejected', () => {
    const r = new LineReader();
    r.push(b('AUTH PLAIN\r\n'));
    expect(lines(drain(r))).toEqual(['AUTH PLAIN']);
    r.mode = 'auth';
    const resp = 'A'.repeat(12284) + 'AA==';
    r.push(b(resp + '\r\n'));
    expect(lines(drain(r))).toEqual([resp]);
    r.push(b('A'.repeat(20000) + '\r\n*\r\n'));
    expect(drain(r)).toEqual([{ type: 'too_long', mode: 'auth' }, { type: 'line', line: b('*') }]);
    r.push(b('A'.repeat(12289) + '\r\n'));
    expect(lines(drain(r))).toEqual(['<too_long>']);
  });

  it('a command-length cap still applies in command mode', () => {
    const r = new LineReader();
    r.push(b('A'.repeat(12288) + '\r\n'));
    expect(drain(r)).toEqual([{ type: 'too_long', mode: 'command' }]);
  });
});

describe('mode switching', () => {
  it('leaves bytes after DATA unparsed until the session sets the mode', () => {
    const input = 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n';
    // session accepts DATA
    let r = new LineReader();
    r.push(b(input));
    expect(lines([r.next()!, r.next()!, r.next()!])).toEqual(['MAIL FROM:<a@b>', 'RCPT TO:<c@d>', 'DATA']);
    r.mode = 'data';
    expect([r.next(), r.next()]).toEqual([{ type: 'data', chunk: b('Subject: x\n\nbody\n') }, { type: 'end' }]);
    expect(r.mode).toBe('command');
    expect(r.dataBytes).toBe(17);
    expect(lines(drain(r))).toEqual(['QUIT']);
    // session rejects DATA: the same bytes are commands
    r = new LineReader();
    r.push(b(input));
    expect(lines(drain(r))).toEqual(['MAIL FROM:<a@b>', 'RCPT TO:<c@d>', 'DATA', 'Subject: x', '', 'body', '.', 'QUIT']);
  });

  it('SMG-17: a second pipelined transaction after the terminator is read as commands', () => {
    const res = session([
      'MAIL FROM:<s@x>\r\nRCPT TO:<r@y>\r\nDATA\r\n',
      'a\r\n.\r\nMAIL FROM:<s2@x>\r\nRCPT TO:<r@y>\r\nDATA\r\nc\r\n.\r\nQUIT\r\n',
    ]);
    expect(res.messages).toEqual(['a\n', 'c\n']);
    expect(res.lines).toEqual(['MAIL FROM:<s@x>', 'RCPT TO:<r@y>', 'DATA', 'MAIL FROM:<s2@x>', 'RCPT TO:<r@y>', 'DATA', 'QUIT']);
  });
});

describe('data mode', () => {
  it('converts CRLF to LF and emits end at the terminator', () => {
    const { content, events } = decode(['Subject: t\r\n\r\nhello\r\nworld\r\n.\r\n']);
    expect(content).toBe('Subject: t\n\nhello\nworld\n');
    expect(events).toEqual([{ type: 'end' }]);
  });

  it('an empty message is just the terminator', () => {
    const { content, events, reader } = decode(['.\r\n']);
    expect(content).toBe('');
    expect(events).toEqual([{ type: 'end' }]);
    expect(reader.dataBytes).toBe(0);
  });

  it('SMG-14: dot-unstuffing', () => {
    const { content, events, reader } = decode(['before\r\n..\r\n...x\r\nafter\r\n.\r\n']);
    expect(content).toBe('before\n.\n..x\nafter\n');
    expect(events).toEqual([{ type: 'end' }]);
    expect(reader.dataBytes).toBe(content.length);
  });

  it('a dot that starts a line always goes, a dot elsewhere stays', () => {
    expect(decode(['.single\r\na.b\r\n. x.\r\n.\r\n']).content).toBe('single\na.b\n x.\n');
  });

  it('keeps NUL bytes and 8-bit bytes intact', () => {
    const { content } = decode([b('a\x00b\r\n\x00\r\n\xff\xfe\x80\r\n.\r\n')]);
    expect(content).toBe('a\x00b\n\x00\n\xff\xfe\x80\n');
  });

  it('rejects a bare LF or bare CR with bad_line_ending and stops', () => {
    for (const [input, offset] of [
      ['abc\ndef\r\n.\r\n', 3],
      ['abc\rdef\r\n.\r\n', 3],
      ['ok\r\nabc\r\r\n.\r\n', 7],
      ['ok\r\n.\n', 5],
      ['ok\r\n.\r.\r\n', 5],
      ['\n', 0],
    ] as const) {
      const { events, reader } = decode([input]);
      expect(events).toEqual([{ type: 'bad_line_ending', offset }]);
      reader.push(b('\r\n.\r\nQUIT\r\n'));
      expect(reader.next()).toBeUndefined();
      expect(reader.buffered()).toBe(0);
    }
  });

  it('reports bad_line_ending offsets counted across pushes', () => {
    const { events } = decode(['0123\r\n', '67', '\r', 'x']);
    expect(events).toEqual([{ type: 'bad_line_ending', offset: 8 }]);
  });

  it('SMG-19: stray CR/LF inside body lines is rejected', () => {
    expect(decode(['a\rb\r\nc\nd\r\n.\r\n']).events).toEqual([{ type: 'bad_line_ending', offset: 1 }]);
  });

  it('SMG-15: a terminator split at every position ends only at the last byte', () => {
    const term = '\r\n.\r\n';
    for (let i = 1; i < term.length; i++) {
      const r = new LineReader();
      r.mode = 'data';
      r.push(b('x'));
      r.push(b(term.slice(0, i)));
      const first = drain(r);
      expect(first.some((e) => e.type === 'end')).toBe(false);
      r.push(b(term.slice(i)));
      const all = [...first, ...drain(r)];
      expect(all.filter((e) => e.type !== 'data')).toEqual([{ type: 'end' }]);
      expect(str(Buffer.concat(all.flatMap((e) => (e.type === 'data' ? [e.chunk] : []))))).toBe('x\n');
    }
    // and byte by byte, with a stuffed dot and a long line on the way
    const input = 'x\r\n..y\r\n' + 'z'.repeat(3000) + '\r\n.\r\n';
    const chunks = [...input];
    const { content, events } = decode(chunks);
    expect(content).toBe('x\n.y\n' + 'z'.repeat(3000) + '\n');
    expect(events).toEqual([{ type: 'end' }]);
  });

  it('any split of a message gives the same content', () => {
    const input = 'a\r\n..b\r\n.\x00\r\n\r\nc.\r\n.d\r\n.\r\n';
    const whole = decode([input]).content;
    expect(whole).toBe('a\n.b\n\x00\n\nc.\nd\n');
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) {
        const { content, events } = decode([input.slice(0, i), input.slice(i, j), input.slice(j)]);
        expect(content).toBe(whole);
        expect(events).toEqual([{ type: 'end' }]);
      }
    }
  });

  it('matches a byte-by-byte reference decoder on random input and random splits', () => {
    // reference: RFC 5321 framing with R1, one byte at a time
    const ref = (s: string) => {
      let out = '';
      let lineStart = true;
      for (let i = 0; i < s.length; ) {
        if (lineStart && s[i] === '.') {
          if (s.startsWith('.\r\n', i)) return { out, end: true, bad: -1 };
          if (i + 1 >= s.length || (s[i + 1] === '\r' && i + 2 >= s.length)) break;
          i++;
        }
        lineStart = false;
        const c = s[i]!;
        if (c === '\r') {
          if (i + 1 >= s.length) break;
          if (s[i + 1] !== '\n') return { out, end: false, bad: i };
          out += '\n';
          i += 2;
          lineStart = true;
        } else if (c === '\n') {
          return { out, end: false, bad: i };
        } else {
          out += c;
          i++;
        }
      }
      return { out, end: false, bad: -1 };
    };
    let seed = 12345; // mulberry32
    const rnd = (n: number) => {
      let t = (seed = (seed + 0x6d2b79f5) | 0);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (((t ^ (t >>> 14)) >>> 0) % n);
    };
    const parts = ['a', 'bc', '.', '..', '\r\n', '\r\n', '\r\n.', '\r\n.\r\n', '\x00', 'xyz', '\r', '\n'];
    for (let iter = 0; iter < 5000; iter++) {
      let s = '';
      const len = 1 + rnd(12);
      const clean = rnd(2) === 0; // half the inputs have no bare CR/LF
      for (let k = 0; k < len; k++) s += parts[rnd(clean ? parts.length - 2 : parts.length)];
      const cuts = [...new Set(Array.from({ length: rnd(6) }, () => rnd(s.length + 1)))].sort((x, y) => x - y);
      const chunks: string[] = [];
      let last = 0;
      for (const c of cuts) chunks.push(s.slice(last, c)), (last = c);
      chunks.push(s.slice(last));

      const r = new LineReader();
      r.mode = 'data';
      let out = '';
      let end = false;
      let bad = -1;
      for (const c of chunks) {
        r.push(b(c));
        for (let ev = end ? undefined : r.next(); ev; ev = end ? undefined : r.next()) {
          if (ev.type === 'data') out += str(ev.chunk);
          else if (ev.type === 'end') end = true;
          else if (ev.type === 'bad_line_ending') bad = ev.offset;
          else throw new Error(ev.type);
        }
      }
      const want = ref(s);
      const ctx = JSON.stringify(chunks);
      expect(end, ctx).toBe(want.end);
      expect(bad, ctx).toBe(want.bad);
      if (bad >= 0) expect(want.out.startsWith(out), ctx).toBe(true);
      else expect(out, ctx).toBe(want.out);
      if (bad < 0) expect(r.dataBytes, ctx).toBe(out.length);
    }
  });

  const HDR = (t: string) =>
    `From: <s@example.test>\r\nTo: <r@local.test>\r\nSubject: ${t}\r\n` +
    `Message-ID: <${t}@harness.test>\r\nX-Harness-Token: ${t}\r\n\r\n`;
  const SMUG = (t: string) =>
    'MAIL FROM:<smuggled@example.test>\r\nRCPT TO:<r@local.test>\r\nDATA\r\n' + HDR(t) + 'smuggled body\r\n.\r\n';
  const TXN = 'MAIL FROM:<s@example.test>\r\nRCPT TO:<r@local.test>\r\nDATA\r\n';

  const variants: [string, string, boolean][] = [
    ['SMG-01', '\n.\n', true],
    ['SMG-02', '\n.\r\n', true],
    ['SMG-03', '\r.\r', true],
    ['SMG-04', '\r.\n', true],
    ['SMG-05', '\n.\r', true],
    ['SMG-06', '\r.\r\n', true],
    ['SMG-07', '\r\n.\n', true],
    ['SMG-08', '\r\n.\r', true],
    ['SMG-09', '\r\n\x00.\r\n', false],
    ['SMG-10', '\r\n.\x00\r\n', false],
    ['SMG-11', '\r\n.\r\r\n', true],
    ['SMG-12', '\r\r\n.\r\r\n', true],
    ['SMG-13', '\n\n.\r\n', true],
  ];

  for (const [id, v, rejected] of variants) {
    it(`${id}: ${JSON.stringify(v)} never ends data early`, () => {
      const attack = HDR('A') + 'line1' + v + SMUG('B');
      const oneWrite = session([TXN + attack, '\r\n.\r\n', 'QUIT\r\n']);
      const byteWise = session([TXN, ...attack, ...'\r\n.\r\n', 'QUIT\r\n']);
      for (const res of [oneWrite, byteWise]) {
        expect(res.lines.slice(0, 3)).toEqual(TXN.split('\r\n').slice(0, 3));
        expect(res.lines.filter((l) => /smuggled|^DATA$/i.test(l))).toEqual(['DATA']);
        if (rejected) {
          expect(res.bad).toBe(true);
          expect(res.afterBad).toBe(0);
          expect(res.messages).toEqual([]);
          expect(res.lines).toHaveLength(3);
        } else {
          // lenient outcome: the variant and SMUG(B) are A's content, ended by SMUG's own terminator
          expect(res.bad).toBe(false);
          expect(res.messages).toEqual([
            (HDR('A') + 'line1' + v + SMUG('B').slice(0, -3)).replace(/\r\n/g, '\n').replace(/\n\./g, '\n'),
          ]);
          expect(res.messages[0]).toContain('X-Harness-Token: B\n');
        }
      }
    });
  }

  it('SMG-16: a long line followed by ".\\r\\n" is content, not a terminator', () => {
    for (const k of [510, 511, 512, 997, 998, 999, 1000, 2046, 2047, 2048, 4095, 4096, 8191, 65533, 65535]) {
      const attack = HDR('A') + 'X'.repeat(k) + '.\r\n' + SMUG('B');
      for (const pushes of [
        [TXN + attack, '\r\n.\r\n', 'QUIT\r\n'],
        [TXN, attack.slice(0, 1000), attack.slice(1000, 1001), attack.slice(1001), '\r\n.\r\n'],
      ]) {
        const res = session(pushes);
        expect(res.bad).toBe(false);
        expect(res.tooLong).toBe(0);
        expect(res.messages).toHaveLength(1);
        expect(res.messages[0]).toContain('\n' + 'X'.repeat(k) + '.\n');
        expect(res.messages[0]).not.toMatch(/\n\.\n/);
        expect(res.lines.filter((l) => /smuggled/i.test(l))).toEqual([]);
      }
    }
  });

  it('LEN-06: a 1 MiB line passes through with bounded buffering', () => {
    const r = new LineReader();
    r.mode = 'data';
    let got = 0;
    const chunk = Buffer.alloc(65536, 'z');
    for (let i = 0; i < 16; i++) {
      r.push(chunk);
      for (const ev of drain(r)) if (ev.type === 'data') got += ev.chunk.length;
      expect(r.buffered()).toBe(0);
    }
    r.push(b('\r'));
    expect(drain(r)).toEqual([]);
    expect(r.buffered()).toBe(1);
    r.push(b('\n.'));
    for (const ev of drain(r)) if (ev.type === 'data') got += ev.chunk.length;
    expect(r.buffered()).toBe(1);
    r.push(b('\r\n'));
    expect(drain(r)).toEqual([{ type: 'end' }]);
    expect(got).toBe(1048577);
    expect(r.dataBytes).toBe(1048577);
  });

  it('a 50 MiB message in 64 KiB pushes keeps buffering bounded and counts exactly', () => {
    // 64 KiB of lines that do not divide the push size, so lines and CRLFs straddle pushes
    const line = '.stuffed line of message text, 54 octets long....\r\n';
    const unit = b(line.repeat(Math.ceil(65536 / line.length) + 1));
    const total = 50 * 1024 * 1024;
    const r = new LineReader();
    r.mode = 'data';
    let sent = 0;
    let got = 0;
    let maxBuffered = 0;
    let off = 0;
    while (sent < total) {
      const n = Math.min(65536, total - sent);
      const chunk = unit.subarray(off, off + n);
      off = (off + n) % line.length;
      r.push(chunk);
      sent += n;
      for (const ev of drain(r)) {
        if (ev.type === 'data') got += ev.chunk.length;
        else throw new Error(`unexpected ${ev.type}`);
      }
      maxBuffered = Math.max(maxBuffered, r.buffered());
    }
    // finish the current line, then terminate
    const rest = line.length - off;
    if (off !== 0) r.push(b(line.slice(off)));
    r.push(b('.\r\n'));
    const tail = drain(r);
    for (const ev of tail) if (ev.type === 'data') got += ev.chunk.length;
    expect(tail.at(-1)).toEqual({ type: 'end' });
    expect(maxBuffered).toBeLessThanOrEqual(2);
    const lines = (sent + (off !== 0 ? rest : 0)) / line.length;
    expect(Number.isInteger(lines)).toBe(true);
    expect(got).toBe(lines * (line.length - 2)); // one stuffed dot and one CR fewer per line
    expect(r.dataBytes).toBe(got);
  });
});
