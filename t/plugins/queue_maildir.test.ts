// queue/maildir: the stored message (Appendix A.2), per-recipient copies, and durability:
// fsync before link before directory fsync before 250 (reliability 4.4 / F03), and every
// storage fault answered with 452 and nothing left behind (F11–F14, hook timeout).
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DENYSOFT, OK, type Plugin, type Runtime } from '../../lib/index.js';
import { REPO, make_runtime } from '../lib/harness.js';
import { start_session, type TestClient } from '../lib/session.js';

const HOST = /[\w.-]+/.exec(hostname())![0];
const NAME = new RegExp(`^\\d+\\.P${process.pid}M\\d+Q\\d+\\.${HOST.replace(/\./g, '\\.')}$`);

let cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

function tempdir(prefix: string): string {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Appendix A's plugin set, with the maildir plugin line given. */
async function setup(queue_line: string, extra: Record<string, string | string[]> = {}) {
  return make_runtime({
    plugins: ['count_unrecognized_commands 4', 'dont_require_anglebrackets', 'auth/auth_flat_file', 'rcpt_ok', queue_line],
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    databytes: '100000000',
    flat_auth_pw: ['good@example.test:good_pass'],
    loglevel: '6',
    ...extra,
  });
}

function files(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

async function open_session(runtime: Runtime) {
  const s = start_session(runtime);
  expect((await s.client.reply())!.code).toBe(220);
  expect((await s.client.cmd('EHLO client.test'))!.code).toBe(250);
  return s;
}

/** MAIL, RCPTs, DATA and the message lines; returns the reply to the final dot. */
async function send(client: TestClient, from: string, rcpts: string[], lines: string[]) {
  expect((await client.cmd(`MAIL FROM:${from}`))!.code).toBe(250);
  for (const r of rcpts) expect((await client.cmd(`RCPT TO:${r}`))!.code).toBe(250);
  expect((await client.cmd('DATA'))!.code).toBe(354);
  client.send(lines.map((l) => l + '\r\n').join('') + '.\r\n');
  return (await client.reply(20000))!;
}

const A2_LINES = ['Subject: hi', 'From: a@b.test', 'X-Long: a', ' b', '', 'line1', '..dotline', '.single', 'end'];

/** The FileHandle class's prototype (FileHandle is not exported by node:fs/promises). */
async function filehandle_proto(): Promise<{ sync: () => Promise<void> }> {
  const dir = tempdir('qpts-fh-');
  const fh = await fsp.open(path.join(dir, 'x'), 'w');
  const proto = Object.getPrototypeOf(fh);
  await fh.close();
  return proto;
}

/** Records the durability-relevant calls the plugin makes, in order, with the file names. */
async function record_calls(): Promise<string[]> {
  const events: string[] = [];
  const fd_path = new Map<number, string>();
  const real_open = fsp.open;
  vi.spyOn(fsp, 'open').mockImplementation((async (p: string, ...rest: unknown[]) => {
    const fh = await (real_open as (...a: unknown[]) => Promise<fsp.FileHandle>)(p, ...rest);
    fd_path.set(fh.fd, String(p));
    return fh;
  }) as typeof fsp.open);
  const proto = await filehandle_proto();
  const real_sync = proto.sync;
  vi.spyOn(proto, 'sync').mockImplementation(async function (this: fsp.FileHandle) {
    const name = fd_path.get(this.fd) ?? `fd ${this.fd}`;
    await real_sync.call(this);
    events.push(`fsync ${name}`);
  });
  const real_link = fsp.link;
  vi.spyOn(fsp, 'link').mockImplementation(async (a, b) => {
    await real_link(a, b);
    events.push(`link ${String(a)} ${String(b)}`);
  });
  const real_unlink = fsp.unlink;
  vi.spyOn(fsp, 'unlink').mockImplementation(async (a) => {
    await real_unlink(a);
    events.push(`unlink ${String(a)}`);
  });
  return events;
}

function errno(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected error, ${syscall}`), { code, syscall });
}

describe('queue/maildir: arguments', () => {
  it('creates tmp/ new/ cur/ with the mode (default 0700)', async () => {
    const dir = path.join(tempdir('qpts-md-'), 'Maildir');
    await setup(`queue/maildir ${dir}`);
    for (const sub of ['tmp', 'new', 'cur']) expect(statSync(path.join(dir, sub)).mode & 0o7777).toBe(0o700);
    const dir2 = path.join(tempdir('qpts-md-'), 'Maildir');
    await setup(`queue/maildir ${dir2} %d 750`);
    expect(existsSync(path.join(dir2, 'new'))).toBe(false); // per-recipient: created on delivery
  });

  it.each([
    ['queue/maildir', /maildir directory not specified/],
    ['queue/maildir /tmp/a;b', /may only contain/],
    ['queue/maildir /tmp/x users', /does not contain a substitution parameter/],
    ['queue/maildir /tmp/x %u 0755', /mode '0755' is not an octal number/],
    ['queue/maildir /tmp/x %u 7a5', /not an octal number/],
    ['queue/maildir /tmp/x %u 700 extra', /at most 3 arguments/],
  ])('refuses `%s` at start-up', async (line, err) => {
    await expect(setup(line)).rejects.toThrow(err);
  });
});

describe('queue/maildir: the stored message (Appendix A.2)', () => {
  it('250 Queued! (trailing space), the file is in new/ and tmp/ is empty when the 250 arrives', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    const r = await send(client, '<a@b.test>', ['<x@example.test>', '<y@example.test>'], A2_LINES);
    // checked before anything else happens: the message is durable by the time 250 is read
    const in_new = files(path.join(dir, 'new'));
    const in_tmp = files(path.join(dir, 'tmp'));
    expect(r).toMatchObject({ code: 250, lines: ['Queued! '] });
    expect(in_new).toHaveLength(1);
    expect(in_tmp).toEqual([]);
    expect(in_new[0]).toMatch(NAME);
    expect(files(path.join(dir, 'cur'))).toEqual([]);
    const file = path.join(dir, 'new', in_new[0]!);
    expect(statSync(file).mode & 0o7777).toBe(0o600);
    const text = readFileSync(file, 'latin1');
    const received = /^Received: from Unknown \(HELO client\.test\) \(127\.0\.0\.1\)\n by mx\.example\.test \(qpsmtpd-ts\/[^)]+\) with ESMTP id [0-9A-F-]{36}\.1; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n/m;
    expect(text).toMatch(received);
    expect(text.replace(received, 'Received: <line>\n')).toBe(
      [
        'Return-Path: <a@b.test>',
        'Delivered-To: y@example.test',
        'Delivered-To: x@example.test',
        'Authentication-Results: mx.example.test; auth=none',
        'Received: <line>',
        'Subject: hi',
        'From: a@b.test',
        'X-Long: a',
        ' b',
        '',
        'line1',
        '.dotline',
        'single', // RFC 5321 4.5.2: every leading dot is removed (qpsmtpd kept `.single`)
        'end',
        '',
      ].join('\n'),
    );
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221 });
    await done;
  });

  it('answers with the Message-Id; an authenticated sender gets auth=pass and ESMTPA', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    expect((await client.cmd(`AUTH PLAIN ${Buffer.from('\0good@example.test\0good_pass').toString('base64')}`))!.code).toBe(235);
    const r = await send(client, 'a@b.test', ['<x@other.test>'], ['Message-Id: <abc.123@b.test>', 'Subject: t', '', 'body']);
    expect(r).toMatchObject({ code: 250, text: 'Queued! <abc.123@b.test>' });
    const [name] = files(path.join(dir, 'new'));
    const text = readFileSync(path.join(dir, 'new', name!), 'latin1');
    expect(text.split('\n').slice(0, 4)).toEqual([
      'Return-Path: <a@b.test>',
      'Delivered-To: x@other.test',
      'Authentication-Results: mx.example.test; auth=pass (plain) smtp.auth=good@example.test',
      'Received: from Unknown (HELO client.test) (127.0.0.1)',
    ]);
    expect(text).toMatch(/ with ESMTPA id [0-9A-F-]{36}\.1; /);
    expect(text.endsWith('Message-Id: <abc.123@b.test>\nSubject: t\n\nbody\n')).toBe(true);
    await client.cmd('QUIT');
    await done;
  });

  it('keeps 8-bit content byte for byte and stores the null sender as <>', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    const body = 'caf\xe9 \xff\xfe end';
    const r = await send(client, '<>', ['<x@example.test>'], ['Subject: 8bit', '', body]);
    expect(r.code).toBe(250);
    const [name] = files(path.join(dir, 'new'));
    const bytes = readFileSync(path.join(dir, 'new', name!));
    expect(bytes.toString('latin1').startsWith('Return-Path: <>\nDelivered-To: x@example.test\n')).toBe(true);
    expect(bytes.subarray(bytes.length - body.length - 1).equals(Buffer.from(body + '\n', 'latin1'))).toBe(true);
    await client.cmd('QUIT');
    await done;
  });

  it('several messages in one session get distinct names (counter)', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    for (let i = 0; i < 5; i++) expect((await send(client, '<a@b.test>', ['<x@example.test>'], [`Subject: ${i}`, '', 'x'])).code).toBe(250);
    const names = files(path.join(dir, 'new'));
    expect(names).toHaveLength(5);
    const counters = names.map((n) => Number(/Q(\d+)\./.exec(n)![1]));
    expect(new Set(counters).size).toBe(5);
    await client.cmd('QUIT');
    await done;
  });
});

describe('queue/maildir: per-recipient sub-directories', () => {
  it('%d/%l: one copy per recipient with its own Delivered-To line; 770 gives 0770 dirs and 0660 files', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir} %d/%l 770`);
    const { client, done } = await open_session(runtime);
    const r = await send(client, '<a@b.test>', ['<x@example.test>', '<Y.z@example.test>'], ['Subject: hi', '', 'body']);
    expect(r).toMatchObject({ code: 250, text: 'Queued! ' });
    for (const [user, addr] of [
      ['x', 'x@example.test'],
      ['Y.z', 'Y.z@example.test'],
    ] as const) {
      const md = path.join(dir, 'example.test', user);
      for (const sub of ['tmp', 'new', 'cur']) expect(statSync(path.join(md, sub)).mode & 0o7777).toBe(0o770);
      expect(statSync(path.join(dir, 'example.test')).mode & 0o7777).toBe(0o770);
      expect(files(path.join(md, 'tmp'))).toEqual([]);
      const [name, ...more] = files(path.join(md, 'new'));
      expect(more).toEqual([]);
      const file = path.join(md, 'new', name!);
      expect(statSync(file).mode & 0o7777).toBe(0o660);
      const text = readFileSync(file, 'latin1');
      expect(text.split('\n').slice(0, 3)).toEqual([`Return-Path: <a@b.test>`, `Delivered-To: ${addr}`, 'Authentication-Results: mx.example.test; auth=none']);
      expect(text.match(/^Delivered-To:/gm)).toHaveLength(1);
    }
    await client.cmd('QUIT');
    await done;
  });

  it('%u replaces unsafe characters with _, and a recipient cannot climb out with `..`', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir} users/%l`);
    const { client, done } = await open_session(runtime);
    const r = await send(client, '<a@b.test>', ['<"a/b c"@example.test>', '<".."@example.test>'], ['Subject: hi', '', 'body']);
    expect(r.code).toBe(250);
    expect(files(path.join(dir, 'users')).sort()).toEqual(['__', 'a_b_c']);
    expect(files(path.join(dir, 'users', '__', 'new'))).toHaveLength(1);
    expect(existsSync(path.join(dir, 'new'))).toBe(false);
    await client.cmd('QUIT');
    const dir2 = tempdir('qpts-md-');
    const rt2 = await setup(`queue/maildir ${dir2} %u`);
    const s2 = await open_session(rt2.runtime);
    expect((await send(s2.client, '<a@b.test>', ['<"x%y"@example.test>'], ['', 'b'])).code).toBe(250);
    expect(files(dir2)).toEqual(['x_y@example.test']);
    await s2.client.cmd('QUIT');
    await Promise.all([done, s2.done]);
  });
});

describe('queue/maildir: durability order (reliability 4.4, F03)', () => {
  it('fsync(tmp file) < link into new/ < fsync(new/) < unlink(tmp) < 250', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    const events = await record_calls();
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: order', '', 'body']);
    events.push(`reply ${r.code}`);
    const [name] = files(path.join(dir, 'new'));
    const tmp = path.join(dir, 'tmp', name!);
    const nw = path.join(dir, 'new', name!);
    expect(events).toEqual([`fsync ${tmp}`, `link ${tmp} ${nw}`, `fsync ${path.join(dir, 'new')}`, `unlink ${tmp}`, 'reply 250']);
    await client.cmd('QUIT');
    await done;
  });

  // .ci/run installs strace; without it this test fails rather than skipping
  it('the same order in the system calls (strace attached to this process)', async () => {
    expect(spawnSync('strace', ['-V']).status, 'strace is needed (apt-get install strace)').toBe(0);
    const dir = tempdir('qpts-md-');
    const out = path.join(tempdir('qpts-strace-'), 'trace');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const { client, done } = await open_session(runtime);
    const marker = path.join(dir, 'MARKER-250-received');
    const st = spawn('strace', ['-f', '-y', '-e', 'trace=fsync,fdatasync,link,linkat,rename,renameat,renameat2,unlink,unlinkat,access,faccessat,faccessat2', '-o', out, '-p', String(process.pid)]);
    let err = '';
    const exited = new Promise<void>((resolve) => st.on('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`strace did not attach: ${err}`)), 10000);
      st.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/attached/.test(err)) {
          clearTimeout(t);
          setTimeout(resolve, 300);
        }
      });
    });
    try {
      const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: strace', '', 'body']);
      expect(r.code).toBe(250);
      try {
        accessSync(marker); // a syscall marking "250 received" in the trace
      } catch {
        /* ENOENT expected */
      }
      await new Promise((res) => setTimeout(res, 200));
    } finally {
      st.kill('SIGINT');
      await exited;
    }
    const lines = readFileSync(out, 'utf8').split('\n');
    const [name] = files(path.join(dir, 'new'));
    const tmp = path.join(dir, 'tmp', name!);
    const nw = path.join(dir, 'new', name!);
    const find = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const i_fsync_file = find(new RegExp(`\\b(fsync|fdatasync)\\(\\d+<${esc(tmp)}>`));
    const i_link = find(new RegExp(`\\b(link|linkat|rename|renameat2?)\\(.*"${esc(tmp)}".*"${esc(nw)}"`));
    const i_fsync_dir = find(new RegExp(`\\b(fsync|fdatasync)\\(\\d+<${esc(path.join(dir, 'new'))}>`));
    const i_unlink = find(new RegExp(`\\bunlink(at)?\\(.*"${esc(tmp)}"`));
    const i_marker = find(new RegExp(esc(marker)));
    const trace = lines.filter((l) => l.includes(dir)).join('\n');
    expect([i_fsync_file, i_link, i_fsync_dir, i_unlink, i_marker].every((i) => i >= 0), trace).toBe(true);
    expect(i_fsync_file < i_link && i_link < i_fsync_dir && i_fsync_dir < i_unlink && i_unlink < i_marker, trace).toBe(true);
    await client.cmd('QUIT');
    await done;
  });
});

describe('queue/maildir: injected failures → 452, nothing in new/ or tmp/', () => {
  async function failing(setup_fault: (dir: string) => Promise<void> | void, queue_args = '') {
    const dir = tempdir('qpts-md-');
    const { runtime, logged } = await setup(`queue/maildir ${dir}${queue_args}`);
    const s = await open_session(runtime);
    await setup_fault(dir);
    return { dir, logged, ...s };
  }

  it('a maildir removed while the server runs is made again; the next message is queued at once', async () => {
    const { dir, client, done } = await failing(() => undefined);
    expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: 1', '', 'body'])).code).toBe(250);
    rmSync(dir, { recursive: true });
    expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: 2', '', 'body'])).code).toBe(250);
    expect(files(path.join(dir, 'new'))).toHaveLength(1);
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    await client.cmd('QUIT');
    await done;
  });

  it('a message is written with one write(2), not one per chunk', async () => {
    const proto = (await filehandle_proto()) as unknown as { write: (...a: unknown[]) => Promise<unknown> };
    const { dir, client, done } = await failing(() => undefined);
    // the handles of files opened in the maildir (the transaction's spool file is elsewhere)
    const mine = new Set<unknown>();
    const real_open = fsp.open;
    vi.spyOn(fsp, 'open').mockImplementation((async (p: string, ...rest: unknown[]) => {
      const fh = await (real_open as (...a: unknown[]) => Promise<fsp.FileHandle>)(p, ...rest);
      if (String(p).startsWith(dir)) mine.add(fh);
      return fh;
    }) as typeof fsp.open);
    const writes = vi.spyOn(proto, 'write');
    const body = Array.from({ length: 200 }, (_, i) => `line ${i} ${'x'.repeat(60)}`);
    expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: many lines', '', ...body])).code).toBe(250);
    expect(writes.mock.contexts.filter((fh) => mine.has(fh))).toHaveLength(1);
    const [name] = files(path.join(dir, 'new'));
    expect(readFileSync(path.join(dir, 'new', name!), 'latin1')).toContain(`${body.at(-1)}\n`);
    await client.cmd('QUIT');
    await done;
  });

  it('F13: fsync of the message file fails (EIO) → 452 queue error (fsync); the next message is queued', async () => {
    const proto = await filehandle_proto();
    const { dir, client, done, logged } = await failing(() => {
      vi.spyOn(proto, 'sync').mockRejectedValueOnce(errno('EIO', 'fsync'));
    });
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (fsync)' });
    expect(files(path.join(dir, 'new'))).toEqual([]);
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    const line = logged.find((l) => l.includes('queue error (fsync)'))!;
    expect(line).toContain(path.join(dir, 'tmp'));
    expect(line).toContain('EIO');
    expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: y', '', 'body'])).code).toBe(250);
    expect(files(path.join(dir, 'new'))).toHaveLength(1);
    await client.cmd('QUIT');
    await done;
  });

  it('fsync of new/ fails → 452 queue error (fsync new), and the linked file is taken back out of new/', async () => {
    const proto = await filehandle_proto();
    const { dir, client, done } = await failing(() => {
      const real = proto.sync;
      let n = 0;
      vi.spyOn(proto, 'sync').mockImplementation(async function (this: unknown) {
        if (++n === 2) throw errno('EIO', 'fsync'); // 1: the file, 2: the new/ directory
        return real.call(this);
      });
    });
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (fsync new)' });
    expect(files(path.join(dir, 'new'))).toEqual([]);
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    await client.cmd('QUIT');
    await done;
  });

  it('link fails → 452 queue error (link)', async () => {
    const { dir, client, done } = await failing(() => {
      vi.spyOn(fsp, 'link').mockRejectedValueOnce(errno('EIO', 'link'));
    });
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (link)' });
    expect(files(path.join(dir, 'new'))).toEqual([]);
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    await client.cmd('QUIT');
    await done;
  });

  it('a write fails (ENOSPC) → 452 queue error (write)', async () => {
    const proto = (await filehandle_proto()) as unknown as { write: (...a: unknown[]) => Promise<unknown> };
    const { dir, client, done } = await failing(() => {
      // only the plugin's file: the session's spool file writes go on
      const ours = new Set<number>();
      const real_open = fsp.open;
      vi.spyOn(fsp, 'open').mockImplementation((async (...a: unknown[]) => {
        const fh = await (real_open as (...x: unknown[]) => Promise<fsp.FileHandle>)(...a);
        ours.add(fh.fd);
        return fh;
      }) as typeof fsp.open);
      const real_write = proto.write;
      vi.spyOn(proto, 'write').mockImplementation(async function (this: fsp.FileHandle, ...a: unknown[]) {
        if (ours.has(this.fd)) throw errno('ENOSPC', 'write');
        return real_write.apply(this, a);
      });
    });
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (write)' });
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    expect(files(path.join(dir, 'new'))).toEqual([]);
    await client.cmd('QUIT');
    await done;
  });

  it('F14: the maildir cannot be created → 452 queue error (mkdir), the session goes on', async () => {
    const { dir, client, done } = await failing((d) => {
      rmSync(path.join(d, 'tmp'), { recursive: true });
      writeFileSync(path.join(d, 'tmp'), 'not a directory');
    });
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (mkdir)' });
    expect(files(path.join(dir, 'new'))).toEqual([]);
    expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
    await client.cmd('QUIT');
    await done;
  });

  it('a deleted maildir is created again', async () => {
    const { dir, client, done } = await failing((d) => rmSync(d, { recursive: true }));
    expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body'])).code).toBe(250);
    expect(files(path.join(dir, 'new'))).toHaveLength(1);
    await client.cmd('QUIT');
    await done;
  });

  it('per-recipient: the 2nd copy fails to link → 452, and the 1st copy is removed from new/', async () => {
    const real = fsp.link;
    const { dir, client, done } = await failing(() => {
      let n = 0;
      vi.spyOn(fsp, 'link').mockImplementation(async (a, b) => {
        if (++n === 2) throw errno('EIO', 'link');
        return real(a, b);
      });
    }, ' %l');
    const r = await send(client, '<a@b.test>', ['<x@example.test>', '<y@example.test>'], ['Subject: x', '', 'body']);
    expect(r).toMatchObject({ code: 452, text: 'queue error (link)' });
    for (const u of ['x', 'y']) {
      expect(files(path.join(dir, u, 'new'))).toEqual([]);
      expect(files(path.join(dir, u, 'tmp'))).toEqual([]);
    }
    await client.cmd('QUIT');
    await done;
  });

  it('hook timeout: the session answers 451, the plugin stops and never links', async () => {
    const proto = await filehandle_proto();
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`, { hook_timeout: '0.3' });
    const { client, done } = await open_session(runtime);
    const real_sync = proto.sync;
    let synced!: () => void;
    const sync_done = new Promise<void>((r) => (synced = r));
    vi.spyOn(proto, 'sync').mockImplementation(async function (this: unknown) {
      await new Promise((r) => setTimeout(r, 800)); // a slow disk
      await real_sync.call(this);
      synced();
    });
    const link = vi.spyOn(fsp, 'link');
    const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: x', '', 'body']);
    expect(r.code).toBe(451);
    await sync_done;
    await new Promise((res) => setTimeout(res, 100));
    expect(link).not.toHaveBeenCalled();
    expect(files(path.join(dir, 'new'))).toEqual([]);
    expect(files(path.join(dir, 'tmp'))).toEqual([]);
    await client.cmd('QUIT');
    await done;
  });

  it('direct call: a missing header is tolerated, and DENYSOFT is the code of every failure', async () => {
    const dir = tempdir('qpts-md-');
    const { runtime } = await setup(`queue/maildir ${dir}`);
    const plugin = runtime.plugins.at(-1)! as Plugin & { hook_queue(t: unknown): Promise<unknown> };
    const { Qpsmtpd, Connection } = await import('../../lib/index.js');
    const qp = new Qpsmtpd(runtime, new Connection());
    const view = qp.plugin_view(plugin) as typeof plugin;
    const t = qp.transaction;
    t.sender(qp.address('<a@b.test>'));
    t.add_recipient(qp.address('<x@example.test>'));
    await t.body_write('hello\n');
    expect(await view.hook_queue(t)).toEqual([OK, 'Queued! ']);
    const [name] = files(path.join(dir, 'new'));
    expect(readFileSync(path.join(dir, 'new', name!), 'latin1')).toBe('Return-Path: <a@b.test>\nDelivered-To: x@example.test\nhello\n');
    rmSync(path.join(dir, 'new'), { recursive: true });
    writeFileSync(path.join(dir, 'new'), '');
    expect(await view.hook_queue(t)).toEqual([DENYSOFT, 'queue error (mkdir)']);
    await t.cleanup();
  });
});

// ---- real storage faults: a 256 KiB tmpfs, a read-only mount --------------------------------

const IN_USERNS = process.env.QPTS_IN_USERNS === '1';

function sh(cmd: string, args: string[]): { ok: boolean; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, err: `${r.error?.message ?? ''}${r.stderr ?? ''}`.trim() };
}

/** Whether this process may mount (as root, or inside `unshare -Urm`). */
function can_mount(): { ok: boolean; err: string } {
  const probe = mkdtempSync(path.join(tmpdir(), 'qpts-mnt-probe-'));
  try {
    const m = sh('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', probe]);
    if (m.ok) sh('umount', [probe]);
    return m;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

/**
 * Runs `body` where mounting works. Without the privilege, the test re-runs itself inside a
 * user+mount namespace (`unshare -Urm`, reliability.md §3). If neither works the test FAILS.
 */
async function with_mount_privilege(test_name: string, body: () => Promise<void>): Promise<void> {
  const direct = process.env.QPTS_FORCE_UNSHARE === '1' && !IN_USERNS ? { ok: false, err: 'forced' } : can_mount();
  if (direct.ok) return body();
  if (IN_USERNS) throw new Error(`mount is refused even inside unshare -Urm: ${direct.err}`);
  const vitest = path.join(REPO, 'node_modules', 'vitest', 'vitest.mjs');
  const r = spawnSync(
    'unshare',
    ['-Urm', process.execPath, vitest, 'run', 't/plugins/queue_maildir.test.ts', '-t', test_name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), '--reporter=dot'],
    { cwd: REPO, encoding: 'utf8', env: { ...process.env, QPTS_IN_USERNS: '1', QPTS_FORCE_UNSHARE: '', NO_COLOR: '1', FORCE_COLOR: '0' }, timeout: 120000 },
  );
  // eslint-disable-next-line no-control-regex
  const out = (r.stdout ?? '').replace(/\x1b\[[0-9;]*m/g, '');
  if (r.status !== 0 || !/\b1 passed\b/.test(out) || /\bfailed\b/.test(out)) {
    throw new Error(
      `cannot test with a real mount: mount refused (${direct.err}) and the unshare -Urm re-run failed ` +
        `(status ${r.status}, ${r.error?.message ?? ''}):\n${r.stdout}\n${r.stderr}`,
    );
  }
}

function mount_tmpfs(dir: string, size: string): void {
  const m = sh('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (!m.ok) throw new Error(`mount tmpfs on ${dir} failed: ${m.err}`);
  cleanups.push(() => {
    const u = sh('umount', [dir]);
    if (!u.ok) sh('umount', ['-l', dir]);
  });
}

function big_body(bytes: number): string[] {
  const line = 'x'.repeat(75);
  return Array.from({ length: Math.ceil(bytes / 77) }, (_, i) => `${String(i).padStart(8, '0')} ${line}`);
}

describe('queue/maildir: real storage faults (root: mount; else unshare -Urm)', () => {
  const F12 = 'F12 full disk during delivery: a message bigger than a 256 KiB tmpfs gets 452';
  it(F12, async () => {
    await with_mount_privilege(F12, async () => {
      const dir = tempdir('qpts-md-full-');
      mount_tmpfs(dir, '256k');
      const { runtime, logged } = await setup(`queue/maildir ${dir}`);
      const { client, done } = await open_session(runtime);
      const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: big', '', ...big_body(400 * 1024)]);
      expect([451, 452]).toContain(r.code);
      expect(r.text).toBe('queue error (write)');
      expect(files(path.join(dir, 'new'))).toEqual([]);
      expect(files(path.join(dir, 'tmp'))).toEqual([]);
      expect(logged.some((l) => /queue error \(write\): .*\/tmp\/.*ENOSPC/.test(l))).toBe(true);
      // the space is free again: the next message is queued
      expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: small', '', 'hi'])).code).toBe(250);
      expect(files(path.join(dir, 'new'))).toHaveLength(1);
      await client.cmd('QUIT');
      await done;
    });
  });

  const F11 = 'F11 disk already full: a small message gets 452, after freeing space 250';
  it(F11, async () => {
    await with_mount_privilege(F11, async () => {
      const dir = tempdir('qpts-md-full-');
      mount_tmpfs(dir, '256k');
      const { runtime } = await setup(`queue/maildir ${dir}`);
      const filler = path.join(dir, 'filler');
      const chunk = Buffer.alloc(4096, 0x61);
      const fh = await fsp.open(filler, 'w');
      try {
        for (;;) await fh.write(chunk);
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        await fh.close();
      }
      const { client, done } = await open_session(runtime);
      const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: small', '', 'hi']);
      expect([451, 452]).toContain(r.code);
      expect(r.text).toMatch(/^queue error \((write|open|fsync)\)$/);
      expect(files(path.join(dir, 'new'))).toEqual([]);
      expect(files(path.join(dir, 'tmp'))).toEqual([]);
      rmSync(filler);
      expect((await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: small', '', 'hi'])).code).toBe(250);
      await client.cmd('QUIT');
      await done;
    });
  });

  const F14 = 'F14 read-only maildir: 452, nothing stored, the session goes on';
  it(F14, async () => {
    await with_mount_privilege(F14, async () => {
      const dir = tempdir('qpts-md-ro-');
      mkdirSync(path.join(dir, 'md'));
      const md = path.join(dir, 'md');
      const { runtime } = await setup(`queue/maildir ${md}`);
      const b = sh('mount', ['--bind', md, md]);
      if (!b.ok) throw new Error(`bind mount failed: ${b.err}`);
      cleanups.push(() => void sh('umount', [md]));
      const ro = sh('mount', ['-o', 'remount,bind,ro', md]);
      if (!ro.ok) throw new Error(`read-only remount failed: ${ro.err}`);
      const { client, done } = await open_session(runtime);
      const r = await send(client, '<a@b.test>', ['<x@example.test>'], ['Subject: ro', '', 'hi']);
      expect(r).toMatchObject({ code: 452, text: 'queue error (open)' });
      expect(files(path.join(md, 'new'))).toEqual([]);
      expect(files(path.join(md, 'tmp'))).toEqual([]);
      expect(await client.cmd('NOOP')).toMatchObject({ code: 250 });
      await client.cmd('QUIT');
      await done;
    });
  });
});
