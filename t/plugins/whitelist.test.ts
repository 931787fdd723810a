// whitelist: hosts (prefix and CIDR), HELO names, senders, recipients, per_recipient mode.
// (qpsmtpd has no plugin test for it.)
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, OK, Qpsmtpd, type Address, type Plugin } from '../../lib/index.js';
import { PLUGIN_DIR, REPO, make_runtime, mock_hook } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

const FIX = path.join(REPO, 't', 'fixtures', 'plugins-a');

interface Whitelist extends Plugin {
  _per_recipient: boolean;
  _merge: boolean;
  check_host(t: unknown, rcpt?: Address): number;
  helo_helper(t: unknown, helo: string): number;
  check_helo(t: unknown, arg?: string | Address): number;
  check_sender(t: unknown, arg?: Address): number;
  check_rcpt(t: unknown, rcpt?: Address): number;
}

async function setup(line = 'whitelist', files: Record<string, string | string[]> = {}, env: Record<string, string> = {}, ip = '192.168.1.10') {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files }, { env });
  const plugin = rt.runtime.plugins[0] as Whitelist;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: ip }));
  const view = qp.plugin_view(plugin) as Whitelist;
  return { ...rt, plugin, qp, view };
}

describe('whitelist: hosts', () => {
  const hosts = ['10.1.2.3', '192.168.', '172.16.0.0/12', '2001:db8:1::/48', 'not-an-ip/99', 'garbage'];

  it('exact address, start-anchored prefix, or CIDR block → note whitelisthost, karma +5, OK', async () => {
    for (const [ip, want] of [
      ['10.1.2.3', OK],
      ['10.1.2.30', OK], // "10.1.2.3" is a prefix of it, as in qpsmtpd
      ['10.1.2.4', DECLINED],
      ['192.168.200.1', OK],
      ['172.20.1.1', OK],
      ['172.32.0.1', DECLINED],
      ['2001:db8:1:ffff::1', OK],
      ['2001:db8:2::1', DECLINED],
      ['8.8.8.8', DECLINED],
    ] as const) {
      const { view, qp } = await setup('whitelist', { whitelisthosts: hosts }, {}, ip);
      expect([ip, view.check_host(undefined)]).toEqual([ip, want]);
      expect(qp.connection.notes('whitelisthost')).toBe(want === OK ? 1 : undefined);
      expect(qp.connection.notes('karma')).toBe(want === OK ? 5 : undefined);
    }
  });

  it('env WHITELISTCLIENT → note whitelistclient, karma +5, OK', async () => {
    const { view, qp } = await setup('whitelist', {}, { WHITELISTCLIENT: '' }, '8.8.8.8');
    expect(view.check_host(undefined)).toBe(OK);
    expect(qp.connection.notes('whitelistclient')).toBe(1);
    expect(qp.connection.notes('whitelisthost')).toBeUndefined();
    expect(qp.connection.notes('karma')).toBe(5);
  });
});

describe('whitelist: HELO, senders, recipients', () => {
  it('whitelisthelo: any case → note whitelisthelo', async () => {
    const { view, qp } = await setup('whitelist', { whitelisthelo: ['Friend.Example.NET'] });
    expect(view.check_helo(undefined, 'stranger.test')).toBe(DECLINED);
    expect(qp.connection.notes('whitelisthelo')).toBeUndefined();
    expect(view.check_helo(undefined, 'friend.example.net')).toBe(OK);
    expect(qp.connection.notes('whitelisthelo')).toBe(1);
  });

  it('whitelistsenders: address or domain, any case → transaction note whitelistsender', async () => {
    const { view, qp } = await setup('whitelist', { whitelistsenders: ['Boss@Corp.test', 'partner.test'] });
    const t = qp.transaction;
    expect(view.check_sender(t, qp.address('<boss@corp.test>'))).toBe(OK);
    expect(t.notes('whitelistsender')).toBe(1);
    const t2 = await qp.reset_transaction();
    expect(view.check_sender(t2, qp.address('<any@PARTNER.test>'))).toBe(OK);
    expect(view.check_sender(t2, qp.address('<clerk@corp.test>'))).toBe(DECLINED);
    expect(view.check_sender(t2, qp.address('<>'))).toBe(DECLINED);
  });

  it('whitelistrcpt: counts whitelisted recipients in the transaction note', async () => {
    const { view, qp } = await setup('whitelist', { whitelistrcpt: ['postmaster@example.test', 'abuse.example.test'] });
    const t = qp.transaction;
    expect(view.check_rcpt(t, qp.address('<Postmaster@example.test>'))).toBe(OK);
    expect(view.check_rcpt(t, qp.address('<x@example.test>'))).toBe(DECLINED);
    expect(view.check_rcpt(t, qp.address('<y@abuse.example.test>'))).toBe(OK);
    expect(t.notes('whitelistrcpt')).toBe(2);
  });

  it('normal mode registers connect, helo, ehlo, mail, rcpt', async () => {
    const { runtime } = await setup();
    for (const h of ['connect', 'helo', 'ehlo', 'mail', 'rcpt']) expect(runtime.hooks.get(h).map((e) => e.method)).toHaveLength(1);
    expect(runtime.hooks.get('rcpt')[0]!.method).toBe('check_rcpt');
  });

  it('refuses unknown arguments at start-up', async () => {
    await expect(setup('whitelist per_user 1')).rejects.toThrow(/whitelist: unknown argument 'per_user'/);
  });
});

describe('whitelist: per_recipient', () => {
  it('moves every check to rcpt (host, helo, sender, rcpt) and remembers the HELO name', async () => {
    const { runtime, view, qp } = await setup('whitelist per_recipient 1', { whitelisthelo: ['friend.test'] });
    expect(runtime.hooks.get('rcpt').map((e) => e.method)).toEqual(['check_host', 'check_helo', 'check_sender', 'check_rcpt']);
    expect(runtime.hooks.get('helo').map((e) => e.method)).toEqual(['helo_helper']);
    expect(runtime.hooks.has('connect')).toBe(false);
    expect(view._merge).toBe(true);
    const rcpt = qp.address('<u@example.test>');
    expect(view.check_helo(undefined, rcpt)).toBe(DECLINED);
    expect(view.helo_helper(undefined, 'FRIEND.test')).toBe(DECLINED);
    expect(view.check_helo(undefined, rcpt)).toBe(OK);
  });

  it('the sender comes from the transaction; lists are per recipient (user_config) merged with the global ones', async () => {
    const { runtime, view, qp } = await setup('whitelist per_recipient 1', { whitelistsenders: ['global.test'] });
    mock_hook(runtime, 'user_config', (_t: unknown, addr: Address, name: string) =>
      addr.user() === 'bob' && name === 'whitelistsenders' ? [OK, 'bobs-friend.test'] : DECLINED,
    );
    const t = qp.transaction;
    const bob = qp.address('<bob@example.test>');
    const eve = qp.address('<eve@example.test>');
    t.sender(qp.address('<x@bobs-friend.test>'));
    expect(view.check_sender(t, bob)).toBe(OK);
    expect(view.check_sender(t, eve)).toBe(DECLINED);
    t.sender(qp.address('<x@global.test>'));
    expect(view.check_sender(t, bob)).toBe(OK); // merged
    expect(view.check_sender(t, eve)).toBe(OK);

    const nomerge = await setup('whitelist per_recipient 1 merge 0', { whitelistsenders: ['global.test'] });
    mock_hook(nomerge.runtime, 'user_config', (_t: unknown, addr: Address) => (addr.user() === 'bob' ? [OK, 'bobs-friend.test'] : DECLINED));
    const t2 = nomerge.qp.transaction;
    t2.sender(nomerge.qp.address('<x@global.test>'));
    expect(nomerge.view.check_sender(t2, nomerge.qp.address('<bob@example.test>'))).toBe(DECLINED); // bob's own list only
    expect(nomerge.view.check_sender(t2, nomerge.qp.address('<eve@example.test>'))).toBe(OK); // no own list: global
  });
});

describe('whitelist: SMTP sessions', () => {
  const plugins = (first: string) => [first, 'test_result connect DENY go away', 'test_result rcpt DENY not here'];

  it('a whitelisted host skips later connect plugins; others are refused', async () => {
    const { runtime } = await make_runtime({
      me: 'mx.example.test',
      plugin_dirs: [PLUGIN_DIR, FIX],
      plugins: plugins('whitelist'),
      whitelisthosts: ['127.0.0.0/8'],
    });
    let s = start_session(runtime);
    expect((await s.client.reply())!.code).toBe(220);
    await s.client.cmd('QUIT');
    await s.done;

    s = start_session(runtime, { remote_ip: '192.0.2.1' });
    expect(await s.client.reply()).toMatchObject({ code: 550, text: 'go away' });
    await s.done;
  });

  it('whitelistrcpt accepts a recipient a later plugin would refuse; whitelistsenders marks the transaction', async () => {
    const { runtime } = await make_runtime({
      me: 'mx.example.test',
      plugin_dirs: [PLUGIN_DIR, FIX],
      plugins: ['whitelist', 'test_result rcpt DENY not here'],
      whitelistrcpt: ['postmaster@example.test'],
      whitelistsenders: ['friend.test'],
    });
    let note: unknown;
    mock_hook(runtime, 'rcpt', function (this: Plugin) {
      note = this.transaction.notes('whitelistsender');
    });
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect((await client.cmd('MAIL FROM:<a@friend.test>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<postmaster@example.test>')).toMatchObject({ code: 250, text: '<postmaster@example.test>, recipient ok' });
    expect(note).toBe(1);
    expect(await client.cmd('RCPT TO:<other@example.test>')).toMatchObject({ code: 550, text: 'not here' });
    await client.cmd('QUIT');
    await done;
  });
});
