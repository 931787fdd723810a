import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Address } from '../lib/address.js';
import { LOGERROR, LOGINFO, LOGWARN } from '../lib/constants.js';
import { MailHeader } from '../lib/header.js';
import { Transaction, type TransactionHost } from '../lib/transaction.js';

let spool: string;
let logs: [number, string][];
let counter = 0;

function host(threshold: number): TransactionHost {
  return {
    spool_dir: () => spool + '/',
    temp_file: () => join(spool, `${Math.floor(Date.now() / 1000)}:${process.pid}:${counter++}`),
    size_threshold: () => threshold,
    log: (level, ...msg) => logs.push([level, msg.map(String).join('')]),
  };
}

const addr = (a: string) => ({ address: () => a, format: () => `<${a}>` }) as unknown as Address;

beforeEach(async () => {
  spool = await mkdtemp(join(tmpdir(), 'qpsmtpd-ts-spool-'));
  logs = [];
});
afterEach(async () => {
  await rm(spool, { recursive: true, force: true });
});

describe('Transaction envelope and notes', () => {
  it('sender, recipients, add/remove_recipient', () => {
    const t = new Transaction(host(1000));
    expect(t.sender()).toBeUndefined();
    const s = addr('s@example.com');
    expect(t.sender(s)).toBe(s);
    expect(t.sender()).toBe(s);
    t.sender(undefined);
    expect(t.sender()).toBeUndefined();

    t.add_recipient(addr('a@x'));
    t.add_recipient(undefined);
    t.add_recipient(addr('b@x'));
    t.add_recipient(addr('a@x'));
    expect(t.recipients().map((r) => r.address())).toEqual(['a@x', 'b@x', 'a@x']);
    t.remove_recipient(addr('a@x'));
    expect(t.recipients().map((r) => r.address())).toEqual(['b@x']);
    t.recipients([addr('c@x'), addr('d@x')]);
    expect(t.recipients().map((r) => r.address())).toEqual(['c@x', 'd@x']);
    t.recipients().pop();
    expect(t.recipients()).toHaveLength(2);
    t.recipients([]);
    expect(t.recipients()).toEqual([]);
  });

  it('notes distinguish reading from writing undefined', () => {
    const t = new Transaction(host(1000));
    expect(t.notes('k')).toBeUndefined();
    expect(t.notes('k', { a: 1 })).toEqual({ a: 1 });
    expect(t.notes('k')).toEqual({ a: 1 });
    t.notes('k', undefined);
    expect(t.notes('k')).toBeUndefined();
  });

  it('header and started', () => {
    const t = new Transaction(host(1000));
    expect(t.header()).toBeUndefined();
    const h = MailHeader.parse('A: 1\n');
    t.header(h);
    expect(t.header()).toBe(h);
    expect(Math.abs(t.started() - Date.now() / 1000)).toBeLessThan(5);
  });
});

const HEAD = ['Subject: test\n', 'From: a@b\n'];
const BODY = ['\n', 'line one\n', '.dot\n', 'tail without newline'];

/** Writes like the DATA loop: header lines, set_body_start at the blank line, body lines. */
async function feed(t: Transaction): Promise<void> {
  for (const l of HEAD) await t.body_write(l);
  t.header(MailHeader.parse(HEAD));
  t.set_body_start();
  for (const l of BODY) await t.body_write(l);
}

function readAll(t: Transaction): string[] {
  t.body_resetpos();
  const out: string[] = [];
  for (let l = t.body_getline(); l !== undefined; l = t.body_getline()) out.push(l);
  return out;
}

describe('Transaction body', () => {
  it.each([
    ['memory', 100000],
    ['spooled from the start', 0],
    ['spooled inside the headers', 15],
    ['spooled inside the body', 30],
  ])('%s: same lines, sizes and message_stream', async (_name, threshold) => {
    const t = new Transaction(host(threshold));
    await feed(t);
    const total = [...HEAD, ...BODY].join('').length;
    const headerBytes = HEAD.join('').length;
    expect(readAll(t)).toEqual(BODY);
    expect(t.body_as_string()).toBe(BODY.join(''));
    expect(t.data_size()).toBe(total);
    expect(t.body_length()).toBe(total - headerBytes);
    expect(t.body_start()).toBe(threshold === 100000 ? HEAD.length : headerBytes);
    t.header()!.add('Received', 'from x', 0);
    expect(await text(t.message_stream())).toBe('Received: from x\n' + HEAD.join('') + BODY.join(''));
    expect(await text(t.body_stream())).toBe(BODY.join(''));
    expect(t.body_fh() === undefined).toBe(threshold === 100000);
    await t.cleanup();
  });

  it('memory mode reads on from the current index; spooled reads restart after a write', async () => {
    const mem = new Transaction(host(100000));
    await feed(mem);
    expect(mem.body_current_pos()).toBe(HEAD.length + BODY.length);
    expect(mem.body_getline()).toBeUndefined();

    const disk = new Transaction(host(0));
    await feed(disk);
    expect(disk.body_current_pos()).toBe(disk.data_size());
    expect(disk.body_getline()).toBe('\n');
    expect(disk.body_current_pos()).toBe(disk.body_start() + 1);
    await disk.cleanup();
  });

  it('continues a trailing fragment with the next write', async () => {
    for (const threshold of [100000, 0]) {
      const t = new Transaction(host(threshold));
      await t.body_write('ab');
      await t.body_write(Buffer.from('c\nde'));
      await t.body_write('f\n\xff\n');
      expect(readAll(t)).toEqual(['abc\n', 'def\n', '\xff\n']);
      await t.cleanup();
    }
  });

  it('spools exactly when data_size reaches size_threshold, to a 0600 file', async () => {
    const t = new Transaction(host(10));
    await t.body_write('12345\n');
    expect(t.body_fh()).toBeUndefined();
    expect(logs.some(([l, m]) => l === LOGINFO && /spooling/.test(m))).toBe(false);
    await t.body_write('abc\n');
    expect(t.body_fh()).toBeTypeOf('number');
    expect(logs).toContainEqual([LOGINFO, 'spooling message to disk']);
    const file = await t.body_filename();
    expect(file.startsWith(spool)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'latin1')).toBe('12345\nabc\n');
    await t.cleanup();
  });

  it('body_filename forces spooling and flushes', async () => {
    const t = new Transaction(host(100000));
    await feed(t);
    expect(t.body_fh()).toBeUndefined();
    const file = await t.body_filename();
    expect(await readFile(file, 'latin1')).toBe([...HEAD, ...BODY].join(''));
    expect(t.body_start()).toBe(HEAD.join('').length);
    expect(readAll(t)).toEqual(BODY);
    await t.cleanup();
  });

  it('keeps bytes exact', async () => {
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (const threshold of [100000, 0]) {
      const t = new Transaction(host(threshold));
      await t.body_write(bytes);
      expect(Buffer.from(t.body_as_string(), 'latin1').equals(bytes)).toBe(true);
      const chunks: Buffer[] = [];
      for await (const c of t.body_stream()) chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
      await t.cleanup();
    }
  });

  it('body_length is 0 before set_body_start; body_size warns', async () => {
    const t = new Transaction(host(100000));
    await t.body_write('A: 1\n');
    expect(t.body_length()).toBe(0);
    expect(t.body_size()).toBe(5);
    expect(logs).toContainEqual([LOGWARN, 'WARNING: body_size() is deprecated, use data_size() instead']);
  });

  it('serializes writes that are not awaited', async () => {
    const t = new Transaction(host(8));
    const done = ['aaaa\n', 'bbbb\n', 'cccc\n', 'dddd\n'].map((l) => t.body_write(l));
    expect(() => t.body_getline()).not.toThrow(); // memory mode still, nothing written yet
    await Promise.all(done);
    expect(t.body_as_string()).toBe('aaaa\nbbbb\ncccc\ndddd\n');
    await t.cleanup();
  });
});

describe('Transaction cleanup', () => {
  it('removes the spool file and registered temp files and dirs, idempotently', async () => {
    const t = new Transaction(host(0));
    await t.body_write('x\n');
    const file = await t.body_filename();
    const tmpFile = join(spool, 'plugin-file');
    const tmpDir = join(spool, 'plugin-dir');
    await writeFile(tmpFile, 'x');
    await mkdir(join(tmpDir, 'sub'), { recursive: true });
    await writeFile(join(tmpDir, 'sub', 'f'), 'x');
    t.register_temp_file(tmpFile);
    t.register_temp_file(join(spool, 'never-created'));
    t.register_temp_dir(tmpDir);
    await t.cleanup();
    expect(existsSync(file)).toBe(false);
    expect(existsSync(tmpFile)).toBe(false);
    expect(existsSync(tmpDir)).toBe(false);
    expect(t.body_fh()).toBeUndefined();
    await t.cleanup();
    expect(logs.filter(([l]) => l <= LOGERROR)).toEqual([]);
  });

  it('logs instead of throwing when a file cannot be removed', async () => {
    const t = new Transaction(host(0));
    const locked = join(spool, 'locked');
    await mkdir(locked);
    t.register_temp_file(locked); // unlink on a directory fails with EISDIR/EPERM
    await expect(t.cleanup()).resolves.toBeUndefined();
    expect(logs.some(([l, m]) => l === LOGERROR && m.includes(locked))).toBe(true);
  });
});

describe('Transaction with a 50 MiB body', () => {
  it('spools with bounded memory and reads it back line by line', async () => {
    const t = new Transaction(host(10000));
    const line = 'x'.repeat(1023) + '\n';
    const chunk = Buffer.from(line.repeat(64), 'latin1'); // 64 KiB
    const chunks = 50 * 16;
    const before = process.memoryUsage().rss;
    for (let i = 0; i < chunks; i++) await t.body_write(chunk);
    const grown = process.memoryUsage().rss - before;
    if (process.env.SHOW_RSS) console.log('rss growth', grown);
    expect(grown).toBeLessThan(40 * 1024 * 1024);
    const size = chunks * chunk.length;
    expect(t.data_size()).toBe(size);
    expect((await stat(await t.body_filename())).size).toBe(size);

    t.body_resetpos();
    let n = 0;
    let bytes = 0;
    for (let l = t.body_getline(); l !== undefined; l = t.body_getline()) {
      if (l !== line) throw new Error(`bad line ${n}`);
      n++;
      bytes += l.length;
    }
    expect(n).toBe(chunks * 64);
    expect(bytes).toBe(size);
    expect(process.memoryUsage().rss - before).toBeLessThan(40 * 1024 * 1024);

    let streamed = 0;
    for await (const c of t.message_stream()) streamed += (c as Buffer).length;
    expect(streamed).toBe(size);
    await t.cleanup();
  });
});
