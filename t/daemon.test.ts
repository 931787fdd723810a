// End-to-end tests of bin/qpsmtpd-ts against real sockets on loopback.
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tmp_dir } from './lib/harness.js';
import { BUILT_PLUGINS, connect, daemon_config, kill_all, run_cli, start_daemon, wait_for, type Daemon } from './lib/daemon.js';
import { start_dns, type TestDns } from './lib/dns-server.js';

interface Setup {
  dir: string;
  maildir: string;
  pidfile: string;
}

function setup(files: Record<string, string | string[]> = {}): Setup {
  return { ...daemon_config(files), pidfile: path.join(tmp_dir('qpts-run-'), 'qpsmtpd-ts.pid') };
}

const running: Daemon[] = [];
const dnsServers: TestDns[] = [];
afterEach(async () => {
  await kill_all(running);
  for (const s of dnsServers.splice(0)) await s.close();
});

async function daemon(s: Setup, extra: string[] = []): Promise<Daemon> {
  const d = await start_daemon(['--config', s.dir, '-l', '127.0.0.1', '-p', '0', '--pid-file', s.pidfile, '--workers', '1', ...extra]);
  running.push(d);
  return d;
}

function queued(s: Setup): string[] {
  const dir = path.join(s.maildir, 'new');
  return existsSync(dir) ? readdirSync(dir) : [];
}

async function transaction(port: number, body = 'Subject: t\r\n\r\nhello\r\n', local?: string) {
  const c = await connect(port, { local });
  expect((await c.reply())!.code).toBe(220);
  expect((await c.cmd('EHLO client.test'))!.code).toBe(250);
  expect((await c.cmd('MAIL FROM:<a@b.test>'))!.code).toBe(250);
  expect((await c.cmd('RCPT TO:<r@local.test>'))!.code).toBe(250);
  expect((await c.cmd('DATA'))!.code).toBe(354);
  c.send(body);
  return c;
}

describe('command line', () => {
  it('help, version, and bad flags exit 2 with the usage', async () => {
    expect((await run_cli(['help'])).out).toMatch(/usage: qpsmtpd-ts <command>/);
    expect((await run_cli(['version'])).out).toMatch(/^qpsmtpd-ts \d+\.\d+\.\d+/);
    for (const bad of [['start', '--port', 'abc'], ['start', '--bogus'], ['start', '-l', 'bad address!'], ['start', '--pid-file', 'relative.pid'], ['frobnicate']]) {
      const r = await run_cli(bad);
      expect(r.code, bad.join(' ')).toBe(2);
      expect(r.out).toMatch(/usage:/);
    }
  });

  it('check-config loads every plugin and reports each problem with file and line', async () => {
    const good = setup();
    const ok = await run_cli(['check-config', '--config', good.dir]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/OK: 2 plugins loaded/);
    const bad = setup({ plugins: ['accept_all', 'no_such_plugin', 'queue/maildir'] });
    const r = await run_cli(['check-config', '--config', bad.dir]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/plugins line 2: plugin 'no_such_plugin' failed to load: Plugin no_such_plugin not found/);
    expect(r.out).toMatch(/plugins line 3: plugin 'queue\/maildir' failed to load/);
  });

  it("check-config on qpsmtpd's sample plugin list: every ported plugin loads, the rest are named", async () => {
    const s = setup({
      plugin_dirs: BUILT_PLUGINS,
      flat_auth_pw: 'good@example.test:good_pass',
      plugins: [
        'hosts_allow',
        'fcrdns',
        'quit_fortune',
        'earlytalker',
        'count_unrecognized_commands 4',
        'relay',
        'dnsbl reject naughty reject_type disconnect',
        'rhsbl',
        'helo policy strict reject 0',
        'auth/auth_flat_file',
        'auth/authdeny',
        'dont_require_anglebrackets',
        'badmailfrom reject naughty',
        'resolvable_fromhost reject 0',
        'sender_permitted_from reject 1',
        'badrcptto',
        'rcpt_ok',
        'headers reject 0 reject_type temp require From,Date future 2 past 15',
        'bogus_bounce log',
        'dkim reject 0',
        'dmarc',
        'virus/klez_filter',
        'spamassassin reject 12',
        'naughty reject data',
      ],
    });
    const r = await run_cli(['check-config', '--config', s.dir]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/not yet ported to qpsmtpd-ts: fcrdns, dnsbl, rhsbl, resolvable_fromhost, sender_permitted_from, dkim, dmarc, spamassassin\n/);
    expect(r.out.match(/^problem: /gm)).toHaveLength(8);
    expect(r.out).toMatch(/8 problems, 16 plugins loaded/);
  });

  it("Debian's old check_* plugin names load the renamed plugins", async () => {
    const s = setup({
      plugin_dirs: BUILT_PLUGINS,
      plugins: ['check_earlytalker action log', 'check_relay', 'check_spamhelo', 'check_badmailfrom', 'check_badrcptto', 'check_loop', 'rcpt_ok'],
    });
    const r = await run_cli(['check-config', '--config', s.dir]);
    expect(r.out).toMatch(/OK: 7 plugins loaded/);
    expect(r.code).toBe(0);
  });

  it('start, status, stop; a second start refuses; a stale pid file is taken over', async () => {
    const s = setup();
    const d = await daemon(s);
    expect(existsSync(s.pidfile)).toBe(true);
    expect((await run_cli(['status', '--pid-file', s.pidfile])).code).toBe(0);
    const again = await run_cli(['start', '--config', s.dir, '-p', '0', '--pid-file', s.pidfile]);
    expect(again.code).toBe(1);
    expect(again.out).toMatch(/already running qpsmtpd-ts with pid/);
    const stop = await run_cli(['stop', '--pid-file', s.pidfile]);
    expect(stop.code).toBe(0);
    expect(await d.exit).toBe(0);
    expect(existsSync(s.pidfile)).toBe(false);
    expect((await run_cli(['status', '--pid-file', s.pidfile])).code).toBe(3);
    writeFileSync(s.pidfile, '999999\n');
    expect((await run_cli(['status', '--pid-file', s.pidfile])).code).toBe(1);
    const d2 = await daemon(s);
    expect((await run_cli(['status', '--pid-file', s.pidfile])).out).toMatch(new RegExp(`running \\(pid ${d2.pid}\\)`));
  });

  it('a port another program listens on: exit 1, naming the address and the error', async () => {
    const other = net.createServer();
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    try {
      const port = (other.address() as net.AddressInfo).port;
      const s = setup();
      const r = await run_cli(['start', '--config', s.dir, '-l', '127.0.0.1', '-p', String(port), '--pid-file', s.pidfile, '--workers', '1']);
      expect(r.code).toBe(1);
      expect(r.out).toContain(`Creating TCP socket 127.0.0.1:${port}: EADDRINUSE (address already in use)`);
      expect(existsSync(s.pidfile)).toBe(false);
    } finally {
      other.close();
    }
  });

  it('takes settings from qpsmtpd-ts.ini, flags win', async () => {
    const s = setup({ 'qpsmtpd-ts.ini': 'max-from-ip = 1\nworkers = 1\n' });
    const d = await daemon(s);
    const a = await connect(d.port);
    expect((await a.reply())!.code).toBe(220);
    const b = await connect(d.port);
    expect(await b.reply()).toMatchObject({ code: 451, text: 'too many connections from 127.0.0.1, try again later' });
  });
});

describe('the server', () => {
  it('accepts and durably queues a message', async () => {
    const s = setup();
    const d = await daemon(s);
    const c = await transaction(d.port);
    c.send('.\r\n');
    expect((await c.reply())!.code).toBe(250);
    expect(queued(s)).toHaveLength(1);
    expect((await c.cmd('QUIT'))!.code).toBe(221);
  });

  it('-m 2: a third session from one IP gets 451; other IPs are served', async () => {
    const s = setup();
    const d = await daemon(s, ['-m', '2']);
    const held = [await connect(d.port, { local: '127.0.0.2' }), await connect(d.port, { local: '127.0.0.2' })];
    for (const c of held) expect((await c.reply())!.code).toBe(220);
    const third = await connect(d.port, { local: '127.0.0.2' });
    expect(await third.reply()).toMatchObject({ code: 451, text: 'too many connections from 127.0.0.2, try again later' });
    expect(await third.wait_closed()).toBe(true);
    const other = await connect(d.port, { local: '127.0.0.3' });
    expect((await other.reply())!.code).toBe(220);
    held[0]!.send('QUIT\r\n');
    await held[0]!.wait_closed();
    // the worker reports the end of the session right after closing it (qpsmtpd frees the
    // slot when it reaps the child): give the report a moment to reach the master
    await new Promise((r) => setTimeout(r, 300));
    const again = await connect(d.port, { local: '127.0.0.2' });
    expect((await again.reply())!.code).toBe(220);
  });

  it('-c 3: the fourth concurrent session gets a quick 421', async () => {
    const s = setup();
    const d = await daemon(s, ['-c', '3', '-m', '0']);
    for (let i = 0; i < 3; i++) expect((await (await connect(d.port, { local: `127.0.0.${10 + i}` })).reply())!.code).toBe(220);
    const started = Date.now();
    const fourth = await connect(d.port, { local: '127.0.0.20' });
    expect((await fourth.reply())!.code).toBe(421);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('kill -9 of the worker inside DATA: no 250, nothing queued, pool restored, new clients served', async () => {
    const s = setup();
    const d = await daemon(s);
    const [worker] = d.workers();
    const c = await transaction(d.port, 'Subject: doomed\r\n\r\n' + 'x'.repeat(10000) + '\r\n');
    await new Promise((r) => setTimeout(r, 200));
    process.kill(worker!, 'SIGKILL');
    expect(await c.reply()).toBeNull(); // connection dropped, no reply bytes
    await wait_for(() => d.workers().length === 1 && d.workers()[0] !== worker, 10000, 'replacement worker');
    expect(queued(s)).toHaveLength(0);
    const next = await transaction(d.port);
    next.send('.\r\n');
    expect((await next.reply())!.code).toBe(250);
    expect(queued(s)).toHaveLength(1);
  });

  it('a client that connects while the only worker restarts waits in the queue and is served', async () => {
    const s = setup();
    const d = await daemon(s);
    const [worker] = d.workers();
    process.kill(worker!, 'SIGKILL');
    await wait_for(() => !d.workers().includes(worker!), 5000, 'the worker to die');
    // no process accepts now; the master keeps the socket listening, so the kernel queues us
    const c = await connect(d.port);
    expect(await c.reply(10000)).toMatchObject({ code: 220 });
    expect(d.workers()).toHaveLength(1);
    expect(d.workers()[0]).not.toBe(worker);
  });

  it('every worker accepts on the shared socket; the per-IP limit counts across them', async () => {
    const s = setup();
    writeFileSync(path.join(s.dir, 'plugins'), `pid_helo\naccept_all\nqueue/maildir ${s.maildir}\n`);
    const d = await daemon(s, ['--workers', '2', '-m', '2']);
    await wait_for(() => d.workers().length === 2, 10000, 'two workers');
    const [a, b] = d.workers() as [number, number];
    const served_by = async (local: string) => {
      const c = await connect(d.port, { local });
      const greeting = (await c.reply())!;
      return greeting.code === 220 ? (await c.cmd('HELO x.test'))!.text : `${greeting.code} ${greeting.text}`;
    };
    // a stopped worker cannot accept: the other one takes every connection
    process.kill(a, 'SIGSTOP');
    try {
      expect([await served_by('127.0.0.30'), await served_by('127.0.0.30')]).toEqual([`pid ${b}`, `pid ${b}`]);
    } finally {
      process.kill(a, 'SIGCONT');
    }
    process.kill(b, 'SIGSTOP');
    try {
      // worker a refuses the third: the master counted b's two sessions
      expect(await served_by('127.0.0.30')).toBe('451 too many connections from 127.0.0.30, try again later');
      expect(await served_by('127.0.0.31')).toBe(`pid ${a}`);
    } finally {
      process.kill(b, 'SIGCONT');
    }
  });

  it('HUP with a session open: it finishes on the old config, new sessions see the new one', async () => {
    const s = setup({ smtpgreeting: 'old.test ESMTP' });
    const d = await daemon(s);
    const c = await transaction(d.port);
    writeFileSync(path.join(s.dir, 'smtpgreeting'), 'new.test ESMTP\n');
    const reload = await run_cli(['reload', '--pid-file', s.pidfile]);
    expect(reload).toMatchObject({ code: 0, out: `reload requested (pid ${d.pid})\n` });
    await wait_for(() => /reload requested/.test(d.output()) || true, 100, '');
    // connections made after the reload get the new generation
    let greeting = '';
    for (let i = 0; i < 50 && !greeting.startsWith('new.test'); i++) {
      const n = await connect(d.port);
      greeting = (await n.reply())!.text;
      n.send('QUIT\r\n');
      if (!greeting.startsWith('new.test')) await new Promise((r) => setTimeout(r, 100));
    }
    expect(greeting).toBe('new.test ESMTP');
    c.send('.\r\n');
    expect((await c.reply())!.code).toBe(250);
    expect(queued(s)).toHaveLength(1);
  });

  it('TERM drains: an idle session gets 421, one inside DATA may finish with 250; exit 0, pid file gone', async () => {
    const s = setup();
    const d = await daemon(s, ['--shutdown-timeout', '5']);
    const idle = await connect(d.port);
    expect((await idle.reply())!.code).toBe(220);
    expect((await idle.cmd('EHLO idle.test'))!.code).toBe(250);
    const busy = await transaction(d.port);
    process.kill(d.pid, 'SIGTERM');
    expect(await idle.reply()).toMatchObject({ code: 421, text: '4.3.2 Service shutting down, closing connection' });
    busy.send('.\r\n');
    expect((await busy.reply())!.code).toBe(250);
    expect(await d.exit).toBe(0);
    expect(existsSync(s.pidfile)).toBe(false);
    expect(queued(s)).toHaveLength(1);
  });

  it('a plugin that hangs past its hook timeout answers 451 4.3.0 and queues nothing', async () => {
    const s = setup({ hang_seconds: '30', hook_timeout: '1' });
    writeFileSync(path.join(s.dir, 'plugins'), `accept_all\nhang\nqueue/maildir ${s.maildir}\n`);
    const d = await daemon(s);
    const c = await transaction(d.port);
    const started = Date.now();
    c.send('.\r\n');
    expect(await c.reply()).toMatchObject({ code: 451, text: '4.3.0 Internal error - try again later' });
    expect(Date.now() - started).toBeLessThan(5000);
    await new Promise((r) => setTimeout(r, 500));
    expect(queued(s)).toHaveLength(0);
  });
});

describe('pre-connection in the worker', () => {
  it('connection notes set by pre-connection hooks reach the session in the worker', async () => {
    const s = setup();
    writeFileSync(path.join(s.dir, 'plugins'), `pre_note\naccept_all\nqueue/maildir ${s.maildir}\n`);
    const d = await daemon(s);
    const c = await connect(d.port);
    await c.reply();
    expect(await c.cmd('HELO x.test')).toMatchObject({ code: 550, text: 'note: saw 127.0.0.1' });
  });
});

describe('process management', () => {
  it('--detach returns once the server listens in the background; stop ends it', async () => {
    const s = setup();
    const r = await run_cli(['start', '--detach', '--config', s.dir, '-l', '127.0.0.1', '-p', '0', '--pid-file', s.pidfile, '--workers', '1']);
    expect(r.code).toBe(0);
    const pid = Number(/background \(pid (\d+)\)/.exec(r.out)?.[1]);
    expect(readFileSync(s.pidfile, 'utf8').trim()).toBe(String(pid));
    expect((await run_cli(['status', '--pid-file', s.pidfile])).code).toBe(0);
    expect((await run_cli(['stop', '--pid-file', s.pidfile])).code).toBe(0);
    expect((await run_cli(['status', '--pid-file', s.pidfile])).code).toBe(3);
  });

  it('replaces a worker after --worker-sessions sessions; clients never notice', async () => {
    const s = setup();
    const d = await daemon(s, ['--worker-sessions', '2']);
    const [first] = d.workers();
    for (let i = 0; i < 2; i++) {
      const c = await connect(d.port);
      expect((await c.reply())!.code).toBe(220);
      await c.cmd('QUIT');
    }
    await wait_for(() => d.workers().length === 1 && d.workers()[0] !== first, 10000, 'recycled worker');
    const c = await transaction(d.port);
    c.send('.\r\n');
    expect((await c.reply())!.code).toBe(250);
  });

  it('--user drops privileges after binding a port below 1024 (run as root)', async () => {
    expect(process.getuid!()).toBe(0); // the test environment runs as root; without it this test cannot show anything
    const s = setup();
    for (const d of [s.dir, path.dirname(s.pidfile)]) chmodSync(d, 0o755);
    chmodSync(s.maildir, 0o777);
    chmodSync(readFileSync(path.join(s.dir, 'spool_dir'), 'utf8').trim(), 0o777);
    const port = 1000 + Math.floor(Math.random() * 23);
    const d = await start_daemon(['--config', s.dir, '-l', '127.0.0.1', '-p', String(port), '--pid-file', s.pidfile, '--workers', '1', '-u', 'nobody']);
    running.push(d);
    expect(d.port).toBe(port);
    const uid_of = (pid: number) => /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
    const nobody = /^nobody:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))![1];
    expect(uid_of(d.pid)).toBe(nobody);
    expect(uid_of(d.workers()[0]!)).toBe(nobody);
    const c = await transaction(port);
    c.send('.\r\n');
    expect((await c.reply())!.code).toBe(250);
    expect(String(statSync(path.join(s.maildir, 'new', queued(s)[0]!)).uid)).toBe(nobody);
  });
});

describe('reverse DNS at connection start', () => {
  it('names the client from a PTR record served by a local DNS server', async () => {
    const dns = await start_dns({ 'PTR 1.0.0.127.in-addr.arpa': ['client.local.test'] });
    dnsServers.push(dns);
    const s = setup({ dns_servers: `127.0.0.1:${dns.port}` });
    const d = await daemon(s);
    const c = await connect(d.port);
    await c.reply();
    expect((await c.cmd('HELO x.test'))!.text).toBe('mx.local.test Hi client.local.test [127.0.0.1]; I am so happy to meet you.');
    expect(dns.queries).toContain('PTR 1.0.0.127.in-addr.arpa');
  });

  it('a DNS server that never answers delays the greeting only up to the deadline', async () => {
    const dns = await start_dns({}, { blackhole: true });
    dnsServers.push(dns);
    const s = setup({ dns_servers: `127.0.0.1:${dns.port}`, dns_timeout: '1' });
    const d = await daemon(s);
    const started = Date.now();
    const c = await connect(d.port);
    expect((await c.reply())!.code).toBe(220);
    expect(Date.now() - started).toBeLessThan(2500);
    expect((await c.cmd('HELO x.test'))!.text).toMatch(/Hi Unknown \[127\.0\.0\.1\]/);
  });

  it('-H skips the lookup', async () => {
    const dns = await start_dns({ 'PTR 1.0.0.127.in-addr.arpa': ['client.local.test'] });
    dnsServers.push(dns);
    const s = setup({ dns_servers: `127.0.0.1:${dns.port}` });
    const d = await daemon(s, ['-H']);
    const c = await connect(d.port);
    await c.reply();
    expect((await c.cmd('HELO x.test'))!.text).toMatch(/Hi \[127\.0\.0\.1\] \[127\.0\.0\.1\]/);
    expect(dns.queries).toHaveLength(0);
  });
});
