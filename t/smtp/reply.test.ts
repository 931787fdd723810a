// reply_lines: which lines a respond() call puts on the wire (qpsmtpd's respond semantics).
import { describe, expect, it } from 'vitest';
import { format_reply, reply_lines } from '../../lib/smtp/reply.js';

describe('reply_lines', () => {
  it('takes arguments, one level of arrays, and \\n inside a text as lines', () => {
    expect(reply_lines(['one'])).toEqual(['one']);
    expect(reply_lines(['a', 'b'])).toEqual(['a', 'b']);
    expect(reply_lines([['a', 'b'], 'c'])).toEqual(['a', 'b', 'c']);
    expect(reply_lines(['a\nb', 'c'])).toEqual(['a', 'b', 'c']);
    expect(reply_lines([['a', ['b', 'c']]])).toEqual(['a', 'b,c']);
    expect(reply_lines([42])).toEqual(['42']);
  });

  it('stops at the first undefined, empty or "0" line, as qpsmtpd does', () => {
    expect(reply_lines(['a', '', 'c'])).toEqual(['a']);
    expect(reply_lines(['a', '0', 'c'])).toEqual(['a']);
    expect(reply_lines(['a\n\nc'])).toEqual(['a']);
    expect(reply_lines([['a', undefined, 'c']])).toEqual(['a']);
    expect(reply_lines([undefined])).toEqual([]);
    expect(reply_lines([''])).toEqual([]);
    expect(reply_lines(['0'])).toEqual([]);
    expect(reply_lines([])).toEqual([]);
  });

  it('never lets control characters or an over-long line reach the wire', () => {
    expect(reply_lines(['x\ry\x00z\x1b'])).toEqual(['x y z ']);
    const long = reply_lines(['é'.repeat(400)])[0]!;
    expect(Buffer.byteLength(format_reply(250, [long]))).toBeLessThanOrEqual(512);
    expect(long.endsWith('é')).toBe(true);
  });
});
