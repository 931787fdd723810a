// The logging plugins: warn, devnull, file, syslog, and the per-plugin `loglevel` argument.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  LOGCRIT,
  LOGDEBUG,
  LOGEMERG,
  LOGERROR,
  LOGINFO,
  LOGNOTICE,
  LOGWARN,
  Qpsmtpd,
  Runtime,
  type Plugin,
} from '../../lib/index.js';
import { strftime } from '../../lib/strftime.js';
import { stderr_lines as all_stderr_lines } from '../lib/harness.js';

const PLUGINS = path.resolve('plugins');
const pid = process.pid;

let root: string;
let runtimes: Runtime[];
let captured: string[];
let cleanups: Array<() => void | Promise<void>>;

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'qpsmtpd-logging-'));
  runtimes = [];
  captured = [];
  cleanups = [];
});

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const rt of runtimes) {
    for (const p of rt.plugins) await (p as Plugin & { close?: () => Promise<void> }).close?.();
  }
  for (const c of cleanups.reverse()) await c();
  rmSync(root, { recursive: true, force: true });
});

interface Setup {
  logging?: string[];
  plugins?: string[];
  loglevel?: string;
  plugin_dirs?: string[];
}

/** A config dir with the given files, and a loaded Runtime whose built-in logger is captured. */
async function start(setup: Setup): Promise<Runtime> {
  const config_dir = mkdtempSync(path.join(root, 'config-'));
  const put = (name: string, lines: string[] | undefined) => {
    if (lines) writeFileSync(path.join(config_dir, name), lines.join('\n') + '\n');
  };
  put('logging', setup.logging);
  put('plugins', setup.plugins ?? []);
  put('loglevel', setup.loglevel !== undefined ? [setup.loglevel] : undefined);
  put('plugin_dirs', setup.plugin_dirs ?? [PLUGINS]);
  const rt = new Runtime({ config_dir, package_config_dir: null, env: {}, log_writer: (l) => captured.push(l) });
  runtimes.push(rt);
  await rt.load();
  return rt;
}

function plugin<T = any>(rt: Runtime, name: string): T {
  const p = rt.plugins.find((x) => x.plugin_name() === name);
  if (!p) throw new Error(`no plugin ${name}`);
  return p as T;
}

/** Lines written to process.stderr from now on that look like log lines of this process. */
const stderr_lines = () => all_stderr_lines((l) => l.startsWith(`${pid}`));

async function session(rt: Runtime): Promise<Qpsmtpd> {
  const qp = new Qpsmtpd(rt);
  await qp.run_hooks('connect');
  return qp;
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');
const lines_of = (p: string) => read(p).split('\n').filter(Boolean);
const messages = (p: string) => lines_of(p).map((l) => l.replace(/^.*?\]: /, ''));

describe('strftime', () => {
  const t = new Date(Date.UTC(2024, 0, 5, 3, 4, 5)); // a Friday
  it.each([
    ['%a %A %b %B', 'Fri Friday Jan January'],
    ['%d|%e|%H|%I|%j|%m|%M|%p|%S', '05| 5|03|03|005|01|04|AM|05'],
    ['%T %y %Y %z %Z %%', '03:04:05 24 2024 +0000 GMT %'],
    ['%a %b %d %T %Y', 'Fri Jan 05 03:04:05 2024'],
    ['%F %D %R %h %C %u %w %s', '2024-01-05 01/05/24 03:04 Jan 20 5 5 1704423845'],
    ['%G-W%V %U %W %k|%l|%P', '2024-W01 00 01  3| 3|am'],
    ['%-d %_m %^a %Ey %q', '5  1 FRI 24 %q'],
  ])('%s', (fmt, want) => {
    expect(strftime(fmt, t, { utc: true })).toBe(want);
  });
  it('handles afternoon, ISO weeks at the year edge, and extra conversions', () => {
    expect(strftime('%I %p', new Date(Date.UTC(2024, 5, 1, 15)), { utc: true })).toBe('03 PM');
    expect(strftime('%I', new Date(Date.UTC(2024, 5, 1, 0)), { utc: true })).toBe('12');
    expect(strftime('%G %V', new Date(Date.UTC(2021, 0, 1)), { utc: true })).toBe('2020 53');
    expect(strftime('%G %V', new Date(Date.UTC(2024, 11, 30)), { utc: true })).toBe('2025 01');
    expect(strftime('log-%i-%%i', t, { utc: true, extra: { i: 'ID' } })).toBe('log-ID-%i');
  });
  it('uses local time by default', () => {
    const d = new Date(2024, 6, 8, 9, 10, 11);
    expect(strftime('%Y-%m-%d %H:%M:%S', d)).toBe('2024-07-08 09:10:11');
    expect(strftime('%z', d)).toMatch(/^[+-]\d{4}$/);
  });
});

describe('logging/warn', () => {
  it('writes built-in style lines to stderr up to its level', async () => {
    const err = stderr_lines();
    const rt = await start({ logging: ['logging/warn 5'] });
    const qp = rt.server_qp;
    qp.log(LOGWARN, 'warned', 'twice');
    qp.log(LOGINFO, 'too verbose');
    qp.varlog(LOGNOTICE, 'rcpt', 'some::plugin', 'from a plugin');
    qp.varlog(LOGERROR, 'connect', undefined, 'from a hook');
    qp.varlog(LOGNOTICE, undefined, 'other', 'plugin only');
    expect(err).toEqual([
      `${pid} warned twice`,
      `${pid} (rcpt) some::plugin: from a plugin`,
      `${pid} (connect) running plugin: from a hook`,
      `${pid} other: plugin only`,
    ]);
    expect(captured).toEqual([]); // the built-in logger stays quiet
  });

  it('takes LOG* names, defaults to LOGWARN', async () => {
    const err = stderr_lines();
    const rt = await start({ logging: ['logging/warn LOGINFO'] });
    rt.server_qp.log(LOGINFO, 'info');
    rt.server_qp.log(LOGDEBUG, 'debug');
    const rt2 = await start({ logging: ['logging/warn'] });
    rt2.server_qp.log(LOGWARN, 'warn');
    rt2.server_qp.log(LOGNOTICE, 'notice');
    expect(err).toEqual([`${pid} Loaded logging/warn LOGINFO`, `${pid} info`, `${pid} warn`]);
  });

  it('skips its own messages, which other logging plugins still get', async () => {
    const err = stderr_lines();
    const file = path.join(root, 'all.log');
    await start({ logging: [`logging/file loglevel LOGDEBUG ${file}`, 'logging/warn 7'] });
    expect(err.some((l) => l.includes('Initializing logging::warn plugin'))).toBe(false);
    expect(err).toContain(`${pid} Loaded logging/warn 7`);
    await plugin(runtimes[0]!, 'logging::file').close();
    expect(messages(file)).toContain('Initializing logging::warn plugin');
  });

  it('refuses a bad level at start-up', async () => {
    await expect(start({ logging: ['logging/warn LOGLOUD'] })).rejects.toThrow(/logging::warn.*LOGLOUD/);
    await expect(start({ logging: ['logging/warn 4 5'] })).rejects.toThrow(/logging::warn/);
  });
});

describe('logging/devnull', () => {
  it('silences the built-in logger', async () => {
    const err = stderr_lines();
    const plain = await start({ loglevel: '7' });
    plain.server_qp.log(LOGWARN, 'visible');
    expect(captured).toEqual([`${pid} visible`]);
    captured.length = 0;
    const rt = await start({ logging: ['logging/devnull'], loglevel: '7' });
    rt.server_qp.log(LOGEMERG, 'gone');
    rt.server_qp.log(LOGDEBUG, 'gone too');
    expect(captured).toEqual([]);
    expect(err).toEqual([]);
  });
});

describe('logging/file', () => {
  it('writes `<tsformat> <hostname>[<pid>]: <msg>` lines to a strftime path', async () => {
    const rt = await start({ logging: [`logging/file loglevel LOGINFO tsformat %Y-%m-%dT%T ${root}/q-%Y%m%d.log`] });
    rt.server_qp.log(LOGWARN, 'hello', 'world');
    rt.server_qp.varlog(LOGINFO, 'rcpt', 'other::plugin', 'plugin text');
    rt.server_qp.log(LOGDEBUG, 'not logged');
    await plugin(rt, 'logging::file').close();
    const file = path.join(root, `q-${strftime('%Y%m%d')}.log`);
    const lines = lines_of(file);
    const host = hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    for (const l of lines) expect(l).toMatch(new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d ${host}\\[${pid}\\]: `));
    expect(messages(file)).toEqual([`Loaded logging/file loglevel LOGINFO tsformat %Y-%m-%dT%T ${root}/q-%Y%m%d.log`, 'hello world', 'plugin text']);
    expect(captured).toEqual([]);
  });

  it('uses the scalar-localtime stamp by default and LOGWARN as level', async () => {
    const file = path.join(root, 'plain.log');
    const rt = await start({ logging: [`logging/file ${file}`] });
    rt.server_qp.log(LOGWARN, 'w');
    rt.server_qp.log(LOGNOTICE, 'n');
    await plugin(rt, 'logging::file').close();
    expect(lines_of(file)).toHaveLength(1);
    expect(lines_of(file)[0]).toMatch(/^[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4} \S+\[\d+\]: w$/);
  });

  it('reopens when the expanded name changes', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date(2024, 0, 2, 3, 4, 5));
    const rt = await start({ logging: [`logging/file ${root}/t-%H%M%S.log`] });
    const p = plugin(rt, 'logging::file');
    rt.server_qp.log(LOGWARN, 'a');
    vi.setSystemTime(new Date(2024, 0, 2, 3, 4, 6));
    rt.server_qp.log(LOGWARN, 'b');
    rt.server_qp.log(LOGWARN, 'c');
    expect(p._shared.live.size).toBe(1); // the old file was let go
    vi.setSystemTime(new Date(2024, 0, 2, 3, 5, 0));
    rt.server_qp.log(LOGERROR, 'd');
    await p.close();
    expect(messages(path.join(root, 't-030405.log'))).toEqual(['a']);
    expect(messages(path.join(root, 't-030406.log'))).toEqual(['b', 'c']);
    expect(messages(path.join(root, 't-030500.log'))).toEqual(['d']);
    expect(lines_of(path.join(root, 't-030500.log'))[0]).toMatch(/^Tue Jan 02 03:05:00 2024 /);
  });

  it('nosplit keeps a session in the file it started with', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date(2024, 0, 2, 3, 4, 5));
    const rt = await start({ logging: [`logging/file nosplit ${root}/n-%S.log`] });
    const s = await session(rt);
    s.log(LOGWARN, 'session 1');
    vi.setSystemTime(new Date(2024, 0, 2, 3, 4, 7));
    s.log(LOGWARN, 'session 2');
    rt.server_qp.log(LOGWARN, 'server');
    await plugin(rt, 'logging::file').close();
    expect(messages(path.join(root, 'n-05.log'))).toEqual(['session 1', 'session 2']);
    expect(messages(path.join(root, 'n-07.log'))).toEqual(['server']);
  });

  it('%i gives each session its own file; `parent` outside sessions', async () => {
    const rt = await start({ logging: [`logging/file ${root}/s-%i.log`] });
    const p = plugin(rt, 'logging::file');
    rt.server_qp.log(LOGWARN, 'server');
    const s1 = await session(rt);
    const s2 = await session(rt);
    const id1 = s1.connection.notes('logging-session-id');
    const id2 = s2.connection.notes('logging-session-id');
    expect(id1).toMatch(new RegExp(`^\\d{8,}-${String(pid).padStart(4, '0')}-1$`));
    expect(id2).toMatch(/-2$/);
    expect(s1.transaction.notes('logging-session-id')).toBe(id1);
    s1.log(LOGWARN, 'one');
    s2.log(LOGWARN, 'two');
    await s1.reset_transaction(); // MAIL/RSET: the session keeps its id (qpsmtpd would fall back to `parent`)
    s1.log(LOGERROR, 'one again');
    expect(p._shared.live.size).toBe(3);
    await s1.run_hooks('post-connection');
    expect(p._shared.live.size).toBe(2); // s1's file is closed once the session is over
    await p.close();
    expect(messages(path.join(root, 's-parent.log'))).toEqual(['server']);
    expect(messages(path.join(root, `s-${id1}.log`))).toEqual(['one', 'one again']);
    expect(messages(path.join(root, `s-${id2}.log`))).toEqual(['two']);
  });

  it('pipes lines into a command', async () => {
    const out = path.join(root, 'piped.log');
    const rt = await start({ logging: [`logging/file |cat > ${out}`] });
    rt.server_qp.log(LOGWARN, 'through');
    rt.server_qp.log(LOGERROR, 'the pipe');
    await plugin(rt, 'logging::file').close();
    expect(messages(out)).toEqual(['through', 'the pipe']);
  });

  it('reopen: a fresh command per session, ended with the session', async () => {
    const out = path.join(root, 'alarm.log');
    const rt = await start({ logging: [`logging/file reopen |cat >> ${out}; echo closed >> ${out}`] });
    const s = await session(rt);
    s.log(LOGWARN, 'alarm');
    await s.run_hooks('post-connection');
    await until(() => read(out).includes('closed'), 'the command to finish');
    expect(messages(out)).toEqual(['alarm', 'closed']);
  });

  it('reopen() closes and flushes, the next line opens the file again', async () => {
    const file = path.join(root, 'rot.log');
    const rt = await start({ logging: [`logging/file ${file}`] });
    const p = plugin(rt, 'logging::file');
    rt.server_qp.log(LOGWARN, 'before');
    await p.reopen();
    expect(messages(file)).toEqual(['before']);
    rmSync(file); // logrotate moved it away
    rt.server_qp.log(LOGWARN, 'after');
    await p.close();
    expect(messages(file)).toEqual(['after']);
    rt.server_qp.log(LOGWARN, 'closed: dropped');
    expect(messages(file)).toEqual(['after']);
  });

  it('reports a file it cannot open through the built-in logger, once', async () => {
    const rt = await start({ logging: [`logging/file ${root}/missing/dir/x.log`] });
    rt.server_qp.log(LOGWARN, 'lost 1');
    rt.server_qp.log(LOGWARN, 'lost 2');
    expect(captured).toHaveLength(1);
    expect(captured[0]).toMatch(new RegExp(`^${pid} logging::file: Error opening log output to path .*/missing/dir/x.log: ENOENT`));
  });

  it('refuses malformed arguments at start-up', async () => {
    await expect(start({ logging: ['logging/file'] })).rejects.toThrow(/logging::file.*missing the log file path/);
    await expect(start({ logging: ['logging/file loglevel'] })).rejects.toThrow(/logging::file.*'loglevel' needs a value/);
    await expect(start({ logging: ['logging/file loglevel LOUD x.log'] })).rejects.toThrow(/logging::file.*invalid loglevel 'LOUD'/);
    await expect(start({ logging: ['logging/file tsformat'] })).rejects.toThrow(/logging::file.*'tsformat' needs a value/);
    await expect(start({ logging: ['logging/file |'] })).rejects.toThrow(/logging::file.*empty log command/);
  });
});

const has_logger = spawnSync('logger', ['--help'], { encoding: 'utf8' }).stdout?.includes('--prio-prefix') ?? false;
const has_python = spawnSync('python3', ['-c', 'import socket; socket.AF_UNIX'], { encoding: 'utf8' }).status === 0;

const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
while True:
    d = s.recv(65536)
    print(d.decode("utf-8", "replace").replace("\\n", " "), flush=True)
`;

/** A Unix datagram socket (what /dev/log is), served by python; its datagrams collect in `got`. */
async function unix_listener(): Promise<{ path: string; got: string[] }> {
  const sock = path.join(root, 'log.sock');
  const got: string[] = [];
  const child: ChildProcess = spawn('python3', ['-u', '-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => {
    child.kill();
  });
  let buf = '';
  let ready = false;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!ready && line === 'ready') ready = true;
      else got.push(line);
    }
  });
  await until(() => ready, 'the python listener');
  return { path: sock, got };
}

describe('logging/syslog', () => {
  it('has util-linux logger with --prio-prefix and python3 for the socket listener (.ci/run installs them)', () => {
    expect(has_logger).toBe(true);
    expect(has_python).toBe(true);
  });
  it('sends <PRI> messages to a Unix datagram socket', async () => {
    const { path: sock, got } = await unix_listener();
    const rt = await start({
      logging: [
        `logging/syslog loglevel LOGINFO socket ${sock}`,
        `logging/syslog:2 loglevel 3 facility LOG_LOCAL3 ident qp-test priority LOG_ALERT socket ${sock}`,
      ],
    });
    const qp = rt.server_qp;
    qp.log(LOGWARN, 'warned');
    qp.varlog(LOGINFO, 'rcpt', 'some::plugin', 'informed');
    qp.log(LOGDEBUG, 'not sent');
    qp.log(LOGERROR, 'to both');
    await until(() => got.length >= 5, 'five datagrams');
    const seen = got.map((d) => {
      const m = /^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ([\w.-]+)\[(\d+)\]: (.*)$/.exec(d);
      expect(m, d).not.toBeNull();
      expect(m![3]).toBe(String(pid));
      return [Number(m![1]), m![2], m![4]];
    });
    // mail = 2, local3 = 19; LOGWARN -> warning (4), LOGINFO -> info (6), LOGERROR -> err (3)
    expect(seen).toEqual(
      expect.arrayContaining([
        [2 * 8 + 6, 'qpsmtpd', `Loaded logging/syslog loglevel LOGINFO socket ${sock}`],
        [2 * 8 + 4, 'qpsmtpd', 'warned'],
        [2 * 8 + 6, 'qpsmtpd', 'informed'],
        [2 * 8 + 3, 'qpsmtpd', 'to both'],
        [19 * 8 + 1, 'qp-test', 'to both'],
      ]),
    );
    await plugin(rt, 'logging::syslog').close();
    await plugin(rt, 'logging::syslog_3a2').close();
    // + `Loaded logging/syslog:2 …` at LOGINFO, sent by the first instance only
    await until(() => got.length >= 6, 'the sixth datagram');
    expect(got).toHaveLength(6);
    expect(got.some((d) => d.includes('not sent'))).toBe(false);
  });

  it('sends to a UDP syslog server with logsock udp:host:port', async () => {
    const server: DgramSocket = createSocket('udp4');
    const got: string[] = [];
    server.on('message', (m) => got.push(m.toString('utf8')));
    await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const port = server.address().port;
    const rt = await start({ logging: [`logging/syslog logsock udp:127.0.0.1:${port} facility local7`] });
    rt.server_qp.log(LOGCRIT, 'critical');
    await until(() => got.some((m) => m.endsWith('critical')), 'the UDP datagram');
    await plugin(rt, 'logging::syslog').close();
    const m = got.find((x) => x.endsWith('critical'))!;
    expect(m).toMatch(new RegExp(`^<${23 * 8 + 2}>[A-Z][a-z]{2} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d \\S+ qpsmtpd\\[${pid}\\]: critical$`));
  });

  it('refuses a missing socket, a missing logger and malformed arguments at start-up', async () => {
    await expect(start({ logging: [`logging/syslog socket ${root}/nope.sock`] })).rejects.toThrow(
      /logging::syslog.*nope\.sock is not a syslog socket/,
    );
    await expect(start({ logging: ['logging/syslog loglevel'] })).rejects.toThrow(/logging::syslog.*malformed arguments/);
    await expect(start({ logging: ['logging/syslog colour red'] })).rejects.toThrow(/logging::syslog.*unknown argument 'colour'/);
    await expect(start({ logging: ['logging/syslog facility LOG_NOWHERE'] })).rejects.toThrow(/unknown facility 'LOG_NOWHERE'/);
    await expect(start({ logging: ['logging/syslog logsock console'] })).rejects.toThrow(/logsock 'console'/);

    const sock = path.join(root, 'stream.sock');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(sock, () => r()));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const saved = process.env.PATH;
    const empty = path.join(root, 'empty-bin');
    mkdirSync(empty);
    process.env.PATH = empty;
    try {
      await expect(start({ logging: [`logging/syslog socket ${sock}`] })).rejects.toThrow(/'logger' command .* was not found/);
    } finally {
      process.env.PATH = saved;
    }
  });
});

describe('per-plugin loglevel argument', () => {
  it('replaces (N) or shifts (+N/-N, clamped) the levels a plugin logs at', async () => {
    const dir = path.join(root, 'myplugins');
    mkdirSync(dir);
    writeFileSync(
      path.join(dir, 'levels.ts'),
      `import { Plugin, LOGDEBUG, LOGINFO, LOGERROR } from 'qpsmtpd-ts';
export default class extends Plugin {
  register(...args: string[]) {
    this.parse_args(args, {});
    this.log(LOGERROR, 'error');
    this.log(LOGINFO, 'info');
    this.log(LOGDEBUG, 'debug');
  }
}
`,
    );
    writeFileSync(
      path.join(dir, 'capture.ts'),
      `import { Plugin, DECLINED } from 'qpsmtpd-ts';
export default class extends Plugin {
  hook_logging(_t: unknown, level: number, _hook: unknown, plugin: string | undefined, text: string) {
    if (plugin?.startsWith('levels')) ((globalThis as any).__levels ??= []).push([plugin, level, text]);
    return DECLINED;
  }
}
`,
    );
    const g = globalThis as { __levels?: Array<[string, number, string]> };
    g.__levels = [];
    await start({
      plugin_dirs: [dir, PLUGINS],
      logging: ['capture'],
      plugins: ['levels', 'levels:1 loglevel +1', 'levels:2 loglevel -1', 'levels:3 loglevel 5', 'levels:4 loglevel -9', 'levels:5 loglevel +9', 'levels:6 loglevel x'],
    });
    const by = (name: string) => g.__levels!.filter(([p]) => p === name).map(([, l, t]) => `${t}=${l}`);
    expect(by('levels')).toEqual(['error=3', 'info=6', 'debug=7']);
    expect(by('levels_3a1')).toEqual(['error=4', 'info=7', 'debug=7']);
    expect(by('levels_3a2')).toEqual(['error=2', 'info=5', 'debug=6']);
    expect(by('levels_3a3')).toEqual(['error=5', 'info=5', 'debug=5']);
    expect(by('levels_3a4')).toEqual(['error=0', 'info=0', 'debug=0']);
    expect(by('levels_3a5')).toEqual(['error=7', 'info=7', 'debug=7']);
    // an invalid setting is reported once and then ignored
    expect(by('levels_3a6')).toEqual(['invalid levels_3a6 loglevel setting (x)=3', 'error=3', 'info=6', 'debug=7']);
  });

  it('the adjusted level is what logging plugins filter on', async () => {
    const err = stderr_lines();
    const dir = path.join(root, 'myplugins');
    mkdirSync(dir);
    writeFileSync(
      path.join(dir, 'noisy.ts'),
      `import { Plugin, LOGINFO } from 'qpsmtpd-ts';
export default class extends Plugin {
  register(...args: string[]) { this.parse_args(args, {}); this.log(LOGINFO, 'said at info'); }
}
`,
    );
    await start({ plugin_dirs: [dir, PLUGINS], logging: ['logging/warn 5'], plugins: ['noisy loglevel -1', 'noisy:2'] });
    expect(err).toEqual([`${pid} noisy: said at info`]);
  });
});
