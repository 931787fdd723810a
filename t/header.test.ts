import { describe, expect, it } from 'vitest';
import { MailHeader } from '../lib/header.js';

describe('MailHeader.parse (Mail::Header extract, Modify => 0, MailFrom => COERCE)', () => {
  it('keeps header lines verbatim, tag case included, and stops at the empty line', () => {
    const h = MailHeader.parse(['subject: Hi\n', 'X-Foo:bar\n', '\n', 'To: not a header\n']);
    expect(h.header()).toEqual(['subject: Hi\n', 'X-Foo:bar\n']);
    expect(h.get('To')).toBeUndefined();
  });

  it('stops at a line that is only "\\r"', () => {
    expect(MailHeader.parse(['A: 1\n', '\r', 'B: 2\n']).as_string()).toBe('A: 1\n');
    expect(MailHeader.parse(['A: 1\n', '\r\n', 'B: 2\n']).as_string()).toBe('A: 1\n');
  });

  it('appends continuation lines and keeps the folding', () => {
    const h = MailHeader.parse('Subject: one\n two\n\tthree\nX: y\n');
    expect(h.header()).toEqual(['Subject: one\n two\n\tthree\n', 'X: y\n']);
    expect(h.get('subject')).toBe('one\n two\n\tthree');
  });

  it('drops non-header lines with their continuations and goes on', () => {
    const h = MailHeader.parse(['A: 1\n', 'junk line\n', ' cont of junk\n', 'B: 2\n']);
    expect(h.as_string()).toBe('A: 1\nB: 2\n');
  });

  it('loses a first line that is not a header when no empty line follows', () => {
    const h = MailHeader.parse(['hello world\n', 'second line\n']);
    expect(h.header()).toEqual([]);
    expect(h.as_string()).toBe('');
  });

  it('coerces "From " to Mail-From:, only with that exact case', () => {
    const h = MailHeader.parse(['From someone@example.com Mon Jan  1\n', 'from x\n', 'From: a@b\n']);
    expect(h.header()).toEqual(['Mail-From: someone@example.com Mon Jan  1\n', 'From: a@b\n']);
    expect(h.get('Mail-From')).toBe('someone@example.com Mon Jan  1');
  });

  it('rejects field names with controls, spaces or 8-bit bytes', () => {
    const h = MailHeader.parse(['Bad Name: x\n', 'B\xe4d: x\n', 'Ok-Name: y\n', ': empty\n']);
    expect(h.as_string()).toBe('Ok-Name: y\n');
  });

  it('adds a newline to a last line that has none', () => {
    expect(MailHeader.parse(['A: 1']).as_string()).toBe('A: 1\n');
  });
});

describe('MailHeader accessors', () => {
  const sample = () =>
    MailHeader.parse(['Received: r1\n', 'Subject: s\n', 'received: r2\n', 'X-Empty:\n', '\n']);

  it('get/get_all/count match tags case-insensitively, in order', () => {
    const h = sample();
    expect(h.get('RECEIVED')).toBe('r1');
    expect(h.get('received', 1)).toBe('r2');
    expect(h.get('received', -1)).toBe('r2');
    expect(h.get('received', 2)).toBeUndefined();
    expect(h.get('Subject:')).toBe('s');
    expect(h.get('X-Empty')).toBe('');
    expect(h.get_all('Received')).toEqual(['r1', 'r2']);
    expect(h.get_all('Nope')).toEqual([]);
    expect(h.count('received')).toBe(2);
    expect(h.count('nope')).toBe(0);
    expect(h.tags()).toEqual(['Received', 'Subject', 'X-Empty']);
  });

  it('add appends by default and inserts at a header position', () => {
    const h = sample();
    expect(h.add('Received', 'r0', 0)).toBe('r0');
    h.add('X-Last', 'z');
    h.add('X-Mid', 'm', 2);
    h.add('x-neg', 'n', -2);
    expect(h.header()).toEqual([
      'Received: r0\n',
      'Received: r1\n',
      'X-Mid: m\n',
      'Subject: s\n',
      'received: r2\n',
      'X-Empty:\n',
      'x-neg: n\n',
      'X-Last: z\n',
    ]);
    expect(h.get_all('received')).toEqual(['r0', 'r1', 'r2']);
  });

  it('add strips leading blanks, keeps a value that already names the tag, keeps folds', () => {
    const h = new MailHeader();
    h.add('A', '   spaced');
    h.add('B', 'b: given');
    h.add('C:', 'folded\n more\n');
    expect(h.as_string()).toBe('A: spaced\nb: given\nC: folded\n more\n');
    expect(h.get('c')).toBe('folded\n more');
  });

  it('replace changes the n-th field in place or appends', () => {
    const h = sample();
    h.replace('RECEIVED', 'new2', 1);
    h.replace('Subject', 'new s');
    h.replace('X-New', 'x');
    expect(h.as_string()).toBe('Received: r1\nSubject: new s\nRECEIVED: new2\nX-Empty:\nX-New: x\n');
  });

  it('delete removes one instance or all, returning the values', () => {
    const h = sample();
    expect(h.delete('received', 0)).toEqual(['r1']);
    expect(h.as_string()).toBe('Subject: s\nreceived: r2\nX-Empty:\n');
    expect(h.delete('received', 5)).toEqual([]);
    h.add('Received', 'r3');
    expect(h.delete('Received')).toEqual(['r2', 'r3']);
    expect(h.as_string()).toBe('Subject: s\nX-Empty:\n');
    expect(h.tags()).toEqual(['Subject', 'X-Empty']);
  });

  it('tags uses Mail::Header spelling', () => {
    const h = MailHeader.parse('mime-version: 1.0\ncontent-TYPE: text/plain\nx-spam-flag: NO\n');
    expect(h.tags()).toEqual(['MIME-Version', 'Content-Type', 'X-Spam-Flag']);
  });

  it('dup is independent', () => {
    const h = sample();
    const d = h.dup();
    d.add('X', '1');
    d.replace('Subject', 'changed');
    expect(h.get('Subject')).toBe('s');
    expect(h.count('X')).toBe(0);
    expect(d.as_string()).toBe('Received: r1\nSubject: changed\nreceived: r2\nX-Empty:\nX: 1\n');
  });

  it('header() returns a copy', () => {
    const h = sample();
    h.header().pop();
    expect(h.count('X-Empty')).toBe(1);
  });
});

describe('MailHeader header-injection guard', () => {
  it.each([
    'a\nInjected: yes',
    'a\n\nbody',
    'a\r\nInjected: yes',
    'a\rInjected: yes',
    'a\n \nb',
  ])('refuses %j', (value) => {
    const h = new MailHeader();
    expect(() => h.add('X-Test', value)).toThrow(/continuation/);
    expect(() => h.replace('X-Test', value)).toThrow(/continuation/);
    expect(h.as_string()).toBe('');
  });

  it('accepts folded values and trailing newlines', () => {
    const h = new MailHeader();
    h.add('X-Test', 'a\r\n b\n\tc\n\n');
    expect(h.as_string()).toBe('X-Test: a\r\n b\n\tc\n');
  });

  it.each(['Bad Tag', 'X\nY', '', 'A:B', 'T\xe4g'])('refuses the field name %j', (tag) => {
    expect(() => new MailHeader().add(tag, 'v')).toThrow(/field name/);
  });
});
