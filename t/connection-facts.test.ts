// Connection facts beyond qpsmtpd (docs/connection.md): uuid and counters, address classes,
// greeting/TLS/auth/conversation facts, the results store and KumoMTA-style meta.
//
// The end-to-end part drives real clients over TCP (and TLS: STARTTLS and an SMTPS listener)
// through listen(), with t/fixtures/facts/facts.ts recording every fact at every hook and
// writing them out at post-connection; queue/maildir with its `meta` option stores the messages.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  Connection,
  LOGINFO,
  MetaValueError,
  PREDEFINED_META,
  Qpsmtpd,
  Results,
  Transaction,
  check_meta_value,
  is_local_ip,
  is_private_ip,
  type Plugin,
} from '../lib/index.js';
import { tls_context_from_config } from '../plugins/tls.js';
import { make_cert } from './lib/cert.js';
import { connect as tcp_client } from './lib/daemon.js';
import { Opened, PLUGIN_DIR, REPO, listen_port, make_runtime, tmp_dir } from './lib/harness.js';
import { TestClient, start_session, tls_connect } from './lib/session.js';

const FACTS_DIR = path.join(REPO, 't', 'fixtures', 'facts');
const UUID = /^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/;
const b64 = (s: string) => Buffer.from(s).toString('base64');

// -- unit: addresses --------------------------------------------------------------------------

describe('is_private / is_local (ipaddr.js ranges)', () => {
  it.each([
    ['127.0.0.1', true, true],
    ['127.9.8.7', true, true],
    ['10.1.2.3', true, false],
    ['172.16.0.1', true, false],
    ['172.31.255.255', true, false],
    ['172.32.0.1', false, false],
    ['192.168.1.1', true, false],
    ['169.254.10.20', true, true],
    ['100.64.0.1', false, false], // carrier-grade NAT is not private
    ['192.0.2.1', false, false],
    ['8.8.8.8', false, false],
    ['::1', true, true],
    ['fe80::1', true, true],
    ['fd12:3456::1', true, false],
    ['fc00::1', true, false],
    ['::ffff:10.0.0.1', true, false],
    ['::ffff:127.0.0.1', true, true],
    ['::ffff:8.8.8.8', false, false],
    ['2001:4860:4860::8888', false, false],
    ['not an ip', false, false],
    ['', false, false],
  ])('%s: private %s, local %s', (ip, priv, local) => {
    expect(is_private_ip(ip)).toBe(priv);
    expect(is_local_ip(ip)).toBe(local);
    const c = new Connection();
    c.remote_ip(ip);
    expect(c.is_private()).toBe(priv);
    expect(c.is_local()).toBe(local);
  });

  it('an unset remote IP is neither', () => {
    const c = new Connection();
    expect([c.is_private(), c.is_local()]).toEqual([false, false]);
  });
});

// -- unit: the Connection's own facts -----------------------------------------------------------

describe('Connection facts', () => {
  it('uuid: an upper-case v4 UUID, unique per connection, settable', () => {
    const a = new Connection();
    const b = new Connection();
    expect(a.uuid()).toMatch(UUID);
    expect(b.uuid()).not.toBe(a.uuid());
    expect(a.uuid('MY-ID')).toBe('MY-ID');
    expect(a.uuid()).toBe('MY-ID');
  });

  it('transaction_count starts at 0; accessor style', () => {
    const c = new Connection();
    expect(c.transaction_count()).toBe(0);
    expect(c.transaction_count(3)).toBe(3);
    expect(c.transaction_count()).toBe(3);
  });

  it('opening_command follows hello() upper-cased unless set', () => {
    const c = new Connection();
    expect(c.opening_command()).toBeUndefined();
    c.hello('ehlo');
    expect(c.opening_command()).toBe('EHLO');
    c.opening_command('LHLO');
    expect(c.opening_command()).toBe('LHLO');
    expect(c.hello()).toBe('ehlo');
  });

  it.each([
    ['helo', false, false, 'SMTP'],
    ['helo', true, true, 'SMTP'], // RFC 3848 has no SMTPS/SMTPA
    ['ehlo', false, false, 'ESMTP'],
    ['ehlo', true, false, 'ESMTPS'],
    ['ehlo', false, true, 'ESMTPA'],
    ['ehlo', true, true, 'ESMTPSA'],
    ['lhlo', false, false, 'LMTP'],
    ['lhlo', true, false, 'LMTPS'],
    ['lhlo', false, true, 'LMTPA'],
    ['lhlo', true, true, 'LMTPSA'],
  ])('transmission_type after %s (tls %s, auth %s) is %s', (hello, secure, auth, want) => {
    const c = new Connection();
    expect(c.transmission_type()).toBeUndefined();
    c.hello(hello);
    if (secure) c.tls({ secure: true, protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', servername: '' });
    if (auth) c.authn_id('alice');
    expect(c.transmission_type()).toBe(want);
    expect(c.get_meta('reception_protocol')).toBe(want);
    c.transmission_type('X-CUSTOM');
    expect(c.transmission_type()).toBe('X-CUSTOM');
  });

  it('tls() is all empty in clear and hands out copies', () => {
    const c = new Connection();
    expect(c.tls()).toEqual({ secure: false, protocol: '', cipher: '', servername: '' });
    c.tls().secure = true;
    expect(c.tls().secure).toBe(false);
    c.tls({ secure: true, protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256', servername: 'mx.test' });
    expect(c.tls()).toEqual({ secure: true, protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256', servername: 'mx.test' });
  });

  it('clone (STARTTLS) keeps the uuid, counters, facts, results and meta; drops the greeting', () => {
    const c = new Connection().start({ remote_ip: '192.0.2.7', remote_port: 4000, local_ip: '192.0.2.1', local_port: 25 });
    c.hello('ehlo');
    c.hello_host('client.test');
    c.opening_command('EHLO');
    c.local_host('mx.test');
    c.transaction_count(2);
    c.current_line('STARTTLS');
    c.last_response('220 Go ahead with TLS');
    c.last_error('550 no');
    c.authn_id('alice');
    c.results.add('x', { pass: 'y' });
    c.set_meta('tenant', 'blue');
    const d = c.clone();
    expect(d.uuid()).toBe(c.uuid());
    expect([d.hello(), d.hello_host(), d.opening_command(), d.transmission_type()]).toEqual([undefined, undefined, undefined, undefined]);
    expect([d.local_host(), d.transaction_count(), d.current_line(), d.last_response(), d.last_error(), d.authn_id()]).toEqual([
      'mx.test',
      2,
      'STARTTLS',
      '220 Go ahead with TLS',
      '550 no',
      'alice',
    ]);
    expect(d.results.has('x', 'pass', 'y')).toBe(true);
    expect(d.get_meta('tenant')).toBe('blue');
    d.set_meta('later', 1);
    expect(c.get_meta('later')).toBe(1); // one store: it is the same connection
  });

  it('predefined meta follows the facts; a value set by a plugin wins', () => {
    const c = new Connection().start({ remote_ip: '2001:db8::7', remote_port: 5000, local_ip: '192.0.2.1', local_port: 587 });
    expect(c.all_meta()).toEqual({ received_via: '192.0.2.1:587', received_from: '[2001:db8::7]:5000' });
    c.local_host('mx.test');
    c.hello('ehlo');
    c.authn_id('alice');
    c.authz_id('alice');
    expect(c.all_meta()).toEqual({
      reception_protocol: 'ESMTPA',
      received_via: '192.0.2.1:587',
      received_from: '[2001:db8::7]:5000',
      hostname: 'mx.test',
      authn_id: 'alice',
      authz_id: 'alice',
    });
    expect(Object.keys(c.predefined_meta()).sort()).toEqual([...PREDEFINED_META].sort());
    c.set_meta('hostname', 'override.test');
    expect(c.get_meta('hostname')).toBe('override.test');
    expect(c.get_meta('nothing')).toBeUndefined();
  });
});

// -- unit: results ---------------------------------------------------------------------------

describe('Results (haraka-results)', () => {
  const plugin = { plugin_name: () => 'my_plugin' };

  it('add appends to the five lists, stores other keys, and collates', () => {
    const r = new Results();
    expect(r.get('my_plugin')).toBeUndefined();
    expect(r.collate('my_plugin')).toBeUndefined();
    r.add(plugin, { pass: 'null_sender' });
    r.add(plugin, { fail: ['single_recipient', 'other'] });
    r.add(plugin, { skip: 'valid_bounce', msg: 'found a nickel' });
    r.add('my_plugin', { err: new Error('timed out'), score: 5, _secret: 'x', obj: { a: 1 } });
    const got = r.get(plugin)!;
    expect(got.pass).toEqual(['null_sender']);
    expect(got.fail).toEqual(['single_recipient', 'other']);
    expect(got.skip).toEqual(['valid_bounce']);
    expect(got.msg).toEqual(['found a nickel']);
    expect(got.err).toHaveLength(1);
    expect(got.score).toBe(5);
    expect(got._secret).toBe('x');
    expect(r.collate(plugin)).toBe('score: 5, pass:null_sender, fail:single_recipient, other, skip:valid_bounce, err:timed out, msg:found a nickel');
  });

  it('add returns the summary; empty values are not appended', () => {
    const r = new Results();
    expect(r.add('p', { pass: 'a', fail: '', skip: undefined })).toBe('pass:a');
    expect(r.get('p')!.fail).toEqual([]);
  });

  it('has: exact for strings, numbers and booleans, RegExp for string elements and values', () => {
    const r = new Results();
    r.add('p', { pass: 'some_test' });
    r.add('p', { pass: 'some_test(with reason)', country: 'CN', code: 3 });
    r.push('p', { flags: [true, 2] });
    expect(r.has('p', 'pass', 'some_test')).toBe(true);
    expect(r.has('p', 'pass', 'some')).toBe(false);
    expect(r.has('p', 'pass', /^some_test\(/)).toBe(true);
    expect(r.has('p', 'pass', /^nope/)).toBe(false);
    expect(r.has('p', 'country', 'CN')).toBe(true);
    expect(r.has('p', 'country', /^C/)).toBe(true);
    expect(r.has('p', 'code', 3)).toBe(true);
    expect(r.has('p', 'flags', true)).toBe(true);
    expect(r.has('p', 'flags', 2)).toBe(true);
    expect(r.has('p', 'fail', 'x')).toBe(false);
    expect(r.has('p', 'missing', 'x')).toBe(false);
    expect(r.has('other', 'pass', 'x')).toBe(false);
    const g = /some/g; // a global RegExp's lastIndex does not make has() flaky
    expect([r.has('p', 'pass', g), r.has('p', 'pass', g), r.has('p', 'pass', g)]).toEqual([true, true, true]);
  });

  it('incr and push', () => {
    const r = new Results();
    r.incr('karma', { score: 1 });
    r.incr('karma', { score: -3, hits: '2' });
    r.push('karma', { dns: 'a' });
    r.push('karma', { dns: ['b', 'c'] });
    expect(r.get('karma')).toMatchObject({ score: -2, hits: 2, dns: ['a', 'b', 'c'] });
  });

  it('order and hide shape the summary; private keys never show', () => {
    const r = new Results();
    r.add('p', { pass: 'a', fail: 'b', msg: 'm', ip: '192.0.2.1', _raw: 'hidden' });
    expect(r.collate('p')).toBe('ip: 192.0.2.1, pass:a, fail:b, msg:m');
    r.add('p', { order: ['msg', 'fail'], hide: ['ip'] });
    expect(r.collate('p')).toBe('msg:m, fail:b');
  });

  it('emit logs the summary through the plugin; nothing is logged otherwise', () => {
    const logged: unknown[][] = [];
    const p = { plugin_name: () => 'loud', log: (...a: unknown[]) => void logged.push(a) };
    const r = new Results();
    r.add(p, { pass: 'x' });
    r.add(p, { err: 'oops' });
    expect(logged).toEqual([]);
    r.add(p, { fail: 'y', emit: true });
    expect(logged).toEqual([[LOGINFO, 'pass:x, fail:y, err:oops']]);
    r.add(p, { emit: true, human: 'custom summary' });
    expect(logged[1]).toEqual([LOGINFO, 'custom summary']);
    expect(r.get(p)!.human).toBeUndefined();
  });

  it('get_all and clear; Haraka-style {name} refs; a bad ref throws', () => {
    const r = new Results();
    r.add({ name: 'a' }, { pass: 1 });
    r.add('b', { pass: 2 });
    expect(Object.keys(r.get_all())).toEqual(['a', 'b']);
    r.clear('a');
    expect(Object.keys(r.get_all())).toEqual(['b']);
    r.clear();
    expect(r.get_all()).toEqual({});
    expect(() => r.add({} as never, { pass: 1 })).toThrow(/plugin or a plugin name/);
  });

  it('connection and transaction each have their own store', async () => {
    const rt = await make_runtime();
    const qp = new Qpsmtpd(rt.runtime, new Connection());
    qp.connection.results.add('p', { pass: 'conn' });
    qp.transaction.results.add('p', { pass: 'txn' });
    expect(qp.connection.results.get('p')!.pass).toEqual(['conn']);
    expect(qp.transaction.results.get('p')!.pass).toEqual(['txn']);
    await qp.reset_transaction();
    expect(qp.transaction.results.get('p')).toBeUndefined();
    expect(qp.connection.results.get('p')!.pass).toEqual(['conn']);
  });
});

// -- unit: meta -------------------------------------------------------------------------------

describe('meta (KumoMTA conn_meta / message meta)', () => {
  it('values that survive JSON are stored as copies', () => {
    const c = new Connection();
    const v = { a: [1, 'two', null, true, { b: -0.5 }], 'odd key': '' };
    expect(c.set_meta('x', v)).toEqual(v);
    v.a.push(99);
    expect(c.get_meta('x')).toEqual({ a: [1, 'two', null, true, { b: -0.5 }], 'odd key': '' });
    const got = c.get_meta('x') as { a: unknown[] };
    got.a.length = 0;
    expect((c.get_meta('x') as { a: unknown[] }).a).toHaveLength(5);
    expect(c.set_meta('n', null)).toBeNull();
    expect(c.set_meta('s', 'str')).toBe('str');
    expect(c.set_meta('proto-less', Object.assign(Object.create(null), { k: 1 }))).toEqual({ k: 1 });
  });

  class Thing {
    x = 1;
  }
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  // eslint-disable-next-line no-sparse-arrays
  const sparse = [1, , 3];

  it.each([
    ['undefined', undefined, /the value is undefined, which does not survive JSON/],
    ['NaN', Number.NaN, /the value is NaN/],
    ['Infinity', Number.POSITIVE_INFINITY, /is a non-finite number \(Infinity\)/],
    ['a bigint', 10n, /is a bigint/],
    ['a function', () => 1, /is a function/],
    ['a symbol', Symbol('s'), /is a symbol/],
    ['a Date', new Date(0), /is a Date object.*plain objects and arrays/],
    ['a Map', new Map(), /is a Map object/],
    ['a Buffer', Buffer.from('x'), /is a Buffer object/],
    ['a class instance', new Thing(), /is a Thing object/],
    ['a nested undefined', { a: { b: [1, undefined] } }, /the value\.a\.b\[1\] is undefined/],
    ['a cycle', cyclic, /the value\.self is a circular reference/],
    ['a sparse array', sparse, /the value\[1\] is a hole in a sparse array/],
    ['symbol keys', { [Symbol('k')]: 1 }, /has symbol keys/],
  ])('refuses %s with a clear error', (_what, value, message) => {
    const c = new Connection();
    expect(() => c.set_meta('bad', value)).toThrow(MetaValueError);
    expect(() => c.set_meta('bad', value)).toThrow(message);
    expect(() => c.set_meta('bad', value)).toThrow(/^connection\.set_meta\('bad'\): /);
    expect(c.get_meta('bad')).toBeUndefined();
    const t = new Transaction({ spool_dir: () => os.tmpdir(), temp_file: () => '', size_threshold: () => 0, log: () => {} });
    expect(() => t.set_meta('bad', value)).toThrow(/^transaction\.set_meta\('bad'\): /);
  });

  it('a shared (not cyclic) object is fine; a name must be a non-empty string', () => {
    const shared = { k: 1 };
    const c = new Connection();
    expect(c.set_meta('twice', [shared, shared])).toEqual([{ k: 1 }, { k: 1 }]);
    expect(() => c.set_meta('', 1)).toThrow(/name must be a non-empty string/);
    expect(() => check_meta_value({ ok: [1, { deep: 'x' }] }, 'w')).not.toThrow();
  });

  it('the transaction gets the connection meta at DATA; its own values win', async () => {
    const rt = await make_runtime({ me: 'mx.example.test' });
    const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '192.0.2.9', remote_port: 1234 }));
    qp.connection.set_meta('campaign', 'from-connection');
    qp.connection.set_meta('tenant', 'blue');
    qp.transaction.set_meta('campaign', 'own');
    qp.transaction.copy_meta_from(qp.connection.all_meta());
    expect(qp.transaction.all_meta()).toEqual({ received_from: '192.0.2.9:1234', campaign: 'own', tenant: 'blue' });
    expect(qp.transaction.get_meta('tenant')).toBe('blue');
  });
});

// -- unit: transaction uuid, log ids, auth user value (in-process) -------------------------------

describe('session facts in-process', () => {
  it('transaction uuid is <connection uuid>.<n>; log lines carry the uuid', async () => {
    const rt = await make_runtime({ me: 'mx.example.test', rcpthosts: ['example.test'], plugins: ['rcpt_ok', 'queue/discard'], loglevel: '6' });
    const { session, client, done } = start_session(rt.runtime);
    const uuid = session.connection.uuid();
    expect(session.transaction.uuid()).toBe(`${uuid}.1`);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO c.test');
    for (const n of [1, 2]) {
      await client.cmd('MAIL FROM:<a@b.test>');
      await client.cmd('RCPT TO:<x@example.test>');
      expect(session.transaction.uuid()).toBe(`${uuid}.${n}`);
      expect((await client.cmd('DATA'))!.code).toBe(354);
      expect(session.connection.transaction_count()).toBe(n);
      expect((await client.cmd('Subject: x\r\n\r\nbody\r\n.'))!.code).toBe(250);
    }
    // a transaction that never reaches DATA does not count
    await client.cmd('MAIL FROM:<a@b.test>');
    await client.cmd('RSET');
    expect(session.transaction.uuid()).toBe(`${uuid}.3`);
    expect(session.connection.transaction_count()).toBe(2);
    await client.cmd('QUIT');
    await done;
    expect(session.log_id()).toBe(`${process.pid} ${uuid}`);
    expect(session.log_uuid()).toBe(uuid);
    const mine = rt.logged.filter((l) => l.startsWith(`${process.pid} ${uuid} `));
    expect(mine.length).toBeGreaterThan(10);
    expect(mine.some((l) => l.includes('(rcpt) rcpt_ok: pass: example.test in rcpthosts'))).toBe(true);
    // lines outside a session keep qpsmtpd's `<pid> …`
    expect(rt.runtime.server_qp.log_id()).toBe(process.pid);
    expect(rt.runtime.server_qp.log_uuid()).toBeUndefined();
  });

  async function results_runtime() {
    return make_runtime({
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
      badmailfrom: ['bad@spam.test'],
      relayclients: ['10.9.'],
      plugins: ['relay', 'helo policy lenient', 'badmailfrom', 'rcpt_ok'],
      loglevel: '7',
    });
  }

  it('helo, badmailfrom and rcpt_ok record results; their log lines are unchanged', async () => {
    const rt = await results_runtime();
    const { session, client } = start_session(rt.runtime, { remote_ip: '192.0.2.7' });
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('EHLO client.example.test'))!.code).toBe(250);
    const c = session.connection;
    expect(c.results.get('relay')!.skip).toEqual(['no match']);
    expect(c.results.get('helo')!.pass).toEqual(['is_in_badhelo', 'invalid_localhost', 'is_forged_literal', 'is_plain_ip']);
    expect(c.results.has('helo', 'pass', /^is_plain/)).toBe(true);
    expect(c.results.collate('helo')).toBe('pass:is_in_badhelo, invalid_localhost, is_forged_literal, is_plain_ip');
    expect((await client.cmd('MAIL FROM:<bad@spam.test>'))!.code).toBe(550);
    expect(session.transaction.results.get('badmailfrom')).toMatchObject({ fail: ['badmailfrom'], msg: ['bad@spam.test'] });
    expect((await client.cmd('MAIL FROM:<good@ok.test>'))!.code).toBe(250);
    expect(session.transaction.results.get('badmailfrom')!.pass).toEqual(['badmailfrom']);
    expect((await client.cmd('RCPT TO:<x@example.test>'))!.code).toBe(250);
    expect((await client.cmd('RCPT TO:<y@elsewhere.test>'))!.code).toBe(550);
    expect(session.transaction.results.collate('rcpt_ok')).toBe('pass:rcpthosts, fail:rcpthosts, msg:example.test, elsewhere.test');
    expect(rt.logged.some((l) => / \(connect\) relay: skip, no match$/.test(l))).toBe(true);
    expect(rt.logged.some((l) => / \(ehlo\) helo: pass$/.test(l))).toBe(true);
    expect(rt.logged.some((l) => / \(mail\) badmailfrom: pass$/.test(l))).toBe(true);
    expect(rt.logged.some((l) => / \(rcpt\) rcpt_ok: fail: elsewhere\.test not in morercpthosts$/.test(l))).toBe(true);
    await client.cmd('QUIT');
  });

  it('relay records its match; helo and rcpt_ok skip an immune relay client', async () => {
    const rt = await results_runtime();
    const { session, client } = start_session(rt.runtime, { remote_ip: '10.9.8.7' });
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('HELO client.example.test'))!.code).toBe(250);
    const c = session.connection;
    expect(c.results.get('relay')).toMatchObject({ pass: ['relayclients'], msg: ['10.9.'] });
    expect(c.results.get('helo')!.skip).toEqual(['immune']);
    expect((await client.cmd('MAIL FROM:<good@ok.test>'))!.code).toBe(250);
    expect(session.transaction.results.get('badmailfrom')!.skip).toEqual(['immune']);
    expect((await client.cmd('RCPT TO:<y@elsewhere.test>'))!.code).toBe(250);
    expect(session.transaction.results.get('rcpt_ok')!.skip).toEqual(['immune']);
    expect(rt.logged.some((l) => / \(connect\) relay: pass, octet match in relayclients \(10\.9\.\)$/.test(l))).toBe(true);
    await client.cmd('QUIT');
  });
});

// -- end to end over TCP and TLS ----------------------------------------------------------------

type Snap = Record<string, any>;

let root: string;
let cert: string;
let key: string;
const opened = new Opened();

beforeAll(() => {
  root = tmp_dir('qpts-facts-');
  ({ cert, key } = make_cert('mx.example.test', root));
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

afterEach(() => opened.close_all());

async function server(opts: { smtps?: boolean } = {}) {
  const out = mkdtempSync(path.join(root, 'facts-'));
  const maildir = path.join(mkdtempSync(path.join(root, 'mail-')), 'Maildir');
  const t = await make_runtime({
    me: 'mx.example.test',
    rcpthosts: ['example.test'],
    plugin_dirs: [FACTS_DIR, PLUGIN_DIR],
    plugins: [`facts ${out}`, `tls ${cert} ${key}`, 'rcpt_ok', `queue/maildir ${maildir} meta`],
    loglevel: '6',
  });
  const tls_context = opts.smtps ? tls_context_from_config(t.runtime.server_qp, [cert, key]) : undefined;
  const { server: srv, port } = await listen_port(t.runtime, { no_rdns: true, ...(tls_context ? { tls_context } : {}) });
  opened.servers.push(srv);
  return { ...t, out, maildir, port };
}

/** `c`, destroyed after the test; its replies may take 8 s. */
function track<S extends Duplex>(c: TestClient<S>): TestClient<S> {
  opened.sockets.push(c.stream);
  c.timeout_ms = 8000;
  return c;
}

async function connect(port: number): Promise<{ wire: TestClient; socket: net.Socket }> {
  const wire = track(await tcp_client(port));
  return { wire, socket: wire.stream };
}

/** The facts file of the one session the server had (written at post-connection). */
async function facts_of(out: string): Promise<Snap[]> {
  const deadline = Date.now() + 8000;
  while (!readdirSync(out).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const files = readdirSync(out);
  expect(files).toHaveLength(1);
  return JSON.parse(readFileSync(path.join(out, files[0]!), 'utf8')) as Snap[];
}

function at(facts: Snap[], hook: string, nth = 0): Snap {
  const s = facts.filter((f) => f.hook === hook)[nth];
  if (!s) throw new Error(`no snapshot #${nth} for ${hook}: ${facts.map((f) => f.hook).join(', ')}`);
  return s;
}

function stored(maildir: string): Array<{ name: string; message: string; meta?: unknown }> {
  const dir = path.join(maildir, 'new');
  return readdirSync(dir)
    .sort()
    .map((name) => {
      const sidecar = path.join(maildir, 'meta', `${name}.json`);
      return {
        name,
        message: readFileSync(path.join(dir, name), 'latin1'),
        ...(existsSync(sidecar) ? { meta: JSON.parse(readFileSync(sidecar, 'utf8')) as unknown } : {}),
      };
    });
}

async function send_message(w: TestClient, subject: string): Promise<void> {
  await w.expect_cmd('MAIL FROM:<sender@other.test>', 250);
  await w.expect_cmd('RCPT TO:<rcpt@example.test>', 250);
  await w.expect_cmd('DATA', 354);
  await w.expect_cmd(`Subject: ${subject}\r\n\r\nbody\r\n.`, 250);
}

describe('every fact at every hook, over TCP and TLS', () => {
  it('plain TCP: EHLO, a refused RCPT, AUTH PLAIN with a user value, two messages, QUIT', async () => {
    const { port, out, maildir, logged } = await server();
    const { wire: w, socket } = await connect(port);
    const greeting = (await w.reply())!;
    expect(greeting.code).toBe(220);
    await w.expect_cmd('EHLO client.example.test', 250);
    await w.expect_cmd('MAIL FROM:<sender@other.test>', 250);
    const refused = await w.expect_cmd('RCPT TO:<someone@elsewhere.test>', 550);
    await w.expect_cmd('RSET', 250);
    await w.expect_cmd(`AUTH PLAIN ${b64('\0alice\0secret')}`, 235);
    await send_message(w, 'one');
    await send_message(w, 'two');
    await w.expect_cmd('QUIT', 221);
    const facts = await facts_of(out);

    const uuid = facts[0]!.uuid as string;
    expect(uuid).toMatch(UUID);
    const client = { remote_ip: '127.0.0.1', remote_port: socket.localPort, local_ip: '127.0.0.1', local_port: port };
    const via = { received_via: `127.0.0.1:${port}`, received_from: `127.0.0.1:${socket.localPort}`, hostname: 'mx.example.test' };
    // the same at every hook
    for (const f of facts) {
      expect(f).toMatchObject({
        uuid,
        log_id: `${process.pid} ${uuid}`,
        ...client,
        local_host: 'mx.example.test',
        is_private: true,
        is_local: true,
        tls: { secure: false, protocol: '', cipher: '', servername: '' },
      });
      expect(f.meta).toMatchObject(via);
      expect(f.results.facts).toMatchObject({ pass: ['connected'], remote: '127.0.0.1' });
    }
    expect(facts.map((f) => f.hook)).toEqual([
      'connect',
      'ehlo',
      'reset_transaction', // MAIL starts a fresh transaction
      'mail',
      'rcpt',
      'reset_transaction', // RSET
      'auth',
      'reset_transaction', // MAIL starts a fresh transaction
      'mail',
      'rcpt',
      'data',
      'data_post',
      'queue',
      'reset_transaction', // after the queue
      'queue_post',
      'reset_transaction',
      'mail',
      'rcpt',
      'data',
      'data_post',
      'queue',
      'reset_transaction',
      'queue_post',
      'disconnect',
      'reset_transaction', // the open transaction at disconnect
      'post-connection',
    ]);

    const connect_ = at(facts, 'connect');
    expect(connect_).toMatchObject({ transaction_count: 0, transaction_uuid: `${uuid}.1`, remote_closed: false });
    expect(connect_.relay_client).toBeUndefined();
    for (const k of ['hello', 'hello_host', 'opening_command', 'transmission_type', 'authn_id', 'authz_id', 'auth_mechanism', 'user', 'current_line', 'last_response', 'last_error']) {
      expect(connect_[k], k).toBeUndefined();
    }
    expect(connect_.meta).toEqual(via);

    // the helo hooks run before the greeting is accepted: hello() and what follows it are unset
    const ehlo = at(facts, 'ehlo');
    expect(ehlo).toMatchObject({ current_line: 'EHLO client.example.test', last_response: `220 ${greeting.text}` });
    expect([ehlo.hello, ehlo.opening_command, ehlo.transmission_type]).toEqual([undefined, undefined, undefined]);
    expect(ehlo.meta).toEqual({ ...via, tenant: { name: 'blue', tier: 2 } });

    const mail1 = at(facts, 'mail');
    expect(mail1).toMatchObject({
      hello: 'ehlo',
      hello_host: 'client.example.test',
      opening_command: 'EHLO',
      transmission_type: 'ESMTP',
      current_line: 'MAIL FROM:<sender@other.test>',
      transaction_uuid: `${uuid}.1`,
      transaction_meta: { campaign: 'spring' },
    });
    expect(mail1.last_response).toMatch(/^250 AUTH PLAIN CRAM-MD5 LOGIN$/);
    expect(mail1.meta).toEqual({ ...via, reception_protocol: 'ESMTP', tenant: { name: 'blue', tier: 2 } });

    // the refused recipient: the transaction's results say why, last_error keeps the reply
    const rset = at(facts, 'reset_transaction', 1);
    expect(rset.last_error).toBe(`550 ${refused.text}`);
    expect(rset.transaction_results.rcpt_ok).toMatchObject({ fail: ['rcpthosts'], msg: ['elsewhere.test'] });
    expect(rset.collate_rcpt_ok).toBe('fail:rcpthosts, msg:elsewhere.test');

    const auth = at(facts, 'auth');
    expect(auth).toMatchObject({ transmission_type: 'ESMTP', last_error: `550 ${refused.text}`, last_response: '250 OK' });
    expect(auth.current_line).toBe(`AUTH PLAIN ${b64('\0alice\0secret')}`);
    expect(auth.authn_id).toBeUndefined();

    // after AUTH: auth facts, ESMTPA, and the user value the plugin returned
    const authed = {
      authn_id: 'alice',
      authz_id: 'alice',
      auth_mechanism: 'PLAIN',
      user: { id: 7, name: 'Alice' },
      transmission_type: 'ESMTPA',
      relay_client: 1,
    };
    const mail2 = at(facts, 'mail', 1);
    expect(mail2).toMatchObject({ ...authed, transaction_count: 0, transaction_uuid: `${uuid}.1` });
    // the facts plugin set the connection's own `campaign` at the first RCPT
    expect(at(facts, 'rcpt', 0).meta.campaign).toBe('ignored: the transaction has its own');
    const conn_meta = {
      ...via,
      reception_protocol: 'ESMTPA',
      authn_id: 'alice',
      authz_id: 'alice',
      tenant: { name: 'blue', tier: 2 },
      campaign: 'ignored: the transaction has its own',
    };
    expect(mail2.meta).toEqual(conn_meta);

    // DATA runs before the 354: the message is not counted yet, nor is meta copied
    const data1 = at(facts, 'data', 0);
    expect(data1).toMatchObject({ transaction_count: 0, transaction_uuid: `${uuid}.1`, current_line: 'DATA' });
    expect(data1.transaction_meta).toEqual({ campaign: 'spring' });
    expect(data1.transaction_results.rcpt_ok).toMatchObject({ skip: ['immune'] }); // AUTH made it a relay client

    // from the 354 on: counted, and the transaction has the connection's meta (its own campaign kept)
    const message_meta = { ...conn_meta, campaign: 'spring' };
    for (const hook of ['data_post', 'queue']) {
      const f = at(facts, hook, 0);
      expect(f, hook).toMatchObject({ ...authed, transaction_count: 1, transaction_uuid: `${uuid}.1`, last_response: '354 go ahead' });
      expect(f.transaction_meta, hook).toEqual(message_meta);
    }
    expect(at(facts, 'queue_post', 0)).toMatchObject({ transaction_count: 1, transaction_uuid: `${uuid}.2` });
    expect(at(facts, 'queue_post', 0).last_response).toMatch(/^250 Queued! /);
    expect(at(facts, 'data_post', 1)).toMatchObject({ transaction_count: 2, transaction_uuid: `${uuid}.2` });
    expect(at(facts, 'queue', 1).transaction_meta).toEqual(message_meta);

    const disconnect = at(facts, 'disconnect');
    expect(disconnect).toMatchObject({ ...authed, transaction_count: 2, remote_closed: false, current_line: 'QUIT' });
    expect(disconnect.last_response).toBe('221 mx.example.test closing connection. Have a wonderful day.');
    expect(at(facts, 'post-connection')).toMatchObject({ transaction_count: 2, remote_closed: false });

    // the stored messages: Received ids are the transaction uuids; the sidecars hold the meta
    const msgs = stored(maildir);
    expect(msgs).toHaveLength(2);
    const ids = msgs.map((m) => /\n by mx\.example\.test \(qpsmtpd-ts\/[^)]+\) with ESMTPA id (\S+); /.exec(m.message)?.[1]).sort();
    expect(ids).toEqual([`${uuid}.1`, `${uuid}.2`]);
    for (const m of msgs) expect(m.meta).toEqual(message_meta);

    // the built-in log lines of the session carry the uuid
    const lines = logged.filter((l) => l.startsWith(`${process.pid} ${uuid} `));
    expect(lines.some((l) => l.endsWith('dispatching QUIT'))).toBe(true);
    expect(lines.some((l) => l.includes('Connection from'))).toBe(true);
  });

  it('STARTTLS: TLS facts and ESMTPS(A); the uuid survives the upgrade; a dropped client is remote_closed', async () => {
    const { port, out, maildir } = await server();
    const { wire: w } = await connect(port);
    await w.reply();
    await w.expect_cmd('EHLO client.example.test', 250);
    await w.expect_cmd('STARTTLS', 220);
    const t = track(await w.starttls({ servername: 'mx.example.test' }));
    const socket = t.stream;
    const secure = { secure: true, protocol: socket.getProtocol(), cipher: socket.getCipher().name, servername: 'mx.example.test' };
    await t.expect_cmd('EHLO client.example.test', 250);
    await t.expect_cmd(`AUTH PLAIN ${b64('bob\0bob\0secret')}`, 235);
    await send_message(t, 'secure');
    // the client goes away without QUIT
    socket.destroy();
    const facts = await facts_of(out);
    const uuid = facts[0]!.uuid as string;
    expect(new Set(facts.map((f) => f.uuid))).toEqual(new Set([uuid]));

    const [ehlo_clear, ehlo_tls] = [at(facts, 'ehlo', 0), at(facts, 'ehlo', 1)];
    expect(ehlo_clear.tls.secure).toBe(false);
    // after STARTTLS the client must greet again: nothing of the clear-text greeting is kept
    expect(ehlo_tls.tls).toEqual(secure);
    expect([ehlo_tls.hello, ehlo_tls.hello_host, ehlo_tls.opening_command, ehlo_tls.transmission_type]).toEqual([undefined, undefined, undefined, undefined]);
    expect(ehlo_tls.last_response).toBe('220 Go ahead with TLS');
    expect(ehlo_tls.meta.tenant).toEqual({ name: 'blue', tier: 2 }); // meta set in clear stays

    const mail = at(facts, 'mail');
    expect(mail).toMatchObject({
      tls: secure,
      opening_command: 'EHLO',
      transmission_type: 'ESMTPSA',
      authn_id: 'bob',
      authz_id: 'bob',
      auth_mechanism: 'PLAIN',
      user: 'bob', // no user value returned: the authn_id
    });
    expect(at(facts, 'queue').transaction_meta).toMatchObject({ reception_protocol: 'ESMTPSA', authn_id: 'bob', authz_id: 'bob' });
    const disconnect = at(facts, 'disconnect');
    expect(disconnect).toMatchObject({ remote_closed: true, transaction_count: 1, tls: secure });

    const [msg] = stored(maildir);
    expect(msg!.message).toContain(`with ESMTPSA (${secure.cipher} encrypted) id ${uuid}.1; `);
    expect(msg!.meta).toMatchObject({ reception_protocol: 'ESMTPSA' });
  });

  it('SMTPS (implicit TLS, with SNI) and HELO: TLS from the start, SMTP per RFC 3848', async () => {
    const { port, out } = await server({ smtps: true });
    const w = track(new TestClient(await tls_connect({ host: '127.0.0.1', port, servername: 'smtps.example.test' })));
    const socket = w.stream;
    await w.reply();
    await w.expect_cmd('HELO client.example.test', 250);
    await w.expect_cmd('MAIL FROM:<sender@other.test>', 250);
    await w.expect_cmd('QUIT', 221);
    const facts = await facts_of(out);
    const secure = { secure: true, protocol: socket.getProtocol(), cipher: socket.getCipher().name, servername: 'smtps.example.test' };
    expect(at(facts, 'connect').tls).toEqual(secure);
    expect(at(facts, 'connect').transmission_type).toBeUndefined();
    expect(at(facts, 'helo')).toMatchObject({ tls: secure, current_line: 'HELO client.example.test' });
    expect(at(facts, 'mail')).toMatchObject({ tls: secure, hello: 'helo', opening_command: 'HELO', transmission_type: 'SMTP' });
    expect(at(facts, 'mail').meta.reception_protocol).toBe('SMTP');
    expect(at(facts, 'disconnect')).toMatchObject({ remote_closed: false, transaction_count: 0 });
  });
});

// -- queue/maildir meta option ----------------------------------------------------------------

describe('queue/maildir meta', () => {
  async function maildir_runtime(line: string) {
    return make_runtime({ me: 'mx.example.test', rcpthosts: ['example.test'], plugins: ['rcpt_ok', line] });
  }

  it('is parsed anywhere after the maildir, once; without it no meta/ directory is made', async () => {
    const base = mkdtempSync(path.join(root, 'md-'));
    await maildir_runtime(`queue/maildir ${base}/a`);
    expect(existsSync(path.join(base, 'a', 'meta'))).toBe(false);
    const rt = await maildir_runtime(`queue/maildir ${base}/b meta`);
    expect(existsSync(path.join(base, 'b', 'meta'))).toBe(true);
    const p = rt.runtime.plugins.find((x) => x.plugin_name() === 'queue::maildir') as Plugin & { _write_meta: boolean; _subdirs?: string; _perms: number };
    expect(p._write_meta).toBe(true);
    const rt2 = await maildir_runtime(`queue/maildir ${base}/c meta %d/%l 750`);
    const p2 = rt2.runtime.plugins.find((x) => x.plugin_name() === 'queue::maildir') as typeof p;
    expect([p2._write_meta, p2._subdirs, p2._perms]).toEqual([true, '%d/%l', 0o750]);
    await expect(maildir_runtime(`queue/maildir ${base}/d meta meta`)).rejects.toThrow(/'meta' is given more than once/);
  });

  it('per-recipient copies each get a sidecar with the same meta', async () => {
    const base = mkdtempSync(path.join(root, 'md-'));
    const rt = await maildir_runtime(`queue/maildir ${base} %l meta`);
    const { session, client } = start_session(rt.runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    session.transaction.set_meta('queue', 'bulk');
    await client.cmd('RCPT TO:<x@example.test>');
    await client.cmd('RCPT TO:<y@example.test>');
    await client.cmd('DATA');
    expect((await client.cmd('Subject: s\r\n\r\nb\r\n.'))!.code).toBe(250);
    for (const user of ['x', 'y']) {
      const [name] = readdirSync(path.join(base, user, 'new'));
      const meta = JSON.parse(readFileSync(path.join(base, user, 'meta', `${name}.json`), 'utf8')) as Record<string, unknown>;
      expect(meta).toEqual({
        reception_protocol: 'ESMTP',
        received_via: '127.0.0.1:25',
        received_from: '127.0.0.1:40000',
        hostname: 'mx.example.test',
        queue: 'bulk',
      });
      expect(readdirSync(path.join(base, user, 'tmp'))).toEqual([]);
    }
    await client.cmd('QUIT');
  });

  it('a sidecar that cannot be written refuses the message with 452 and leaves nothing behind', async () => {
    const base = mkdtempSync(path.join(root, 'md-'));
    mkdirSync(base, { recursive: true });
    // meta/ pointing into /proc: no file can be created there, not even by root
    symlinkSync('/proc', path.join(base, 'meta'));
    const rt = await maildir_runtime(`queue/maildir ${base} meta`);
    const { client } = start_session(rt.runtime);
    await client.reply();
    await client.cmd('EHLO c.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    await client.cmd('RCPT TO:<x@example.test>');
    await client.cmd('DATA');
    const r = (await client.cmd('Subject: s\r\n\r\nb\r\n.'))!;
    expect(r.code).toBe(452);
    expect(r.text).toBe('queue error (open meta)');
    expect(readdirSync(path.join(base, 'new'))).toEqual([]);
    expect(readdirSync(path.join(base, 'tmp'))).toEqual([]);
    expect(rt.logged.some((l) => /queue error \(open meta\): .*\/meta\/.*\.json: /.test(l))).toBe(true);
    await client.cmd('QUIT');
  });
});
