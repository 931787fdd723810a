import { describe, expect, it } from 'vitest';
import { DotStuffer } from '../../lib/smtp/dot-stuff.js';

const run = (crlf: boolean, chunks: string[]) => {
  const e = new DotStuffer(crlf);
  return chunks.map((c) => e.encode(Buffer.from(c, 'latin1')).toString('latin1')).join('') + e.finish().toString('latin1');
};

describe('DotStuffer', () => {
  it('for the wire: CRLF line ends and dot-stuffing, across chunk boundaries', () => {
    expect(run(true, ['a\n.b\n..c\n.\n'])).toBe('a\r\n..b\r\n...c\r\n..\r\n.\r\n');
    expect(run(true, ['a', '\n', '.', 'b\n'])).toBe('a\r\n..b\r\n.\r\n');
    expect(run(true, ['.x\r', '\n.y\r\n'])).toBe('..x\r\n..y\r\n.\r\n');
    expect(run(true, ['mid.dot\nno newline at the end'])).toBe('mid.dot\r\nno newline at the end\r\n.\r\n');
    expect(run(true, [''])).toBe('.\r\n');
  });
  it('for BSMTP files: LF line ends kept, dot-stuffed', () => {
    expect(run(false, ['a\n.b\n', '.', 'c\n'])).toBe('a\n..b\n..c\n.\n');
    expect(run(false, ['no newline'])).toBe('no newline\n.\n');
  });
});
