// Facts of qpsmtpd's t/qpsmtpd-db.t, t/qpsmtpd-db-file-dbm.t (adapted to the JSON file backend
// that stands in for DBM) and the db parts of t/qpsmtpd-plugin.t, plus the cross-process
// guarantees of the file backend (docs/db.md).
import { execFileSync, fork, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DB, DBError, FileDB, type DBArgs } from '../lib/db.js';
import { PACKAGE_ROOT } from '../lib/paths.js';
import { Plugin, PluginArgumentError } from '../lib/plugin.js';
import { REPO, make_runtime } from './lib/harness.js';

const tmpdir = (tag: string) => mkdtempSync(path.join(os.tmpdir(), `qpts-db-${tag}-`));

/** A FileDB whose warnings are collected instead of printed. */
function file_db(args: DBArgs): { db: FileDB; warned: string[] } {
  const warned: string[] = [];
  return { db: new FileDB({ warn: (m) => warned.push(m), ...args }), warned };
}

function thrown(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

function keyvals(h: Record<string, unknown>): string {
  return Object.keys(h)
    .sort()
    .map((k) => `${k}=${String(h[k])}`)
    .join(';');
}

// -- t/qpsmtpd-plugin.t (db parts) ----------------------------------------------------------

class FakePlugin extends Plugin {
  override plugin_name(): string {
    return '___MockHook___';
  }
}

class FakeDB extends DB {
  readonly given: DBArgs;
  constructor(args: DBArgs) {
    super(args);
    this.given = args;
  }
  override async get() {
    return undefined;
  }
  override async mget() {
    return [];
  }
  override async set() {
    return undefined;
  }
  override async delete() {
    return 0;
  }
  override async get_keys() {
    return [];
  }
  override async size() {
    return 0;
  }
  override async flush() {
    return true;
  }
}

describe('Plugin db helpers (t/qpsmtpd-plugin.t)', () => {
  it('validate_db_args() accepts pairs or one object and refuses an odd list', () => {
    const plugin = new FakePlugin();
    expect(() => plugin.validate_db_args('testkey', 1)).not.toThrow();
    expect(() => plugin.validate_db_args({ testkey: 1 })).not.toThrow();
    expect(() => plugin.validate_db_args()).not.toThrow();
    expect(() => plugin.validate_db_args('bogus')).toThrow(PluginArgumentError);
    expect(thrown(() => plugin.validate_db_args('bogus'))).toBe('Invalid db arguments');
    expect(thrown(() => plugin.db_args('a', 1, 'b'))).toBe('Invalid db arguments');
    expect(thrown(() => plugin.db('bogus'))).toBe('Invalid db arguments');
  });

  it('db_args(): defaults, additions, overrides, remembered', () => {
    const plugin = new FakePlugin();
    expect(keyvals(plugin.db_args())).toBe('cnx_timeout=1;name=___MockHook___');
    expect(keyvals(plugin.db_args('arg1', 1))).toBe('arg1=1;cnx_timeout=1;name=___MockHook___');
    expect(keyvals(plugin.db_args('name', 'bob', 'arg2', 2))).toBe('arg2=2;cnx_timeout=1;name=bob');
    expect(keyvals(plugin.db_args())).toBe('arg2=2;cnx_timeout=1;name=bob');
    // an object works the same; given args replace the stored ones
    expect(keyvals(plugin.db_args({ arg3: 3 }))).toBe('arg3=3;cnx_timeout=1;name=___MockHook___');
    expect(keyvals(plugin.db_args({}))).toBe('arg3=3;cnx_timeout=1;name=___MockHook___');
    // falsy values get the default, as with qpsmtpd's ||=
    expect(keyvals(plugin.db_args({ name: '', cnx_timeout: 0 }))).toBe('cnx_timeout=1;name=___MockHook___');
    // the result is a copy
    plugin.db_args().name = 'changed';
    expect(plugin.db_args().name).toBe('___MockHook___');
  });

  it('db(): returns the DB, caches it, takes class and name; name defaults to the plugin', () => {
    const plugin = new FakePlugin();
    const db = plugin.db('class', FakeDB, 'name', 'testfoo');
    expect(db).toBeInstanceOf(FakeDB);
    expect(plugin._db).toBe(db);
    expect((db as FakeDB).given.name).toBe('testfoo');
    expect(db.name()).toBe('testfoo');
    expect(plugin.db()).toBe(db); // cached; later args are ignored
    expect(plugin.db({ name: 'other' })).toBe(db);
    plugin._db = undefined;
    const db2 = plugin.db({ class: FakeDB });
    expect(db2.name()).toBe('___MockHook___');
    expect((db2 as FakeDB).given.cnx_timeout).toBe(1);
    expect((db2 as FakeDB).given.class).toBeUndefined();
  });

  it('db(): one DB per loaded plugin, shared by its session views', () => {
    const plugin = new FakePlugin();
    const view1 = Object.create(plugin) as Plugin;
    const view2 = Object.create(plugin) as Plugin;
    const db = view1.db({ class: FakeDB });
    expect(view2.db()).toBe(db);
    expect(plugin.db()).toBe(db);
    expect(Object.hasOwn(view1, '_db')).toBe(false);
    expect(plugin._db).toBe(db);
    view2.db_args({ name: 'x' });
    expect(plugin.db_args().name).toBe('x');
  });

  it('db() in a runtime: file backend, config dir as last candidate, warnings logged at LOGWARN', async () => {
    const { runtime, dir, logged } = await make_runtime({ plugins: '' }, { load: false });
    const plugin = new FakePlugin();
    plugin._qp = runtime.server_qp;
    const home = tmpdir('home');
    const db = plugin.db({ qphome: home });
    expect(db).toBeInstanceOf(FileDB);
    const fdb = db as FileDB;
    expect(fdb.candidate_dirs()).toEqual([`${home}/var/db`, dir]);
    expect(fdb.dir()).toBe(dir);
    expect(fdb.path()).toBe(`${dir}/___MockHook___.db`);
    expect(logged.join('\n')).toContain('Encountered errors while selecting database directory:');
    expect(logged.join('\n')).toContain(`DB directory '${home}/var/db' does not exist`);
    expect(await db.lock()).toBe(true);
    await db.set('k', 'v');
    expect(await db.unlock()).toBe(true);
    expect(JSON.parse(readFileSync(`${dir}/___MockHook___.db`, 'utf8'))).toEqual({ k: 'v' });
  });
});

// -- t/qpsmtpd-db.t ---------------------------------------------------------------------------

class BrokenClassOne extends FakeDB {
  constructor(args: DBArgs) {
    super(args);
    throw new Error('fool me once, shame on me\n');
  }
}
class BrokenClassTwo extends FakeDB {
  constructor(args: DBArgs) {
    super(args);
    throw new Error("fool me can't get fooled again");
  }
}
class EmptyClass extends FakeDB {}

describe('DB factory and defaults (t/qpsmtpd-db.t)', () => {
  const saved = DB.child_classes;
  afterEach(() => {
    DB.child_classes = saved;
  });
  DB.register_backend('BrokenClassOne', BrokenClassOne);
  DB.register_backend('BrokenClassTwo', BrokenClassTwo);
  DB.register_backend('EmptyClass', EmptyClass);

  it('reports every backend that failed', () => {
    DB.child_classes = ['BrokenClassOne', 'BrokenClassTwo'];
    expect(() => DB.create()).toThrow(DBError);
    expect(thrown(() => DB.create())).toBe(
      "Couldn't load any storage modules\n" +
        "Couldn't load BrokenClassOne: fool me once, shame on me\n" +
        "Couldn't load BrokenClassTwo: fool me can't get fooled again",
    );
    // constructors work as well as registered names
    DB.child_classes = [BrokenClassTwo];
    expect(thrown(() => DB.create())).toBe(
      "Couldn't load any storage modules\nCouldn't load BrokenClassTwo: fool me can't get fooled again",
    );
  });

  it('class: tries only the manual class', () => {
    expect(thrown(() => DB.create({ class: 'BrokenClassOne' }))).toBe(
      "Couldn't load any storage modules\nCouldn't load BrokenClassOne: fool me once, shame on me",
    );
    expect(thrown(() => DB.create({ class: 'NoSuchThing' }))).toBe(
      "Couldn't load any storage modules\nCouldn't load NoSuchThing: no such storage class",
    );
  });

  it('Redis is not available yet, by full or short name', () => {
    const msg = "Couldn't load any storage modules\nCouldn't load Qpsmtpd::DB::Redis: not available in qpsmtpd-ts yet";
    expect(thrown(() => DB.create({ class: 'Redis' }))).toBe(msg);
    expect(thrown(() => DB.create({ class: 'Qpsmtpd::DB::Redis' }))).toBe(msg);
  });

  it('returns the first backend that constructs', () => {
    DB.child_classes = ['BrokenClassOne', 'EmptyClass'];
    expect(DB.create()).toBeInstanceOf(EmptyClass);
    // the default order: Redis (not available), then the file backend
    DB.child_classes = saved;
    expect(saved).toEqual(['Qpsmtpd::DB::Redis', 'Qpsmtpd::DB::File::DBM']);
    expect(DB.create({ name: 'x' })).toBeInstanceOf(FileDB);
    expect(DB.create({ class: 'File::DBM' })).toBeInstanceOf(FileDB);
    expect(DB.create({ class: FileDB })).toBeInstanceOf(FileDB);
  });

  it('default lock() and unlock() just return true', async () => {
    DB.child_classes = ['EmptyClass'];
    expect(await DB.create().lock()).toBe(true);
    expect(await DB.create().unlock()).toBe(true);
  });

  it('name()', () => {
    DB.child_classes = ['EmptyClass'];
    const db = DB.create();
    expect(db.name()).toBeUndefined();
    expect(db.name('test')).toBe('test');
    expect(db.name()).toBe('test');
    expect(DB.create({ name: 'given' }).name()).toBe('given');
  });
});

// -- t/qpsmtpd-db-file-dbm.t -------------------------------------------------------------------

describe('FileDB data methods (t/qpsmtpd-db-file-dbm.t)', () => {
  const dir = tmpdir('data');
  const { db, warned } = file_db({ name: 'testing', dir });

  it('new', () => {
    expect(db).toBeInstanceOf(FileDB);
    expect(db).toBeInstanceOf(DB);
  });

  it('get() retrieves a key', async () => {
    await db.lock();
    await db.flush();
    await db.set('moo', 'oooo');
    expect(await db.get('moo')).toBe('oooo');
    expect(await db.get('nope')).toBeUndefined();
    await db.unlock();
  });

  it('mget() retrieves several keys in order', async () => {
    await db.lock();
    await db.flush();
    await db.set('key1', 'val1');
    await db.set('key2', 'val2');
    expect((await db.mget('key2', 'key1')).join('|')).toBe('val2|val1');
    expect(await db.mget('key1', 'none')).toEqual(['val1', undefined]);
    await db.unlock();
  });

  it('set() stores a key, as a string', async () => {
    await db.lock();
    await db.flush();
    expect(await db.set('mee', 'ow')).toBe('ow');
    expect(await db.get('mee')).toBe('ow');
    expect(await db.set('n', 5)).toBe('5');
    expect(await db.get('n')).toBe('5');
    await db.unlock();
  });

  it('delete() removes keys and counts the ones that existed', async () => {
    await db.lock();
    await db.flush();
    for (const k of ['oink', 'quack', 'woof', 'moo']) await db.set(k, 1);
    expect(await db.delete('quack')).toBe(1);
    expect((await db.get_keys()).sort().join('|')).toBe('moo|oink|woof');
    expect(await db.delete('moo', 'oink')).toBe(2);
    expect((await db.get_keys()).sort().join('|')).toBe('woof');
    expect(await db.delete('noop')).toBe(0);
    expect(await db.delete('woof', 'woof')).toBe(1);
    await db.unlock();
  });

  it('get_keys() lists all keys', async () => {
    await db.lock();
    await db.flush();
    await db.set('asdf', 1);
    await db.set('qwerty', 1);
    expect((await db.get_keys()).sort().join('|')).toBe('asdf|qwerty');
    await db.unlock();
  });

  it('size() counts keys', async () => {
    await db.lock();
    await db.flush();
    await db.set('baz', 1);
    await db.set('blah', 1);
    expect(await db.size()).toBe(2);
    await db.unlock();
  });

  it('flush() empties the store', async () => {
    await db.lock();
    await db.flush();
    await db.set('bogus', 1);
    expect((await db.get_keys()).join('|')).toBe('bogus');
    await db.flush();
    expect((await db.get_keys()).join('|')).toBe('');
    await db.unlock();
  });

  it('a second handle reads what the first wrote (the untie gotcha)', async () => {
    await db.lock();
    await db.flush();
    await db.set('cut', 'itout');
    await db.unlock();
    const { db: db2 } = file_db({ name: 'testing', dir });
    await db2.lock();
    expect(await db2.get('cut')).toBe('itout');
    await db2.flush();
    await db2.unlock();
    await db.lock();
    expect(await db.size()).toBe(0);
    await db.unlock();
  });

  it('data methods warn and fail outside lock()/unlock()', async () => {
    warned.length = 0;
    expect(db.is_locked()).toBe(false);
    expect(await db.get('x')).toBeUndefined();
    expect(await db.mget('x')).toEqual([]);
    expect(await db.set('x', 1)).toBeUndefined();
    expect(await db.delete('x')).toBeUndefined();
    expect(await db.get_keys()).toEqual([]);
    expect(await db.size()).toBeUndefined();
    expect(await db.flush()).toBeUndefined();
    expect(warned).toEqual(
      ['get', 'mget', 'set', 'delete', 'keys', 'size', 'flush'].map((op) => `DBM db not yet set up, ${op}() failed\n`),
    );
    expect(await db.unlock()).toBe(false);
  });

  it('missing keys warn and fail', async () => {
    warned.length = 0;
    await db.lock();
    expect(await db.get('')).toBeUndefined();
    expect(await db.mget()).toEqual([]);
    expect(await db.set('', 1)).toBeUndefined();
    expect(await db.delete()).toBeUndefined();
    await db.unlock();
    expect(warned).toEqual(['get', 'mget', 'set', 'delete'].map((op) => `No key provided, ${op}() failed\n`));
  });
});

describe('FileDB directories (t/qpsmtpd-db-file-dbm.t)', () => {
  // A qphome laid out like qpsmtpd's t/: config/ and Test/ exist, var/db does not.
  const home = tmpdir('home');
  mkdirSync(path.join(home, 'config'));
  mkdirSync(path.join(home, 'Test'));
  const config = `${home}/config`;
  const test = `${home}/Test`;

  it('qphome(): the package root unless given', () => {
    expect(new FileDB({ name: 'x' }).qphome()).toBe(PACKAGE_ROOT);
    expect(new FileDB({ name: 'x', qphome: home }).qphome()).toBe(home);
  });

  it('candidate_dirs(): defaults, given dirs first, cached', () => {
    const db = new FileDB({ name: 'testing', qphome: 't' });
    expect(db.candidate_dirs().join('|')).toBe('t/var/db|t/config');
    expect(db.candidate_dirs('foo').join('|')).toBe('foo|t/var/db|t/config');
    expect(db.candidate_dirs().join('|')).toBe('foo|t/var/db|t/config');
    expect(new FileDB({ name: 'x', qphome: 't', config_dir: '/etc/q' }).candidate_dirs()).toEqual(['t/var/db', '/etc/q']);
    expect(new FileDB({ name: 'x', qphome: 't', candidate_dirs: ['a', 'b'] }).candidate_dirs()).toEqual([
      'a',
      'b',
      't/var/db',
      't/config',
    ]);
  });

  it('validate_dir()', () => {
    const db = new FileDB({ name: 'testing' });
    expect(thrown(() => db.validate_dir())).toBe('Empty DB directory supplied');
    expect(thrown(() => db.validate_dir(undefined))).toBe('Empty DB directory supplied');
    expect(thrown(() => db.validate_dir(null))).toBe('Empty DB directory supplied');
    expect(thrown(() => db.validate_dir(''))).toBe('Empty DB directory supplied');
    expect(thrown(() => db.validate_dir('invalid'))).toBe("DB directory 'invalid' does not exist");
    const file = path.join(home, 'a-file');
    writeFileSync(file, '');
    expect(thrown(() => db.validate_dir(file))).toBe(`DB directory '${file}' does not exist`);
    expect(db.validate_dir(home)).toBe(true);
  });

  it('validate_dir(): a read-only directory is not writeable (a read-only mount as root, mode 0555 otherwise)', () => {
    const db = new FileDB({ name: 'testing' });
    const ro = path.join(home, 'wtest');
    mkdirSync(ro, 0o555);
    const root = process.getuid?.() === 0;
    // root may write into a 0555 directory; a read-only mount stops root too
    if (root) execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=16k', 'tmpfs', ro]);
    try {
      expect(thrown(() => db.validate_dir(ro))).toBe(`DB directory '${ro}' is not writeable`);
    } finally {
      if (root) execFileSync('umount', [ro]);
      chmodSync(ro, 0o777);
    }
    expect(db.validate_dir(ro)).toBe(true);
  });

  it('validate_dir(): the not-writeable message (also when running as root)', () => {
    class ReadOnly extends FileDB {
      protected override is_writable(): boolean {
        return false;
      }
    }
    expect(thrown(() => new ReadOnly({ name: 'x' }).validate_dir(home))).toBe(`DB directory '${home}' is not writeable`);
  });

  it('dir(): default, skipping invalid candidates, caching, explicit dirs', () => {
    const { db: db2, warned } = file_db({ name: 'dirtest', qphome: home });
    expect(db2.dir()).toBe(config);
    expect(warned.join('')).toContain('Encountered errors while selecting database directory');
    (db2 as any)._dir = undefined;
    db2.candidate_dirs('_invalid', test);
    expect(db2.dir()).toBe(test);
    (db2 as any)._dir = '_cached';
    expect(db2.dir()).toBe('_cached');
    expect(db2.dir(test)).toBe(test);
    (db2 as any)._dir = undefined;
    db2.candidate_dirs('_invalid');
    expect(db2.dir()).toBe(config);
    expect(thrown(() => db2.dir('_invalid'))).toBe("DB directory '_invalid' does not exist");
    // `dir` given to the constructor is used as is, like qpsmtpd
    expect(new FileDB({ name: 'x', dir: '_unchecked' }).dir()).toBe('_unchecked');
  });

  it('dir(): the warning about skipped candidates, and the error when none is usable', () => {
    const { db: db2, warned } = file_db({ name: 'dirtest', qphome: home });
    db2.candidate_dirs('_invalid2', test);
    expect(db2.dir()).toBe(test);
    expect(warned.join('')).toBe(
      `Encountered errors while selecting database directory:

DB directory '_invalid2' does not exist

Selected database directory: ${test}. Data is now stored in:

${test}/dirtest.db

It is recommended to manually specify a useable database directory
and move any important data into this directory.
`,
    );
    (db2 as any)._dir = undefined;
    (db2 as any)._candidate_dirs = ['/___invalid___'];
    expect(thrown(() => db2.dir())).toBe(
      `Unable to find a useable database directory!

DB directory '/___invalid___' does not exist`,
    );
  });

  it('lock() throws when no directory is usable; path() needs a name', async () => {
    const db = new FileDB({ name: 'x', qphome: '/___nothing___', config_dir: '/___nothing___/config' });
    await expect(db.lock()).rejects.toThrow(/^Unable to find a useable database directory!/);
    expect(thrown(() => new FileDB({ dir: home }).path())).toBe('DB name not set');
  });
});

// -- the file format and locking -----------------------------------------------------------

describe('FileDB file and locks', () => {
  it('stores <dir>/<name>.db as JSON, mode 0640, replaced atomically; no leftovers', async () => {
    const dir = tmpdir('file');
    const { db } = file_db({ name: 'store', dir });
    expect(db.path()).toBe(`${dir}/store.db`);
    expect(db.lock_path()).toBe(`${dir}/store.db.lock`);
    expect(await db.lock()).toBe(true);
    expect(existsSync(`${dir}/store.db.lock`)).toBe(true);
    const [pid, host, time, nonce] = readFileSync(`${dir}/store.db.lock`, 'utf8').split('\n');
    expect(Number(pid)).toBe(process.pid);
    expect(host).toBe(hostname());
    expect(Math.abs(Number(time) - Date.now())).toBeLessThan(10000);
    expect(nonce).toMatch(/^[0-9a-f]{16}$/);
    await db.set('a', '1');
    await db.set('__proto__', 'p');
    await db.set('quote"and\nnewline', 'x');
    expect(await db.unlock()).toBe(true);
    expect(readdirSync(dir)).toEqual(['store.db']);
    expect(statSync(`${dir}/store.db`).mode & 0o777).toBe(0o640);
    expect(JSON.parse(readFileSync(`${dir}/store.db`, 'utf8'))).toEqual(
      JSON.parse('{"a":"1","__proto__":"p","quote\\"and\\nnewline":"x"}'),
    );
    // read back through a new handle
    const { db: again } = file_db({ name: 'store', dir });
    await again.lock();
    expect(await again.get('__proto__')).toBe('p');
    expect(await again.get('quote"and\nnewline')).toBe('x');
    expect(await again.size()).toBe(3);
    await again.unlock();
  });

  it('an unchanged store is not rewritten', async () => {
    const dir = tmpdir('nowrite');
    const { db } = file_db({ name: 's', dir });
    await db.with_lock(async () => db.set('k', 'v'));
    const ino = statSync(`${dir}/s.db`).ino;
    await db.with_lock(async () => db.get('k'));
    await db.with_lock(async () => db.delete('nothing'));
    expect(statSync(`${dir}/s.db`).ino).toBe(ino);
    await db.with_lock(async () => db.set('k', 'w'));
    expect(statSync(`${dir}/s.db`).ino).not.toBe(ino);
  });

  it('with_lock() unlocks when the function throws, and throws when the lock is not had', async () => {
    const dir = tmpdir('withlock');
    const { db } = file_db({ name: 's', dir, lock_timeout: 0.2 });
    await expect(
      db.with_lock(async () => {
        await db.set('k', 'v');
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(db.is_locked()).toBe(false);
    expect(existsSync(`${dir}/s.db.lock`)).toBe(false);
    expect(await db.with_lock(async (d) => d.get('k'))).toBe('v'); // changes before the throw are kept
    const { db: other } = file_db({ name: 's', dir });
    await other.lock();
    await expect(db.with_lock(async () => 1)).rejects.toThrow(DBError);
    await other.unlock();
  });

  it('concurrent sessions sharing one object take turns', async () => {
    const dir = tmpdir('sessions');
    const { db } = file_db({ name: 'count', dir });
    const bump = async () => {
      expect(await db.lock()).toBe(true);
      const v = Number((await db.get('n')) ?? 0);
      await new Promise((r) => setTimeout(r, Math.random() * 2));
      await db.set('n', v + 1);
      expect(await db.unlock()).toBe(true);
    };
    await Promise.all(Array.from({ length: 50 }, bump));
    await db.lock();
    expect(await db.get('n')).toBe('50');
    await db.unlock();
  });

  it('a lock held by a live process makes lock() give up after lock_timeout, with a warning', async () => {
    const dir = tmpdir('busy');
    const { db: holder } = file_db({ name: 's', dir });
    const { db, warned } = file_db({ name: 's', dir, lock_timeout: 0.3 });
    await holder.lock();
    const t0 = Date.now();
    expect(await db.lock()).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(warned.join('')).toMatch(
      new RegExp(`timed out after 0.3s waiting for lock ${dir}/s.db.lock \\(held by pid ${process.pid} on `),
    );
    expect(db.is_locked()).toBe(false);
    await holder.unlock();
    expect(await db.lock()).toBe(true);
    await db.unlock();
  });

  it('the same object: a second caller times out too, then gets its turn', async () => {
    const dir = tmpdir('busy-local');
    const { db, warned } = file_db({ name: 's', dir, lock_timeout: 0.2 });
    await db.lock();
    expect(await db.lock()).toBe(false);
    expect(warned.join('')).toContain('timed out waiting for lock');
    const next = db.lock();
    await db.unlock();
    expect(await next).toBe(true);
    await db.unlock();
  });

  it('a stale lock of a dead process is taken over', async () => {
    const dir = tmpdir('stale');
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    expect(dead).toBeGreaterThan(0);
    writeFileSync(`${dir}/s.db.lock`, `${dead}\n${hostname()}\n${Date.now()}\nfeedfacefeedface\n`);
    const { db } = file_db({ name: 's', dir, lock_timeout: 2 });
    const t0 = Date.now();
    expect(await db.lock()).toBe(true);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(readFileSync(`${dir}/s.db.lock`, 'utf8').split('\n')[0]).toBe(String(process.pid));
    await db.set('k', 'v');
    expect(await db.unlock()).toBe(true);
    expect(readdirSync(dir)).toEqual(['s.db']);
  });

  it('a lock older than stale_lock_timeout is taken over even if its holder lives; the old holder then writes nothing', async () => {
    const dir = tmpdir('old');
    const { db: slow, warned } = file_db({ name: 's', dir });
    expect(await slow.lock()).toBe(true);
    await slow.set('from', 'slow');
    // age the lock file's own timestamp
    const lines = readFileSync(`${dir}/s.db.lock`, 'utf8').split('\n');
    lines[2] = String(Date.now() - 5000);
    writeFileSync(`${dir}/s.db.lock`, lines.join('\n'));
    const { db } = file_db({ name: 's', dir, stale_lock_timeout: 1, lock_timeout: 2 });
    expect(await db.lock()).toBe(true);
    await db.set('from', 'new');
    expect(await slow.unlock()).toBe(false);
    expect(warned.join('')).toContain('was taken over while held; changes not written');
    expect(existsSync(`${dir}/s.db.lock`)).toBe(true); // still the new holder's
    expect(await db.unlock()).toBe(true);
    expect(JSON.parse(readFileSync(`${dir}/s.db`, 'utf8'))).toEqual({ from: 'new' });
  });

  it('an unreadable lock file counts as stale by its age', async () => {
    const dir = tmpdir('garbled');
    writeFileSync(`${dir}/s.db.lock`, 'garbage');
    const { db } = file_db({ name: 's', dir, stale_lock_timeout: 0.2, lock_timeout: 3 });
    expect(await db.lock()).toBe(true);
    await db.unlock();
  });

  it('a holder of the same object past stale_lock_timeout is displaced', async () => {
    const dir = tmpdir('wedged');
    const { db, warned } = file_db({ name: 's', dir, stale_lock_timeout: 0.2, lock_timeout: 0.5 });
    expect(await db.lock()).toBe(true); // never unlocked: a hook that threw
    await db.set('lost', 'x');
    expect(await db.lock()).toBe(true);
    expect(warned.join('')).toContain('taking it over');
    expect(await db.get('lost')).toBeUndefined();
    expect(await db.unlock()).toBe(true);
  });

  it('a corrupt store makes lock() fail and release the lock', async () => {
    const dir = tmpdir('corrupt');
    writeFileSync(`${dir}/s.db`, '{"half":');
    const { db, warned } = file_db({ name: 's', dir });
    expect(await db.lock()).toBe(false);
    expect(warned.join('')).toContain(`tie to database ${dir}/s.db failed:`);
    expect(existsSync(`${dir}/s.db.lock`)).toBe(false);
    expect(db.is_locked()).toBe(false);
  });
});

// -- worker processes ----------------------------------------------------------------------------

const DIST_DB = path.join(REPO, 'dist', 'lib', 'db.js');

const WORKER = `
const [mod, dir, n] = process.argv.slice(2);
const { FileDB } = await import(mod);
const db = new FileDB({ name: 'counter', dir, lock_timeout: 30 });
for (let i = 0; i < Number(n); i++) {
  if (!(await db.lock())) process.exit(2);
  const v = Number((await db.get('count')) ?? 0);
  await db.set('count', v + 1);
  if (!(await db.unlock())) process.exit(3);
}
process.exit(0);
`;

function run_worker(script: string, dir: string, n: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = fork(script, [pathToFileURL(DIST_DB).href, dir, String(n)], { execArgv: [], stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code));
  });
}

describe('FileDB across worker processes', () => {
  beforeAll(() => {
    // `npm test` builds first; build here too if dist is missing or older than the source.
    const src = path.join(REPO, 'lib', 'db.ts');
    if (!existsSync(DIST_DB) || statSync(DIST_DB).mtimeMs < statSync(src).mtimeMs) {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit' });
    }
  }, 120_000);

  it('two processes incrementing one counter 200 times each under lock end at 400', async () => {
    const dir = tmpdir('procs');
    const script = path.join(dir, 'worker.mjs');
    writeFileSync(script, WORKER);
    const codes = await Promise.all([run_worker(script, dir, 200), run_worker(script, dir, 200)]);
    expect(codes).toEqual([0, 0]);
    expect(JSON.parse(readFileSync(path.join(dir, 'counter.db'), 'utf8'))).toEqual({ count: '400' });
    expect(readdirSync(dir).sort()).toEqual(['counter.db', 'worker.mjs']);
  }, 60_000);
});
