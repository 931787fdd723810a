// relay: qpsmtpd's t/plugin_tests/relay as facts (with its t/config relayclients and
// norelayclients), inclusive CIDR matching, IPv6 prefixes, RELAYCLIENT, and SMTP sessions.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { cdb_make } from '../../lib/cdb.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface Relay extends Plugin {
  hook_connect(t: unknown): number;
  relay_only(): number;
  is_in_norelayclients(): boolean;
  is_in_cidr_block(blocks?: readonly string[]): boolean;
  is_octet_match(): boolean;
}

/** qpsmtpd's t/config/relayclients */
const RELAYCLIENTS = [
  '# used by plugins/relay',
  '# IPv4 format is IP, or IP part with trailing dot',
  '# e.g. "127.0.0.1", or "192.168."',
  '127.0.0.1 ',
  '# leading/trailing whitespace is ignored',
  ' 192.0. ',
  '#',
  '# IPv6 formats can be compressed or expanded, may include a prefixlen,',
  '# and can end on any nibble boundary. Nibble boundaries must be expressed',
  '# in expanded format.  (RFC 3849 example)',
  '2001:0DB8',
  '2001:DB8::1',
  '2001:DB8::1/32',
  '2001:0DB8:0000:0000:0000:0000:0000:0001',
];

/** qpsmtpd's t/config/norelayclients */
const NORELAYCLIENTS = ['# used by plugins/relay', '# test entries - http://tools.ietf.org/html/rfc5737', '192.0.99.5', '192.0.99.6', '192.0.98.', '# add your own entries below...'];

async function setup(files: Record<string, string | string[]> = {}, opts: { args?: string; env?: Record<string, string> } = {}) {
  const rt = await make_runtime(
    {
      plugins: [`relay ${opts.args ?? ''}`.trim(), 'rcpt_ok'],
      relayclients: RELAYCLIENTS,
      norelayclients: NORELAYCLIENTS,
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
      loglevel: '7',
      ...files,
    },
    { env: opts.env ?? {} },
  );
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '198.51.100.1' }));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Relay;
  const at = (ip: string) => {
    qp.connection.remote_ip(ip);
    return view;
  };
  return { ...rt, qp, view, at };
}

describe('relay: qpsmtpd plugin tests', () => {
  it('relay_only', async () => {
    const { view, qp } = await setup();
    qp.connection.relay_client(0);
    expect(view.relay_only()).toBe(DENY);
    qp.connection.relay_client(1);
    expect(view.relay_only()).toBe(OK);
  });

  it('is_octet_match', async () => {
    const { at } = await setup();
    expect(at('192.0.1.1').is_octet_match(), '192.0.1.1').toBe(true);
    expect(at('192.51.1.1').is_octet_match(), '192.51.1.1').toBe(false);
    expect(at('203.0.113.0').is_octet_match(), '203.0.113.0').toBe(false);
  });

  it('is_in_cidr_block', async () => {
    const { at } = await setup();
    expect(at('192.0.1.1').is_in_cidr_block(['192.0.1.0/24'])).toBe(true);
    expect(at('192.0.1.1').is_in_cidr_block(['192.0.0.0/24'])).toBe(false);
    expect(at('fdda:b13d:e431:ae06:00a1::').is_in_cidr_block(['fdda:b13d:e431:ae06::/64'])).toBe(true);
    expect(at('fdda:b13d:e431:ae06:00a1::').is_in_cidr_block(['fdda:b13d:e431:be17::'])).toBe(false);
  });

  it('is_in_norelayclients', async () => {
    const { at } = await setup();
    for (const ip of ['192.0.99.5', '192.0.98.1', '192.0.98.255']) expect(at(ip).is_in_norelayclients(), ip).toBe(true);
    for (const ip of ['192.0.99.7', '192.0.109.7']) expect(at(ip).is_in_norelayclients(), ip).toBe(false);
  });
});

describe('relay: CIDR blocks are inclusive (qpsmtpd: strictly inside)', () => {
  it('first and last address of a block, /32 and /128', async () => {
    const { at } = await setup();
    expect(at('192.0.2.0').is_in_cidr_block(['192.0.2.0/24'])).toBe(true);
    expect(at('192.0.2.255').is_in_cidr_block(['192.0.2.0/24'])).toBe(true);
    expect(at('192.0.3.0').is_in_cidr_block(['192.0.2.0/24'])).toBe(false);
    expect(at('198.51.100.7').is_in_cidr_block(['198.51.100.7/32'])).toBe(true);
    expect(at('198.51.100.8').is_in_cidr_block(['198.51.100.7/32'])).toBe(false);
    expect(at('2001:db8::').is_in_cidr_block(['2001:db8::/32'])).toBe(true);
    expect(at('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff').is_in_cidr_block(['2001:db8::/32'])).toBe(true);
    expect(at('2001:db9::').is_in_cidr_block(['2001:db8::/32'])).toBe(false);
    expect(at('2001:db8::25').is_in_cidr_block(['2001:DB8::25/128'])).toBe(true);
    expect(at('10.1.2.3').is_in_cidr_block(['10.1.0.7/16'])).toBe(true); // host bits ignored
    expect(at('10.1.2.3').is_in_cidr_block(['::ffff:10.1.0.0/112'])).toBe(true); // IPv4-mapped block
    expect(at('10.1.2.3').is_in_cidr_block(['2001:db8::/32'])).toBe(false); // other family
  });

  it('a malformed block is logged and skipped', async () => {
    const { at, logged } = await setup();
    expect(at('10.1.2.3').is_in_cidr_block(['10.1.0.0/33', 'bogus/8', '10.0.0.0/8'])).toBe(true);
    expect(logged.some((l) => l.includes("relay: relayclients: '10.1.0.0/33' is not a valid CIDR block"))).toBe(true);
    expect(logged.some((l) => l.includes("relay: relayclients: 'bogus/8' is not a valid CIDR block"))).toBe(true);
  });

  it('hook_connect uses the CIDR lines of relayclients', async () => {
    const { at, qp } = await setup({ relayclients: ['10.0.0.0/8', '192.0.2.0/24'] });
    at('10.255.255.255').hook_connect(undefined);
    expect(qp.connection.relay_client()).toBe(1);
    qp.connection.relay_client(0);
    at('11.0.0.0').hook_connect(undefined);
    expect(qp.connection.relay_client()).toBe(0);
  });
});

describe('relay: prefixes and IPv6', () => {
  it('the IPv6 entries of t/config/relayclients', async () => {
    const { at } = await setup({ relayclients: RELAYCLIENTS.filter((l) => !l.includes('/')) });
    // `2001:0DB8` is a nibble prefix of the expanded form; `2001:DB8::1` matches in any notation
    expect(at('2001:db8:1234::5').is_octet_match()).toBe(true);
    expect(at('2001:0db8:0:0:0:0:0:1').is_octet_match()).toBe(true);
    expect(at('2001:db9::1').is_octet_match()).toBe(false);
    expect(at('::1').is_octet_match()).toBe(true); // always
  });

  it('group prefixes ending in a colon work as documented (qpsmtpd never matched them)', async () => {
    const { at } = await setup({ relayclients: ['2001:db8:e431:ae06:', 'fdda:0b13:'] });
    expect(at('2001:db8:e431:ae06::25').is_octet_match()).toBe(true);
    expect(at('2001:0db8:e431:ae06:1:2:3:4').is_octet_match()).toBe(true);
    expect(at('2001:db8:e431:ae07::25').is_octet_match()).toBe(false);
    expect(at('fdda:b13::1').is_octet_match()).toBe(true);
    expect(at('fdda:b14::1').is_octet_match()).toBe(false);
  });

  it('IPv4 prefixes end at a dot; a full IP matches only itself', async () => {
    const { at } = await setup({ relayclients: ['10.', '192.168.42.', '198.51.100.7'] });
    expect(at('10.9.8.7').is_octet_match()).toBe(true);
    expect(at('100.9.8.7').is_octet_match()).toBe(false);
    expect(at('192.168.42.200').is_octet_match()).toBe(true);
    expect(at('192.168.4.20').is_octet_match()).toBe(false);
    expect(at('198.51.100.7').is_octet_match()).toBe(true);
    expect(at('198.51.100.70').is_octet_match()).toBe(false);
  });

  it('morerelayclients (CDB map): IPs and prefixes', async () => {
    const { at, dir } = await setup({ relayclients: [], morerelayclients: ['203.0.113.9', '172.16.', '2001:db8:5:'] });
    writeFileSync(
      path.join(dir, 'morerelayclients.cdb'),
      cdb_make([
        ['203.0.113.9', '1'],
        ['172.16.', '1'],
        ['2001:db8:5:', '1'],
      ]),
    );
    expect(at('203.0.113.9').is_octet_match()).toBe(true);
    expect(at('203.0.113.10').is_octet_match()).toBe(false);
    expect(at('172.16.0.1').is_octet_match()).toBe(true);
    expect(at('2001:db8:5::1').is_octet_match()).toBe(true);
    expect(at('2001:db8:6::1').is_octet_match()).toBe(false);
  });

  it('norelayclients prefixes work for IPv6 too', async () => {
    const { at } = await setup({ norelayclients: ['2001:db8:bad:', '2001:db8::99'] });
    expect(at('2001:db8:bad::1').is_in_norelayclients()).toBe(true);
    expect(at('2001:0db8:0000::0099').is_in_norelayclients()).toBe(true);
    expect(at('2001:db8:600d::1').is_in_norelayclients()).toBe(false);
  });
});

describe('relay: hook_connect order', () => {
  it('norelayclients beats relayclients and RELAYCLIENT', async () => {
    const { at, qp, logged } = await setup({}, { env: { RELAYCLIENT: '' } });
    qp.connection.relay_client(1);
    expect(at('192.0.99.5').hook_connect(undefined)).toBe(DECLINED);
    expect(qp.connection.relay_client()).toBe(0);
    expect(logged.some((l) => l.endsWith('relay: fail, disabled by norelayclients'))).toBe(true);
  });

  it('RELAYCLIENT (even empty) allows relaying', async () => {
    const { at, qp, logged } = await setup({ relayclients: [] }, { env: { RELAYCLIENT: '' } });
    at('203.0.113.1').hook_connect(undefined);
    expect(qp.connection.relay_client()).toBe(1);
    expect(logged.some((l) => l.endsWith('relay: pass, enabled by env'))).toBe(true);
  });

  it('no match: relay_client untouched', async () => {
    const { at, qp, logged } = await setup();
    at('203.0.113.1').hook_connect(undefined);
    expect(qp.connection.relay_client()).toBeUndefined();
    expect(logged.some((l) => l.endsWith('relay: skip, no match'))).toBe(true);
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(make_runtime({ plugins: ['relay onl 1'] })).rejects.toThrow(/plugin relay: unknown argument 'onl'/);
    await expect(make_runtime({ plugins: ['relay only'] })).rejects.toThrow(/plugin relay: argument 'only' needs a value/);
  });
});

describe('relay: SMTP sessions', () => {
  async function rcpt(runtime: Parameters<typeof start_session>[0], ip: string, to: string) {
    const { client, done } = start_session(runtime, { remote_ip: ip });
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('EHLO client.test');
    await client.cmd('MAIL FROM:<a@example.net>');
    const r = await client.cmd(`RCPT TO:${to}`);
    await client.cmd('QUIT');
    await done;
    return r;
  }

  it('a relay client may send anywhere; others only to local domains', async () => {
    const { runtime } = await setup({ relayclients: ['192.0.2.0/24', '198.51.100.'] });
    expect(await rcpt(runtime, '192.0.2.0', '<x@elsewhere.test>')).toMatchObject({ code: 250, text: '<x@elsewhere.test>, recipient ok' });
    expect(await rcpt(runtime, '192.0.2.255', '<x@elsewhere.test>')).toMatchObject({ code: 250 });
    expect(await rcpt(runtime, '198.51.100.44', '<x@elsewhere.test>')).toMatchObject({ code: 250 });
    expect(await rcpt(runtime, '203.0.113.5', '<x@elsewhere.test>')).toMatchObject({ code: 550, text: 'Relaying denied (#5.7.1)' });
    expect(await rcpt(runtime, '203.0.113.5', '<x@example.test>')).toMatchObject({ code: 250 });
  });

  it('only 1: everyone but relay clients gets 550 relaying denied', async () => {
    const { runtime } = await setup({ relayclients: ['192.0.2.0/24'] }, { args: 'only 1' });
    expect(await rcpt(runtime, '192.0.2.7', '<x@elsewhere.test>')).toMatchObject({ code: 250 });
    expect(await rcpt(runtime, '203.0.113.5', '<x@example.test>')).toMatchObject({ code: 550, text: 'relaying denied' });
  });

  it('only 0 does not restrict', async () => {
    const { runtime } = await setup({ relayclients: [] }, { args: 'only 0' });
    expect(await rcpt(runtime, '203.0.113.5', '<x@example.test>')).toMatchObject({ code: 250 });
  });
});
