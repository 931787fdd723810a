import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { cdb_get, cdb_hash, cdb_make, cdb_parse } from '../lib/cdb.js';
import { Config, ConfigError, type ConfigOptions } from '../lib/config.js';
import { LOGDEBUG, LOGERROR, LOGWARN } from '../lib/constants.js';

let root: string;
let cli: string; // --config
let envdir: string; // $QPSMTPD_CONFIG
let pkg: string; // the package's config/
let qmail: string; // $QMAIL/control
let logs: Array<[number, string]>;

function put(dir: string, name: string, text: string | Buffer): string {
  const p = join(dir, name);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}

function mk(opts: ConfigOptions = {}): Config {
  return new Config({
    dir: cli,
    env: { QPSMTPD_CONFIG: envdir, QMAIL: join(root, 'qmail') },
    packageDir: pkg,
    log: (level, msg) => logs.push([level, msg]),
    revalidate_ms: 0,
    ...opts,
  });
}

const messages = (level: number) => logs.filter(([l]) => l === level).map(([, m]) => m);

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'qpsmtpd-config-'));
  cli = join(root, 'cli');
  envdir = join(root, 'env');
  pkg = join(root, 'pkg');
  qmail = join(root, 'qmail', 'control');
  for (const d of [cli, envdir, pkg, qmail]) mkdirSync(d, { recursive: true });
  logs = [];
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  vi.restoreAllMocks();
});

describe('qpsmtpd t/qpsmtpd-config.t', () => {
  it('log: warnings go to stderr as "<pid> <msg>" when no logger is given; debug is dropped', () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const c = new Config({ env: {} });
    c.log(LOGWARN, 'test log message');
    c.log(LOGDEBUG, 'quiet');
    expect(write.mock.calls.map((a) => a[0])).toEqual([`${process.pid} test log message\n`]);
  });

  it('config_dir defaults to /var/qmail/control when nothing else has the file, and is memoised', () => {
    const c = new Config({ env: {}, packageDir: pkg });
    const name = `bogus-${process.pid}-${Date.now()}`;
    expect(c.config_dir(name)).toBe('/var/qmail/control');
    put(pkg, name, 'x\n');
    expect(c.config_dir(name)).toBe('/var/qmail/control');
    c.clear_cache();
    expect(c.config_dir(name)).toBe(pkg);
  });

  it('config_dir uses $QMAIL/control as the last resort', () => {
    expect(mk().config_dir('nowhere')).toBe(qmail);
  });

  it('clear_cache drops cached values and directory memos', () => {
    const c = mk({ revalidate_ms: 1e9 });
    put(qmail, 'foo', 'one\n');
    expect(c.get('foo')).toEqual(['one']);
    put(cli, 'foo', 'two\n');
    expect(c.get('foo')).toEqual(['one']);
    expect(c.config_dir('foo')).toBe(qmail);
    c.clear_cache();
    expect(c.config_dir('foo')).toBe(cli);
    expect(c.get('foo')).toEqual(['two']);
  });

  it('defaults: me is the host name, timeout 1200, others undefined, a zero default is kept', () => {
    const c = mk();
    expect(c.default('me')).toBe(hostname());
    expect(c.default('timeout')).toBe('1200');
    expect(c.default('undefined-test')).toBeUndefined();
    expect(c.default('toString')).toBeUndefined();
    c.defaults['zero-test'] = '0';
    expect(c.default('zero-test')).toBe('0');
    expect(c.get('zero-test')).toEqual(['0']);
    expect(c.get('me')).toEqual([hostname()]);
    expect(c.get('timeout')).toEqual(['1200']);
    expect(c.get('undefined-test')).toEqual([]);
  });

  it('get reads a file (no trailing newline needed); a file overrides the default; missing is []', () => {
    put(pkg, 'me', 'host.example.org');
    put(qmail, 'timeout', '30\n');
    const c = mk();
    expect(c.get('me')).toEqual(['host.example.org']);
    expect(c.get('timeout')).toEqual(['30']);
    expect(c.get('not-me')).toEqual([]);
  });

  it('get_map reads <name>.cdb', () => {
    put(pkg, 'users', '');
    put(pkg, 'users.cdb', cdb_make([['!example.com-', 'example.com\u000089\u000089\u0000/x\u0000-\u0000'], ['', '-']]));
    const m = mk().get_map('users');
    expect(m.size).toBe(2);
    expect(m.get('!example.com-')?.split('\0')[0]).toBe('example.com');
  });

  it('get_map of a missing file is an empty map, logged at LOGDEBUG', () => {
    const m = mk().get_map('morercpthosts');
    expect(m.size).toBe(0);
    expect(messages(LOGDEBUG)).toContain(`File ${join(qmail, 'morercpthosts.cdb')} does not exist`);
  });

  it('from_file drops comments and blank lines and trims (t/config/test_config_file)', () => {
    const f = put(root, 'test_config_file',
      '# a comment line that should get stripped\n # another comment line that should get stripped\n \n  1st line with content  \n');
    expect(mk().from_file('test_config_file', f)).toEqual(['1st line with content']);
  });

  it('relayclients lines are trimmed', () => {
    put(pkg, 'relayclients',
      '# used by plugins/relay\n127.0.0.1 \n# leading/trailing whitespace is ignored\n 192.0. \n#\n' +
      '2001:0DB8\n2001:DB8::1\n2001:DB8::1/32\n2001:0DB8:0000:0000:0000:0000:0000:0001\n');
    expect(mk().get('relayclients').sort().join(',')).toBe(
      '127.0.0.1,192.0.,2001:0DB8,2001:0DB8:0000:0000:0000:0000:0000:0001,2001:DB8::1,2001:DB8::1/32',
    );
  });
});

describe('file format', () => {
  it('keeps # after content, inner whitespace and order; handles CRLF', () => {
    put(qmail, 'x', 'a # not a comment\r\n\t\r\n  b  c\t\r\n#c\r\n\f\nz');
    expect(mk().get('x')).toEqual(['a # not a comment', 'b  c', 'z']);
  });

  it('returns a copy: changing the result does not change the cache', () => {
    put(qmail, 'x', 'a\n');
    const c = mk({ revalidate_ms: 1e9 });
    c.get('x').push('b');
    expect(c.get('x')).toEqual(['a']);
  });
});

describe('directory precedence', () => {
  it('--config > $QPSMTPD_CONFIG > package config/ > $QMAIL/control', () => {
    for (const [d, v] of [[cli, 'cli'], [envdir, 'env'], [pkg, 'pkg'], [qmail, 'qmail']] as const) put(d, 'n', v);
    expect(mk().get('n')).toEqual(['cli']);
    unlinkSync(join(cli, 'n'));
    expect(mk().get('n')).toEqual(['env']);
    unlinkSync(join(envdir, 'n'));
    expect(mk().get('n')).toEqual(['pkg']);
    unlinkSync(join(pkg, 'n'));
    expect(mk().get('n')).toEqual(['qmail']);
  });

  it('is decided per file name', () => {
    put(pkg, 'a', 'from pkg');
    put(qmail, 'b', 'from qmail');
    put(envdir, 'c', 'from env');
    const c = mk();
    expect([c.get('a'), c.get('b'), c.get('c')]).toEqual([['from pkg'], ['from qmail'], ['from env']]);
    expect([c.config_dir('a'), c.config_dir('b'), c.config_dir('c')]).toEqual([pkg, qmail, envdir]);
  });

  it('skips unset directories; QMAIL defaults to /var/qmail; env defaults to process.env', () => {
    expect(new Config({ env: {} }).config_dir(`none-${Date.now()}`)).toBe('/var/qmail/control');
    vi.stubEnv('QPSMTPD_CONFIG', envdir);
    try {
      put(envdir, 'p', 'x');
      expect(new Config().config_dir('p')).toBe(envdir);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('$include', () => {
  it('includes a file in place, resolving a relative target with its own config_dir', () => {
    put(cli, 'plugins', 'first\n$include more_plugins\nlast\n');
    put(qmail, 'more_plugins', 'm1\n  m2  \n');
    expect(mk().get('plugins')).toEqual(['first', 'm1', 'm2', 'last']);
  });

  it('includes an absolute path as is', () => {
    const abs = put(root, 'elsewhere/list', 'abs1\n');
    put(pkg, 'x', `$include ${abs}\nx2`);
    expect(mk().get('x')).toEqual(['abs1', 'x2']);
  });

  it('includes a directory: regular files, sorted, no dot-files', () => {
    put(pkg, 'x', 'top\n$include x.d\n');
    put(pkg, 'x.d/b', 'b\n');
    put(pkg, 'x.d/a', 'a\n');
    put(pkg, 'x.d/.hidden', 'hidden\n');
    put(pkg, 'x.d/sub/c', 'c\n');
    expect(mk().get('x')).toEqual(['top', 'a', 'b']);
  });

  it('follows nested includes', () => {
    put(pkg, 'x', '1\n$include y\n4');
    put(pkg, 'y', '2\n$include z');
    put(envdir, 'z', '3');
    expect(mk().get('x')).toEqual(['1', '2', '3', '4']);
  });

  it('a missing target adds nothing (with a warning)', () => {
    put(pkg, 'x', 'a\n$include nothere\nb');
    expect(mk().get('x')).toEqual(['a', 'b']);
    expect(messages(LOGWARN)).toEqual([`$include target ${join(qmail, 'nothere')} (from ${join(pkg, 'x')}) does not exist`]);
  });

  it('a file including itself yields nothing (so the default applies), with the chain logged', () => {
    const a = put(pkg, 'timeout', 'a\n$include timeout');
    expect(mk().get('timeout')).toEqual(['1200']);
    expect(messages(LOGERROR)).toEqual(['Circular $include reference in config timeout:', `From ${a}:`, `  includes ${a}`]);
  });

  it('in a longer cycle only the file holding the offending $include is dropped', () => {
    const top = put(pkg, 'top', 't1\n$include mid\nt2');
    const mid = put(pkg, 'mid', 'm1\n$include top');
    expect(mk().get('top')).toEqual(['t1', 't2']);
    expect(messages(LOGERROR)).toEqual([
      'Circular $include reference in config top:',
      `From ${top}:`,
      `  includes ${mid}`,
      `  includes ${top}`,
    ]);
  });

  it('including the same file twice counts as circular, as in qpsmtpd', () => {
    put(pkg, 'x', '$include y\n$include y');
    put(pkg, 'y', 'y');
    expect(mk().get('x')).toEqual([]);
    expect(messages(LOGERROR)[0]).toBe('Circular $include reference in config x:');
  });

  it('a malformed $include throws a ConfigError naming file and line', () => {
    const f = put(pkg, 'x', '# comment\n\nok\n$include\n');
    const c = mk();
    let err: unknown;
    try {
      c.get('x');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ file: f, line: 4 });
    expect((err as Error).message).toBe(
      `${f} line 4: malformed $include line "$include": write "$include <file or directory>" with exactly one path (no spaces, nothing after it)`,
    );
  });

  it('trailing garbage after the target is malformed too, also inside an included file', () => {
    put(pkg, 'x', '$include y');
    const y = put(pkg, 'y', 'a\n  $include some file  \n');
    expect(() => mk().get('x')).toThrow(`${y} line 2: malformed $include line "$include some file"`);
  });

  it('a line merely starting with "$include" as part of a word is an ordinary line', () => {
    put(pkg, 'x', '$includes_are_fun');
    expect(mk().get('x')).toEqual(['$includes_are_fun']);
  });
});

describe('unreadable files (fails for root too)', () => {
  it('a directory where a file is expected: warning naming the file and error, []', () => {
    mkdirSync(join(qmail, 'timeout'));
    expect(mk().get('timeout')).toEqual(['1200']);
    const w = messages(LOGWARN);
    expect(w).toHaveLength(1);
    expect(w[0]).toMatch(new RegExp(`^could not open configfile ${join(qmail, 'timeout')}: .*EISDIR`));
  });

  it('a symlink loop: warning, [] (and its directory is still the one chosen)', () => {
    symlinkSync(join(pkg, 'loop'), join(pkg, 'loop'));
    put(qmail, 'loop', 'should not be used');
    const c = mk();
    expect(c.get('loop')).toEqual([]);
    expect(c.config_dir('loop')).toBe(pkg);
    expect(messages(LOGWARN)[0]).toMatch(/^could not open configfile .*loop: .*ELOOP/);
  });

  it('an unreadable included file contributes nothing', () => {
    const loop = join(root, 'loop');
    symlinkSync(loop, loop);
    put(pkg, 'x', `a\n$include ${loop}\nb`);
    expect(mk().get('x')).toEqual(['a', 'b']);
    expect(messages(LOGWARN)[0]).toMatch(new RegExp(`^could not open configfile ${loop}: .*ELOOP`));
  });

  it('get_map of a directory or a corrupt file: LOGERROR, empty map', () => {
    mkdirSync(join(qmail, 'm1.cdb'));
    put(qmail, 'm2.cdb', Buffer.alloc(100));
    const c = mk();
    expect(c.get_map('m1').size).toBe(0);
    expect(c.get_map('m2').size).toBe(0);
    const e = messages(LOGERROR);
    expect(e[0]).toMatch(/^could not read cdb file .*m1\.cdb: .*EISDIR/);
    expect(e[1]).toMatch(/^could not read cdb file .*m2\.cdb: cdb: /);
  });
});

describe('caching and reload', () => {
  it('an edit is picked up without a restart', () => {
    const f = put(qmail, 'x', 'one\n');
    const c = mk();
    expect(c.get('x')).toEqual(['one']);
    writeFileSync(f, 'two\n'); // same size: mtime/ctime tell
    utimesSync(f, new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect(c.get('x')).toEqual(['two']);
    unlinkSync(f);
    expect(c.get('x')).toEqual([]);
  });

  it('re-checks the files at most once per revalidate_ms', () => {
    const f = put(qmail, 'x', 'one\n');
    const now = vi.spyOn(Date, 'now').mockReturnValue(1_000_000);
    const c = mk({ revalidate_ms: 1000 });
    expect(c.get('x')).toEqual(['one']);
    writeFileSync(f, 'three\n');
    now.mockReturnValue(1_000_999);
    expect(c.get('x')).toEqual(['one']);
    now.mockReturnValue(1_001_000);
    expect(c.get('x')).toEqual(['three']);
  });

  it('sees edits of included files and new files in included directories', () => {
    put(pkg, 'x', '$include y\n$include x.d');
    const y = put(pkg, 'y', 'y1\n');
    put(pkg, 'x.d/a', 'a\n');
    const c = mk();
    expect(c.get('x')).toEqual(['y1', 'a']);
    writeFileSync(y, 'y1\ny2\n');
    put(pkg, 'x.d/b', 'b\n');
    expect(c.get('x')).toEqual(['y1', 'y2', 'a', 'b']);
  });

  it('a file appearing in a higher-precedence directory takes over', () => {
    put(qmail, 'x', 'low');
    const c = mk();
    expect(c.get('x')).toEqual(['low']);
    put(cli, 'x', 'high');
    expect(c.get('x')).toEqual(['high']);
    expect(c.config_dir('x')).toBe(cli);
  });

  it('get_map is cached and reloaded on change', () => {
    const f = put(qmail, 'm.cdb', cdb_make([['k', 'v1']]));
    const c = mk();
    const m = c.get_map('m');
    expect(m.get('k')).toBe('v1');
    expect(c.get_map('m')).toBe(m);
    writeFileSync(f, cdb_make([['k', 'v2'], ['k2', 'x']]));
    expect(c.get_map('m').get('k')).toBe('v2');
  });

  it('clear_cache forces a re-read even inside the revalidation window', () => {
    const f = put(qmail, 'x', 'one\n');
    const c = mk({ revalidate_ms: 1e9 });
    expect(c.get('x')).toEqual(['one']);
    writeFileSync(f, 'two\n');
    expect(c.get('x')).toEqual(['one']);
    c.clear_cache();
    expect(c.get('x')).toEqual(['two']);
  });
});

describe('cdb', () => {
  it('hash is djb\'s: 5381 for the empty key', () => {
    expect(cdb_hash(Buffer.alloc(0))).toBe(5381);
    expect(cdb_hash(Buffer.from('a'))).toBe(((5381 * 33) ^ 97) >>> 0);
  });

  it('writer and readers agree; the first of duplicate keys wins', () => {
    const entries: Array<[string, string]> = [];
    for (let i = 0; i < 1000; i++) entries.push([`key${i}`, `value${i}`]);
    entries.push(['dup', 'first'], ['dup', 'second'], ['', 'empty'], ['é', 'ü']);
    const buf = cdb_make(entries);
    const all = cdb_parse(buf);
    expect(all.size).toBe(1003);
    expect(all.get('dup')).toBe('first');
    for (const k of ['key0', 'key999', 'dup', '', 'é']) expect(cdb_get(buf, k)).toBe(all.get(k));
    expect(cdb_get(buf, 'missing')).toBeUndefined();
    expect(cdb_parse(cdb_make([])).size).toBe(0);
  });
});
