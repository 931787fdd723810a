// rcpt_ok: qpsmtpd's t/plugin_tests/rcpt_ok as facts, plus SMTP sessions.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Address, Connection, DENY, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { cdb_make } from '../../lib/cdb.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface RcptOk extends Plugin {
  hook_rcpt(t: unknown, r: Address | undefined): number | [number, string];
  is_in_rcpthosts(host: string): boolean;
  is_in_morercpthosts(host: string): boolean;
  get_rcpt_host(r: Address | undefined | null): string | undefined;
}

/**
 * t/config as qpsmtpd's tests see it: rcpthosts = localhost, me = host.example.org. As in a
 * qmail control dir, `morercpthosts` (the source list, which also decides the config dir the
 * map is looked up in) sits next to `morercpthosts.cdb` (what qmail-newmrh builds from it).
 */
async function setup(files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({
    plugins: ['rcpt_ok'],
    me: 'host.example.org',
    rcpthosts: ['localhost'],
    morercpthosts: ['more.example.net'],
    ...files,
  });
  writeFileSync(path.join(rt.dir, 'morercpthosts.cdb'), cdb_make([['more.example.net', '1']]));
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as RcptOk;
  return { ...rt, qp, view };
}

const parse = (s: string) => Address.parse(s);

describe('rcpt_ok: qpsmtpd plugin tests', () => {
  it('get_rcpt_host', async () => {
    const { view } = await setup();
    expect(view.get_rcpt_host(parse('<me@example.com>'))).toBe('example.com');
    expect(view.get_rcpt_host(parse('<me@exaMple.com>'))).toBe('example.com');
    expect(view.get_rcpt_host(parse('<root@example.com>'))).toBe('example.com');
    // special postmaster: the `me` value
    expect(view.get_rcpt_host(parse('<postmaster>'))).toBe('host.example.org');
    // Qpsmtpd::Address does not parse <abuse> (no domain), so there is no host
    expect(parse('<abuse>')).toBeUndefined();
    expect(view.get_rcpt_host(parse('<abuse>'))).toBeUndefined();
    expect(view.get_rcpt_host(parse('<>'))).toBeUndefined();
    expect(view.get_rcpt_host(parse('<@example.com>'))).toBeUndefined();
  });

  it('get_rcpt_host gives `me` (lower-cased) for a host-less abuse address too', async () => {
    const { view } = await setup({ me: 'Host.Example.ORG' });
    const a = Address.parse('<postmaster>')!;
    a.user('Abuse'); // the core never builds one (<abuse> does not parse), a plugin might
    expect(view.get_rcpt_host(a)).toBe('host.example.org');
    a.user('someone');
    expect(view.get_rcpt_host(a)).toBeUndefined();
    expect(view.hook_rcpt(undefined, a)).toBe(OK); // no host, not special: accepted, as in qpsmtpd
  });

  it('is_in_rcpthosts', async () => {
    const { view, qp } = await setup();
    const first = qp.config_list('rcpthosts')[0]!;
    expect(view.is_in_rcpthosts(first)).toBe(true);
    expect(view.is_in_rcpthosts('localhost')).toBe(true);
    expect(view.is_in_rcpthosts('example.com')).toBe(false);
  });

  it('is_in_morercpthosts', async () => {
    const { view, qp } = await setup();
    const [domain] = qp.config_map('morercpthosts').keys();
    expect(domain).toBe('more.example.net');
    expect(view.is_in_morercpthosts(domain!)).toBe(true);
    expect(view.is_in_morercpthosts('example.com')).toBe(false);
  });

  it('hook_rcpt: localhost OK, example.com DENY, relay client OK', async () => {
    const { view, qp } = await setup();
    const t = qp.transaction;
    expect(view.hook_rcpt(t, parse('<user@localhost>'))).toBe(OK);
    const r = view.hook_rcpt(t, parse('<user@example.com>'));
    expect(r).toEqual([DENY, 'Relaying denied (#5.7.1)']);
    qp.connection.relay_client(1);
    expect(view.hook_rcpt(t, parse('<user@example.com>'))).toBe(OK);
    qp.connection.relay_client(0);
    expect(view.hook_rcpt(t, parse('<user@example.com>'))).toEqual([DENY, 'Relaying denied (#5.7.1)']);
  });
});

describe('rcpt_ok: matching rules', () => {
  it('`me` counts as a local domain; `.suffix` entries match subdomains; exact entries do not', async () => {
    const { view } = await setup({ rcpthosts: ['example.test', '  .Sub.Example.Test'] });
    expect(view.is_in_rcpthosts('host.example.org')).toBe(true);
    expect(view.is_in_rcpthosts('example.test')).toBe(true);
    expect(view.is_in_rcpthosts('a.example.test')).toBe(false);
    expect(view.is_in_rcpthosts('deep.sub.example.test')).toBe(true);
    expect(view.is_in_rcpthosts('sub.example.test')).toBe(false);
    expect(view.is_in_rcpthosts('xsub.example.test')).toBe(false);
  });

  it('whitelisted host and sender are immune', async () => {
    const { view, qp } = await setup();
    qp.connection.notes('whitelisthost', 1);
    expect(view.hook_rcpt(qp.transaction, parse('<u@else.test>'))).toBe(OK);
    qp.connection.notes('whitelisthost', 0);
    qp.transaction.notes('whitelistsender', 1);
    expect(view.hook_rcpt(qp.transaction, parse('<u@else.test>'))).toBe(OK);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['rcpt_ok bogus 1'] })).rejects.toThrow(/unknown argument 'bogus'/);
  });
});

describe('rcpt_ok: SMTP session', () => {
  it('accepts local domains, refuses relaying with 550 Relaying denied (#5.7.1)', async () => {
    const { runtime } = await setup({ me: 'mx.example.test', rcpthosts: ['example.test', '.sub.example.test'] });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect((await client.cmd('EHLO client.test'))!.code).toBe(250);
    expect((await client.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<x@other.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    expect(await client.cmd('RCPT TO:<X@Example.Test> NOTIFY=NEVER')).toMatchObject({ code: 250, text: '<X@Example.Test>, recipient ok' });
    expect(await client.cmd('RCPT TO:<y@deep.sub.example.test>')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<z@more.example.net>')).toMatchObject({ code: 250 });
    expect(await client.cmd('RCPT TO:<postmaster>')).toMatchObject({ code: 250, text: '<postmaster>, recipient ok' });
    expect(await client.cmd('RCPT TO:<x@mx.example.test>')).toMatchObject({ code: 250 });
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221 });
    await done;
  });

  it('a relay client may send anywhere', async () => {
    const { runtime } = await setup({ me: 'mx.example.test', rcpthosts: ['example.test'] });
    const { client, session, done } = start_session(runtime);
    session.connection.relay_client(1);
    await client.reply();
    await client.cmd('HELO client.test');
    await client.cmd('MAIL FROM:<a@b.test>');
    expect(await client.cmd('RCPT TO:<x@other.test>')).toMatchObject({ code: 250, text: '<x@other.test>, recipient ok' });
    await client.cmd('QUIT');
    await done;
  });
});
