// hosts_allow: the per-IP connection limit (with karma) and the hosts_allow file, called
// the way the master calls pre-connection hooks.
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, DENY, DENYSOFT, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';

interface HostsAllow extends Plugin {
  hook_pre_connection(t: unknown, args: Record<string, unknown>): number | [number, string] | [number];
  in_hosts_allow(ip: string): [number, string] | [number] | undefined;
  karma_bump(karma: number, max: number): number;
}

async function setup(files: Record<string, string | string[]> = {}, line = 'hosts_allow') {
  const rt = await make_runtime({ plugins: [line], ...files });
  // the master's qp: a fresh Connection per accepted socket
  const qp = new Qpsmtpd(rt.runtime, new Connection());
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as HostsAllow;
  return { ...rt, qp, view };
}

/** The arguments master.ts passes (child_addrs: IPs of the running sessions). */
function args(remote_ip: string, max_conn_ip: number, child_addrs: string[] = []) {
  return { remote_ip, remote_port: 40000, local_ip: '127.0.0.1', local_port: 25, max_conn_ip, child_addrs };
}

describe('hosts_allow: connections per IP', () => {
  it('counts this connection plus the running sessions from the same IP', async () => {
    const { view } = await setup();
    const t = undefined;
    expect(view.hook_pre_connection(t, args('10.1.1.1', 2, ['10.1.1.2', '10.1.1.1']))).toBe(DECLINED);
    expect(view.hook_pre_connection(t, args('10.1.1.1', 2, ['10.1.1.1', '10.1.1.1', '10.1.1.2']))).toEqual([
      DENYSOFT,
      'too many connections from 10.1.1.1, try again later',
    ]);
    // no limit set: no count
    expect(view.hook_pre_connection(t, args('10.1.1.1', 0, ['10.1.1.1', '10.1.1.1', '10.1.1.1']))).toBe(DECLINED);
  });

  it('compares addresses, not spellings (IPv4-mapped, IPv6 forms)', async () => {
    const { view } = await setup();
    expect(view.hook_pre_connection(undefined, args('10.1.1.1', 1, ['::ffff:10.1.1.1']))).toEqual([
      DENYSOFT,
      'too many connections from 10.1.1.1, try again later',
    ]);
    expect(view.hook_pre_connection(undefined, args('2001:db8::1', 1, ['2001:0db8:0:0::1']))).toEqual([
      DENYSOFT,
      'too many connections from 2001:db8::1, try again later',
    ]);
    expect(view.hook_pre_connection(undefined, args('2001:db8::1', 1, ['2001:db8::2']))).toBe(DECLINED);
  });

  it('karma_history: > 5 raises the limit by 3, <= 0 lowers it to 1', async () => {
    const { view, qp } = await setup();
    expect(view.karma_bump(6, 2)).toBe(5);
    expect(view.karma_bump(0, 2)).toBe(1);
    expect(view.karma_bump(-3, 2)).toBe(1);
    expect(view.karma_bump(3, 2)).toBe(2);
    const three = ['10.9.9.9', '10.9.9.9', '10.9.9.9'];
    qp.connection.notes('karma_history', 6);
    expect(view.hook_pre_connection(undefined, args('10.9.9.9', 2, three))).toBe(DECLINED); // 4 <= 5
    qp.connection.notes('karma_history', 0);
    expect(view.hook_pre_connection(undefined, args('10.9.9.9', 2, ['10.9.9.9']))).toEqual([
      DENYSOFT,
      'too many connections from 10.9.9.9, try again later',
    ]);
    expect(view.hook_pre_connection(undefined, args('10.9.9.9', 2, []))).toBe(DECLINED); // 1 <= 1
  });
});

describe('hosts_allow: the hosts_allow file', () => {
  const rules = [
    '192.168.3.4    DECLINED',
    '  192.168.3.0/24 DENY Sorry, known spam only source',
    '10.0.0.0/8 DENYSOFT   come back later',
    '10.1.2.3/8 DENY never matches: host bits set',
    '172.16.0.1 OK',
    '172.16.0.2 NO_SUCH_CONSTANT whatever',
    '172.16.0.3',
    '172.16.0.4 DENY',
  ];

  it('the first matching rule gives its constant and message', async () => {
    const { view } = await setup({ hosts_allow: rules });
    expect(view.in_hosts_allow('192.168.3.4')).toEqual([DECLINED]);
    expect(view.in_hosts_allow('192.168.3.5')).toEqual([DENY, 'Sorry, known spam only source']);
    expect(view.in_hosts_allow('10.200.1.1')).toEqual([DENYSOFT, 'come back later']);
    expect(view.in_hosts_allow('172.16.0.1')).toEqual([OK]);
    expect(view.in_hosts_allow('172.16.0.2')).toEqual([DECLINED, 'whatever']); // unknown constant
    expect(view.in_hosts_allow('172.16.0.3')).toBeUndefined(); // no constant: line skipped
    expect(view.in_hosts_allow('172.16.0.4')).toEqual([DENY]);
    expect(view.in_hosts_allow('192.168.4.1')).toBeUndefined();
    expect(view.in_hosts_allow('2001:db8::1')).toBeUndefined(); // IPv4 only
  });

  it('/0 matches everything, /32 is the default', async () => {
    const { view } = await setup({ hosts_allow: ['127.0.0.2 DENY just me', '0.0.0.0/0 DENYSOFT all'] });
    expect(view.in_hosts_allow('127.0.0.2')).toEqual([DENY, 'just me']);
    expect(view.in_hosts_allow('127.0.0.3')).toEqual([DENYSOFT, 'all']);
  });

  it('the limit is checked before the file', async () => {
    const { view } = await setup({ hosts_allow: ['10.0.0.0/8 OK'] });
    expect(view.hook_pre_connection(undefined, args('10.0.0.1', 1, ['10.0.0.1']))).toEqual([
      DENYSOFT,
      'too many connections from 10.0.0.1, try again later',
    ]);
    expect(view.hook_pre_connection(undefined, args('10.0.0.1', 1, []))).toEqual([OK]);
  });

  it('refuses arguments at start-up', async () => {
    await expect(setup({}, 'hosts_allow max 3')).rejects.toThrow(/hosts_allow: unknown argument 'max'/);
  });
});

describe('hosts_allow: run as the master runs pre-connection hooks', () => {
  it('accepts unlisted hosts; refuses listed ones with their message', async () => {
    const { runtime } = await setup({ hosts_allow: ['192.168.3.4 DECLINED', '192.168.3.0/24 DENY Sorry, known spam only source'] });
    const run = (ip: string, max = 0, kids: string[] = []) => new Qpsmtpd(runtime).run_hooks('pre-connection', args(ip, max, kids));
    expect(await run('192.168.3.4')).toMatchObject({ rc: DECLINED });
    expect(await run('127.0.0.1')).toMatchObject({ rc: DECLINED });
    // master: DENY → `550 <msg>`, DENYSOFT → `451 <msg>`
    expect(await run('192.168.3.9')).toMatchObject({ rc: DENY, msg: ['Sorry, known spam only source'] });
    expect(await run('127.0.0.1', 2, ['127.0.0.1', '127.0.0.1'])).toMatchObject({
      rc: DENYSOFT,
      msg: ['too many connections from 127.0.0.1, try again later'],
    });
  });
});
