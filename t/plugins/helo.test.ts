// helo: qpsmtpd's t/plugin_tests/helo as facts (DNS answered by a dns2 server on 127.0.0.1),
// the decisions where qpsmtpd-ts ports the intent instead of a bug, and SMTP sessions.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Connection,
  DECLINED,
  DENY,
  DENYSOFT,
  DENY_DISCONNECT,
  MailHeader,
  Qpsmtpd,
  type Plugin,
  type Transaction,
} from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_dns, type TestDns } from '../lib/dns-server.js';
import { start_session } from '../lib/session.js';

type Err = [string, string] | undefined;
interface Helo extends Plugin {
  _helo_tests: string[];
  helo_handler(t: unknown, host: string | undefined): Promise<number | [number, string]>;
  hook_data_post(t: Transaction): number;
  is_in_badhelo(host: string): Err;
  is_regex_match(host: string, pattern: string): Err;
  invalid_localhost(host: string | undefined): Err;
  is_plain_ip(host: string): Err;
  is_address_literal(host: string): Err;
  is_forged_literal(host: string): Err;
  is_not_fqdn(host: string): Err;
  no_forward_dns(host: string): Promise<Err>;
  no_reverse_dns(host: string, ip?: string): Promise<Err>;
  no_matching_dns(host: string): Err;
  check_ip_match(ip: string | undefined): void;
  check_name_match(dns: string | undefined, helo: string): void;
}

let dns: TestDns;
let deaf: TestDns;

beforeAll(async () => {
  dns = await start_dns({
    'A perl.org': ['192.0.2.77'],
    'PTR 165.51.128.66.in-addr.arpa': ['mail.theartfarm.com'],
    'A mail.example.test': ['192.0.2.10'],
    'PTR 10.2.0.192.in-addr.arpa': ['mail.example.test'],
    'A pool.example.test': ['192.0.2.99'],
    'A elsewhere.example.net': ['198.51.100.7'],
    'A nodata.example.test': [],
    'AAAA nodata.example.test': [],
    'A v6.example.test': [],
    'AAAA v6.example.test': ['2001:db8::10'],
    'PTR 11.2.0.192.in-addr.arpa': [],
  });
  deaf = await start_dns({}, { blackhole: true });
});

afterAll(async () => {
  await dns?.close();
  await deaf?.close();
});

async function setup(args = '', files: Record<string, string | string[]> = {}, conn: Record<string, unknown> = { remote_ip: '192.0.2.10' }) {
  const rt = await make_runtime({
    plugins: [`helo ${args}`.trim()],
    dns_servers: `127.0.0.1:${dns.port}`,
    badhelo: ['# these domains never use their domain when greeting us', 'aol.com', 'yahoo.com'],
    loglevel: '7',
    ...files,
  });
  const qp = new Qpsmtpd(rt.runtime, new Connection().start(conn));
  const view = qp.plugin_view(rt.runtime.plugins[0]!) as Helo;
  return { ...rt, qp, view };
}

describe('helo: qpsmtpd plugin tests', () => {
  it('helo_handler: an empty host is tolerated (karma -2)', async () => {
    const { view, qp } = await setup();
    expect(await view.helo_handler(undefined, undefined)).toBe(DECLINED);
    expect(qp.connection.notes('karma')).toBe(-2);
  });

  it('is_in_badhelo', async () => {
    const { view } = await setup();
    expect(view.is_in_badhelo('yahoo.com')).toEqual(['I do not believe you are yahoo.com.', 'in badhelo']);
    expect(view.is_in_badhelo('YAHOO.com')).toEqual(['I do not believe you are YAHOO.com.', 'in badhelo']);
    expect(view.is_in_badhelo('example.com')).toBeUndefined();
  });

  it('is_regex_match, with ! negation', async () => {
    const { view } = await setup();
    expect(view.is_regex_match('yahoo.com', 'ya.oo\\.com$')).toEqual(['Your HELO hostname is not allowed', 'badhelo pattern match (ya.oo\\.com$)']);
    expect(view.is_regex_match('yoda.com', 'ya.oo\\.com$')).toBeUndefined();
    expect(view.is_regex_match('host-only', '!\\.')).toEqual(['Your HELO hostname is not allowed', 'badhelo pattern match (!\\.)']);
    expect(view.is_regex_match('host.example', '!\\.')).toBeUndefined();
  });

  it('invalid_localhost', async () => {
    const { view, qp } = await setup();
    for (const ip of [undefined, '', '192.0.99.5']) {
      qp.connection.remote_ip(ip);
      expect(view.invalid_localhost('localhost'), `localhost from ${ip}`).toEqual(['You are not localhost', 'invalid localhost']);
      expect(view.invalid_localhost('LocalHost'), `LocalHost from ${ip}`).toBeDefined();
      expect(view.invalid_localhost('not-localhost'), `not-localhost from ${ip}`).toBeUndefined();
    }
    for (const ip of ['::1', '127.0.0.1']) {
      qp.connection.remote_ip(ip);
      expect(view.invalid_localhost('not-localhost')).toBeUndefined();
      expect(view.invalid_localhost('localhost')).toBeUndefined();
    }
  });

  it('is_plain_ip', async () => {
    const { view } = await setup();
    expect(view.is_plain_ip('1.0.0.0')).toEqual(['Plain IP is invalid HELO hostname (RFC 2821)', 'plain IP']);
    expect(view.is_plain_ip('254.254.254.254')).toBeDefined();
    expect(view.is_plain_ip('[254.254.254.254]')).toBeUndefined();
  });

  it('is_address_literal', async () => {
    const { view } = await setup();
    expect(view.is_address_literal('[1.0.0.0]')).toEqual(['RFC 2821 allows an address literal, but we do not', 'bracketed IP']);
    expect(view.is_address_literal('[254.254.254.254]')).toBeDefined();
    expect(view.is_address_literal('254.254.254.254')).toBeUndefined();
  });

  it('no_forward_dns (perl.org resolves, perl.test does not exist)', async () => {
    const { view } = await setup();
    expect(await view.no_forward_dns('perl.org')).toBeUndefined();
    expect(await view.no_forward_dns('perl.test')).toEqual(['HELO hostname does not exist', 'no such host']);
    expect(dns.queries).toContain('A perl.org');
  });

  it('no_reverse_dns', async () => {
    const { view } = await setup();
    expect(await view.no_reverse_dns('test-host', '192.0.2.0')).toEqual(['no rDNS for 192.0.2.0', 'no rDNS']);
    expect(await view.no_reverse_dns('test-host', '192.0.2.1')).toEqual(['no rDNS for 192.0.2.1', 'no rDNS']);
    expect(await view.no_reverse_dns('mail.theartfarm.com', '66.128.51.165')).toBeUndefined();
  });

  it('no_matching_dns', async () => {
    const { view, qp } = await setup();
    qp.connection.notes('helo_forward_match', undefined);
    qp.connection.notes('helo_reverse_match', undefined);
    expect(view.no_matching_dns('matt.test')).toEqual(['That HELO hostname fails FCrDNS', 'no matching DNS']);
    qp.connection.notes('helo_forward_match', 1);
    expect(view.no_matching_dns('matt.test')).toBeUndefined();
    expect(qp.connection.notes('karma')).toBeUndefined();
    qp.connection.notes('helo_reverse_match', 1);
    expect(view.no_matching_dns('matt.test')).toBeUndefined();
    expect(qp.connection.notes('karma')).toBe(1); // a perfect match
  });

  it('check_ip_match', async () => {
    const { view, qp } = await setup();
    const good = [
      ['192.0.2.1', '192.0.2.1', 'exact'],
      ['192.0.2.1', '192.0.2.2', 'network'],
      ['2001:db8::1', '2001:db8::1', 'exact'],
      ['2001:db8::1', '2001:db8::2', 'network'],
      ['2001:db8::1', '2001:0db8:0:0:0:0:0:1', 'exact, other notation'],
    ];
    const bad = [
      ['192.0.2.1', '192.0.1.1', 'miss'],
      ['2001:db8::1', '2001:db7::1', 'miss'],
      ['192.0.2.1', '2001:db8::1', 'other family'],
    ];
    for (const [ip, ip2, r] of good) {
      qp.connection.remote_ip(ip);
      qp.connection.notes('helo_forward_match', 0);
      view.check_ip_match(ip2);
      expect(qp.connection.notes('helo_forward_match'), r).toBe(1);
    }
    for (const [ip, ip2, r] of bad) {
      qp.connection.remote_ip(ip);
      qp.connection.notes('helo_forward_match', 0);
      view.check_ip_match(ip2);
      expect(qp.connection.notes('helo_forward_match'), r).toBe(0);
    }
  });

  it('check_name_match', async () => {
    const { view, qp } = await setup();
    const c = qp.connection;
    c.notes('helo_reverse_match', 0);
    view.check_name_match('mx0.example.com', 'mx0.example.com');
    expect(c.notes('helo_reverse_match'), 'exact').toBe(1);
    c.notes('helo_reverse_match', 0);
    view.check_name_match('mx0.example.com', 'mx1.example.com');
    expect(c.notes('helo_reverse_match'), 'domain').toBe(1);
    c.notes('helo_reverse_match', 0);
    view.check_name_match('mx0.example.com', 'mx0.example.net');
    expect(c.notes('helo_reverse_match'), 'other domain').toBe(0);
    view.check_name_match('localhost', 'localhost');
    expect(c.notes('helo_reverse_match'), 'not an FQDN').toBe(0);
  });
});

describe('helo: policies and rejection', () => {
  it('the tests of each policy, in order', async () => {
    expect((await setup()).view._helo_tests).toEqual(['is_in_badhelo', 'invalid_localhost', 'is_forged_literal', 'is_plain_ip']);
    expect((await setup('policy rfc')).view._helo_tests).toEqual([
      'is_in_badhelo',
      'invalid_localhost',
      'is_forged_literal',
      'is_plain_ip',
      'is_not_fqdn',
      'no_forward_dns',
      'no_reverse_dns',
    ]);
    expect((await setup('policy strict')).view._helo_tests.slice(-2)).toEqual(['is_address_literal', 'no_matching_dns']);
  });

  it('rejects with DENY_DISCONNECT by default and lowers karma by 1', async () => {
    const { view, qp } = await setup();
    expect(await view.helo_handler(undefined, 'aol.com')).toEqual([DENY_DISCONNECT, 'I do not believe you are aol.com.']);
    expect(qp.connection.notes('karma')).toBe(-1);
    expect(await view.helo_handler(undefined, 'mail.example.test')).toBe(DECLINED);
  });

  it('reject_type is honoured (qpsmtpd forced disconnect)', async () => {
    expect(await (await setup('reject_type temp')).view.helo_handler(undefined, 'aol.com')).toEqual([DENYSOFT, 'I do not believe you are aol.com.']);
    expect(await (await setup('reject_type perm')).view.helo_handler(undefined, 'aol.com')).toEqual([DENY, 'I do not believe you are aol.com.']);
  });

  it('reject 0 only logs; reject naughty defers to the naughty plugin', async () => {
    const a = await setup('reject 0');
    expect(await a.view.helo_handler(undefined, 'aol.com')).toBe(DECLINED);
    expect(a.logged.some((l) => l.endsWith('helo: fail, tolerated, in badhelo'))).toBe(true);
    const b = await setup('reject naughty');
    expect(await b.view.helo_handler(undefined, 'aol.com')).toBe(DECLINED);
    expect(b.qp.connection.notes('naughty')).toBe('(helo) I do not believe you are aol.com.');
    expect(b.qp.connection.notes('naughty_reject_type')).toBe('disconnect');
  });

  it('immune clients are not checked', async () => {
    const { view, qp } = await setup();
    qp.connection.relay_client(1);
    expect(await view.helo_handler(undefined, 'aol.com')).toBe(DECLINED);
    qp.connection.relay_client(0);
    qp.connection.notes('whitelisthost', 1);
    expect(await view.helo_handler(undefined, 'aol.com')).toBe(DECLINED);
  });

  it('refuses unknown arguments and policies at start-up', async () => {
    await expect(make_runtime({ plugins: ['helo polcy rfc'] })).rejects.toThrow(/plugin helo: unknown argument 'polcy'/);
    await expect(make_runtime({ plugins: ['helo policy paranoid'] })).rejects.toThrow(/policy must be lenient, rfc or strict, not 'paranoid'/);
    await expect(make_runtime({ plugins: ['helo timeout soon'] })).rejects.toThrow(/timeout must be a positive number/);
  });
});

describe('helo: bugs of qpsmtpd 1.00 ported as intended', () => {
  it('a bare IP gets the plain-IP message (qpsmtpd: "Forged IPs" for every bare IP)', async () => {
    const { view, qp } = await setup();
    expect(view.is_forged_literal('1.2.3.4')).toBeUndefined();
    expect(await view.helo_handler(undefined, '1.2.3.4')).toEqual([DENY_DISCONNECT, 'Plain IP is invalid HELO hostname (RFC 2821)']);
    qp.connection.remote_ip('127.0.0.1');
    expect(await view.helo_handler(undefined, '127.0.0.1')).toEqual([DENY_DISCONNECT, 'Plain IP is invalid HELO hostname (RFC 2821)']);
    expect(await view.helo_handler(undefined, '2001:db8::1')).toEqual([DENY_DISCONNECT, 'Plain IP is invalid HELO hostname (RFC 2821)']);
  });

  it('an address literal must name the client IP (qpsmtpd let every literal pass)', async () => {
    const { view, qp } = await setup();
    expect(view.is_forged_literal('[192.0.2.10]')).toBeUndefined();
    expect(view.is_forged_literal('[192.0.2.11]')).toEqual(['Forged IPs not accepted here', 'forged IP literal']);
    expect(await view.helo_handler(undefined, '[1.2.3.4]')).toEqual([DENY_DISCONNECT, 'Forged IPs not accepted here']);
    expect(await view.helo_handler(undefined, '[192.0.2.10]')).toBe(DECLINED);
    expect(view.is_forged_literal('[1.2.3.999]')).toBeUndefined(); // not an IP: not a literal
    qp.connection.remote_ip('2001:db8::25');
    expect(view.is_forged_literal('[IPv6:2001:DB8:0::25]')).toBeUndefined();
    expect(view.is_forged_literal('[IPv6:2001:db8::26]')).toBeDefined();
    expect(view.is_address_literal('[IPv6:2001:db8::25]')).toBeDefined();
    expect(view.is_not_fqdn('[IPv6:2001:db8::25]')).toBeUndefined();
  });

  it('IPs containing 255 are IPs (qpsmtpd: not valid, so they passed)', async () => {
    const { view } = await setup();
    expect(view.is_plain_ip('192.0.2.255')).toBeDefined();
    expect(view.is_plain_ip('255.1.2.3')).toBeDefined();
    expect(view.is_forged_literal('[192.0.255.1]')).toBeDefined();
    expect(view.is_address_literal('[10.255.0.1]')).toBeDefined();
  });
});

describe('helo: badhelo patterns', () => {
  const badhelo = ['aol.com', '^mx[0-9]+\\.spam\\.test$', '!\\.', '(unclosed', '!(also[', '\\Abad\\z', '(?i)SHOUT'];

  it('compiles patterns safely: broken ones are logged at start-up and when met, and never match', async () => {
    const { view, logged } = await setup('', { badhelo });
    expect(logged.some((l) => l.includes("badhelo pattern '(unclosed' is not a valid regular expression"))).toBe(true);
    expect(logged.some((l) => l.includes("badhelo pattern '!(also[' is not a valid regular expression"))).toBe(true);
    // a pattern hit answers with is_in_badhelo's own text, as qpsmtpd does
    expect(view.is_in_badhelo('mx12.spam.test')).toEqual(['I do not believe you are mx12.spam.test.', 'in badhelo']);
    expect(view.is_in_badhelo('MX12.Spam.Test')).toBeDefined(); // the name is lower-cased first
    expect(view.is_in_badhelo('mx12.spam.test.example')).toBeUndefined();
    expect(view.is_in_badhelo('singlelabel')).toEqual(['I do not believe you are singlelabel.', 'in badhelo']);
    expect(view.is_in_badhelo('bad')).toBeDefined(); // \A…\z
    expect(view.is_in_badhelo('notbad.example')).toBeUndefined();
    expect(view.is_in_badhelo('shout.example')).toBeDefined(); // (?i)
    expect(view.is_in_badhelo('fine.example')).toBeUndefined(); // the broken negated pattern rejects nobody
    expect(view.is_regex_match('x.example', '!(also[')).toBeUndefined();
    const broken = () => logged.filter((l) => l.includes("'(unclosed' is not a valid")).length;
    const n = broken();
    view.is_in_badhelo('another.example');
    expect(broken()).toBe(n + 1);
  });
});

describe('helo: rfc and strict DNS tests', () => {
  it('is_not_fqdn', async () => {
    const { view } = await setup('policy rfc');
    expect(view.is_not_fqdn('host')).toEqual(['HELO name is not fully qualified. Read RFC 2821', 'not FQDN']);
    expect(view.is_not_fqdn('host_1.example.test')).toEqual(['HELO name contains invalid FQDN characters. Read RFC 1035', 'invalid FQDN chars']);
    expect(view.is_not_fqdn('[192.0.2.1]')).toBeUndefined();
    expect(view.is_not_fqdn('mail.example.test')).toBeUndefined();
  });

  it('no_forward_dns: NODATA does not resolve; AAAA counts; address literals are skipped', async () => {
    const { view, qp } = await setup('policy rfc');
    expect(await view.no_forward_dns('nodata.example.test')).toEqual(['HELO hostname did not resolve', 'no forward DNS']);
    expect(await view.no_forward_dns('v6.example.test')).toBeUndefined();
    const before = dns.queries.length;
    expect(await view.no_forward_dns('[192.0.2.1]')).toBeUndefined();
    expect(dns.queries.length).toBe(before);
    qp.connection.notes('helo_forward_match', undefined);
    expect(await view.no_forward_dns('pool.example.test')).toBeUndefined();
    expect(qp.connection.notes('helo_forward_match')).toBe(1); // 192.0.2.99 is in the client's /24
  });

  it('no_reverse_dns: NODATA and lookup failures', async () => {
    const { view } = await setup('policy rfc');
    expect(await view.no_reverse_dns('x.example.test', '192.0.2.11')).toEqual(['no reverse DNS for 192.0.2.11', 'no rDNS']);
    const slow = await setup('policy rfc timeout 1', { dns_servers: `127.0.0.1:${deaf.port}` });
    const t0 = Date.now();
    expect(await slow.view.no_reverse_dns('x.example.test', '192.0.2.12')).toEqual(['error getting reverse DNS for 192.0.2.12', 'rDNS TIMEOUT']);
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it('no_forward_dns: a failing resolver is logged and passes', async () => {
    const slow = await setup('policy rfc dns_timeout 1', { dns_servers: `127.0.0.1:${deaf.port}` });
    expect(await slow.view.no_forward_dns('mail.example.test')).toBeUndefined();
    expect(slow.logged.some((l) => l.includes('helo: skip, query failed (TIMEOUT'))).toBe(true);
    expect(deaf.queries).toContain('A mail.example.test');
  });

  it('strict: forward and reverse DNS match → pass with karma +1', async () => {
    const { view, qp } = await setup('policy strict');
    expect(await view.helo_handler(undefined, 'mail.example.test')).toBe(DECLINED);
    expect(qp.connection.notes('helo_forward_match')).toBe(1);
    expect(qp.connection.notes('helo_reverse_match')).toBe(1);
    expect(qp.connection.notes('karma')).toBe(1);
  });

  it('strict: a name that neither resolves to the client nor shares its PTR domain fails FCrDNS', async () => {
    const { view, qp } = await setup('policy strict', {}, { remote_ip: '192.0.2.10' });
    expect(await view.helo_handler(undefined, 'elsewhere.example.net')).toEqual([DENY_DISCONNECT, 'That HELO hostname fails FCrDNS']);
    expect(qp.connection.notes('karma')).toBe(-1);
    expect(await view.helo_handler(undefined, '[192.0.2.10]')).toEqual([DENY_DISCONNECT, 'RFC 2821 allows an address literal, but we do not']);
  });

  it('rfc: no rDNS for the client', async () => {
    const { view } = await setup('policy rfc', {}, { remote_ip: '192.0.2.33' });
    expect(await view.helo_handler(undefined, 'mail.example.test')).toEqual([DENY_DISCONNECT, 'no rDNS for 192.0.2.33']);
  });
});

describe('helo: X-HELO header at data_post', () => {
  it('replaces any X-HELO with the HELO name, at the top', async () => {
    const { view, qp } = await setup();
    qp.connection.hello_host('mail.example.test');
    const t = qp.transaction;
    t.header(MailHeader.parse('Subject: hi\nX-HELO: forged.example\nX-Helo: again\n\n'));
    expect(view.hook_data_post(t)).toBe(DECLINED);
    expect(t.header()!.as_string()).toBe('X-HELO: mail.example.test\nSubject: hi\n');
  });
});

describe('helo: SMTP sessions', () => {
  it('lenient: a name in badhelo gets 550 and the connection closes', async () => {
    const { runtime } = await setup();
    const { client, done } = start_session(runtime, { remote_ip: '192.0.2.10' });
    expect((await client.reply())!.code).toBe(220);
    expect(await client.cmd('EHLO yahoo.com')).toMatchObject({ code: 550, text: 'I do not believe you are yahoo.com.' });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('lenient: a bare IP is refused, a literal of the client IP accepted', async () => {
    const { runtime } = await setup();
    const s1 = start_session(runtime, { remote_ip: '127.0.0.1' });
    await s1.client.reply();
    expect(await s1.client.cmd('HELO 127.0.0.1')).toMatchObject({ code: 550, text: 'Plain IP is invalid HELO hostname (RFC 2821)' });
    expect(await s1.client.wait_closed()).toBe(true);
    await s1.done;
    const s2 = start_session(runtime, { remote_ip: '127.0.0.1' });
    await s2.client.reply();
    expect((await s2.client.cmd('HELO [127.0.0.1]'))!.code).toBe(250);
    expect(await s2.client.cmd('EHLO [1.2.3.4]')).toMatchObject({ code: 550, text: 'Forged IPs not accepted here' });
    await s2.done;
  });

  it('strict: FCrDNS-matching name accepted; a name that does not exist refused', async () => {
    const { runtime } = await setup('policy strict');
    const s1 = start_session(runtime, { remote_ip: '192.0.2.10' });
    await s1.client.reply();
    expect(await s1.client.cmd('EHLO mail.example.test')).toMatchObject({ code: 250 });
    expect(s1.session.connection.notes('karma')).toBe(1);
    await s1.client.cmd('QUIT');
    await s1.done;
    const s2 = start_session(runtime, { remote_ip: '192.0.2.10' });
    await s2.client.reply();
    expect(await s2.client.cmd('HELO nowhere.example.test')).toMatchObject({ code: 550, text: 'HELO hostname does not exist' });
    expect(await s2.client.wait_closed()).toBe(true);
    await s2.done;
  });

  it('the delivered message carries X-HELO with the greeting name', async () => {
    const maildir = mkdtempSync(path.join(os.tmpdir(), 'qpts-helo-'));
    const { runtime } = await make_runtime({
      plugins: ['helo', 'rcpt_ok', `queue/maildir ${maildir}`],
      dns_servers: `127.0.0.1:${dns.port}`,
      me: 'mx.example.test',
      rcpthosts: ['example.test'],
    });
    const { client, done } = start_session(runtime, { remote_ip: '192.0.2.10' });
    await client.reply();
    expect((await client.cmd('HELO client.example.test'))!.code).toBe(250);
    expect((await client.cmd('MAIL FROM:<a@example.net>'))!.code).toBe(250);
    expect((await client.cmd('RCPT TO:<b@example.test>'))!.code).toBe(250);
    expect((await client.cmd('DATA'))!.code).toBe(354);
    expect((await client.cmd('X-HELO: liar.example\r\nSubject: x\r\n\r\nbody\r\n.'))!.code).toBe(250);
    await client.cmd('QUIT');
    await done;
    const [file] = readdirSync(path.join(maildir, 'new'));
    const text = readFileSync(path.join(maildir, 'new', file!), 'latin1');
    expect(text).toMatch(/^Return-Path: <a@example\.net>\nDelivered-To: b@example\.test\nX-HELO: client\.example\.test\n/);
    expect(text).not.toContain('liar.example');
  });
});
