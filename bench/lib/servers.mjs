// The servers bench/run compares. Each entry writes its own config under the run's work dir,
// says how to start it, and how many idle connections it can hold in the memory test.
//
// Equivalent work: every server (but smtp-sink, the floor) accepts RCPT for one domain
// (DOMAIN), refuses every other one, reads the whole message and then either discards it or
// writes it durably (fsync of file and directory) to a maildir. Logging is at warning level
// everywhere, to a file.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const DOMAIN = 'example.test';

function write(file, text, mode) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  if (mode !== undefined) fs.chmodSync(file, mode);
}

function uid_gid(user) {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user}: run bench/setup`);
  const f = line.split(':');
  return [Number(f[2]), Number(f[3])];
}

function chown_r(dir, [uid, gid]) {
  fs.chownSync(dir, uid, gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chown_r(p, [uid, gid]);
    else fs.chownSync(p, uid, gid);
  }
}

/**
 * ctx: { bench, main, work, dns_port, node, postfix_dir, idle_n, cpu_prof_dir }
 * Returns the definitions, in the interleaving order.
 */
export function definitions(ctx) {
  const { bench, main, work, dns_port } = ctx;
  const pf = path.join(ctx.postfix_dir, 'usr');
  const pf_env = { ...process.env, LD_LIBRARY_PATH: path.join(pf, 'lib/postfix') };

  const qpsmtpd_ts = (variant) => ({
    id: variant === 'discard' ? 'qpsmtpd-ts' : 'qpsmtpd-ts-maildir',
    family: 'qpsmtpd-ts',
    variant,
    label: `qpsmtpd-ts (${variant})`,
    idle_n: ctx.idle_n,
    prepare(port) {
      const dir = path.join(work, this.id);
      const cfg = path.join(dir, 'config');
      const queue = variant === 'discard' ? 'queue/discard' : `queue/maildir ${path.join(dir, 'maildir')}`;
      write(path.join(cfg, 'plugins'), `# bench/run: ${this.label}\nrcpt_ok\n${queue}\n`);
      write(path.join(cfg, 'rcpthosts'), `${DOMAIN}\n`);
      write(path.join(cfg, 'me'), 'bench.qpsmtpd-ts\n');
      write(path.join(cfg, 'dns_servers'), `127.0.0.1:${dns_port}\n`);
      write(path.join(cfg, 'loglevel'), '4\n');
      write(path.join(cfg, 'size_threshold'), '65536\n');
      write(path.join(cfg, 'spool_dir'), `${path.join(dir, 'spool')}\n`);
      fs.mkdirSync(path.join(dir, 'spool'), { recursive: true, mode: 0o700 });
      this.dir = dir;
      this.port = port;
      const node_args = [];
      if (ctx.cpu_prof_dir) node_args.push('--cpu-prof', `--cpu-prof-dir=${ctx.cpu_prof_dir}`);
      this.args = [
        ...node_args,
        path.join(main, 'bin/qpsmtpd-ts'),
        'start',
        '--config', cfg,
        '-l', '127.0.0.1', '-p', String(port),
        '-c', String(Math.max(1000, ctx.idle_n + 500)),
        '-m', '0',
        '--pid-file', path.join(dir, 'qpsmtpd-ts.pid'),
        ...(ctx.ts_args ?? []),
      ];
      this.cmdline = `bin/qpsmtpd-ts start --config CFG -l 127.0.0.1 -p PORT -c ${Math.max(1000, ctx.idle_n + 500)} -m 0 (workers: default = CPUs = 2)`;
    },
    spawn() {
      return { cmd: ctx.node, args: this.args, cwd: this.dir, env: { ...process.env }, detached: true };
    },
  });

  const qpsmtpd = (variant) => ({
    id: variant === 'discard' ? 'qpsmtpd' : 'qpsmtpd-maildir',
    family: 'qpsmtpd',
    variant,
    label: `qpsmtpd 0.94 prefork (${variant})`,
    // one Perl process per connection: 10 000 would need ~100 GB; measured at this many
    idle_n: Math.min(ctx.idle_n, ctx.idle_n_forking ?? 200),
    prepare(port) {
      const dir = path.join(work, this.id);
      const cfg = path.join(dir, 'config');
      const plugdir = path.join(dir, 'plugins');
      fs.mkdirSync(path.join(plugdir, 'queue'), { recursive: true });
      for (const p of ['bench_discard', 'bench_maildir']) {
        fs.copyFileSync(path.join(bench, 'peers/qpsmtpd/plugins/queue', p), path.join(plugdir, 'queue', p));
      }
      const queue = variant === 'discard' ? 'queue/bench_discard' : `queue/bench_maildir ${path.join(dir, 'maildir')}`;
      write(path.join(cfg, 'plugins'), `# bench/run: ${this.label}\nrcpt_ok\n${queue}\n`);
      write(path.join(cfg, 'plugin_dirs'), `${plugdir}\n/usr/share/qpsmtpd/plugins\n`);
      write(path.join(cfg, 'rcpthosts'), `${DOMAIN}\n`);
      write(path.join(cfg, 'me'), 'bench.qpsmtpd\n');
      write(path.join(cfg, 'loglevel'), '4\n');
      write(path.join(cfg, 'size_threshold'), '65536\n');
      write(path.join(cfg, 'spool_dir'), `${path.join(dir, 'spool')}\n`);
      fs.mkdirSync(path.join(dir, 'spool'), { recursive: true });
      fs.chmodSync(path.join(dir, 'spool'), 0o700);
      if (variant === 'maildir') fs.mkdirSync(path.join(dir, 'maildir'), { recursive: true });
      chown_r(dir, uid_gid('qpsmtpd'));
      this.dir = dir;
      this.port = port;
      const children = Math.max(250, this.idle_n + 50);
      this.args = [
        '-T',
        path.join(bench, 'lib/qp-run'),
        '/usr/bin/qpsmtpd-prefork',
        '--listen-address', '127.0.0.1', '--port', String(port),
        '--children', String(children), '--idle-children', '20', '--max-from-ip', '0',
        '--user', 'qpsmtpd',
        '--pid-file', path.join(dir, 'qpsmtpd.pid'),
      ];
      this.cmdline = `perl -T bench/lib/qp-run /usr/bin/qpsmtpd-prefork --listen-address 127.0.0.1 --port PORT --children ${children} --idle-children 20 --max-from-ip 0 --user qpsmtpd`;
    },
    spawn() {
      // not detached: prefork calls setsid() itself, which fails for a group leader
      return {
        cmd: 'perl',
        args: this.args,
        cwd: this.dir, // not a git checkout: qpsmtpd runs `git describe` when ./.git exists
        env: { PATH: '/usr/bin:/bin', QPSMTPD_CONFIG: path.join(this.dir, 'config'), BENCH_DNS_PORT: String(dns_port) },
        detached: false,
      };
    },
  });

  const haraka = {
    id: 'haraka',
    family: 'haraka',
    variant: 'discard',
    label: 'Haraka (discard)',
    idle_n: ctx.idle_n,
    prepare(port) {
      const dir = path.join(work, this.id);
      const cfg = path.join(dir, 'config');
      fs.mkdirSync(path.join(dir, 'plugins'), { recursive: true });
      // Haraka reads only the instance's config dir: start from the shipped defaults
      fs.cpSync(path.join(bench, 'node_modules/Haraka/config'), cfg, { recursive: true });
      for (const p of ['bench_dns.js', 'bench_discard.js']) {
        fs.copyFileSync(path.join(bench, 'peers/haraka/plugins', p), path.join(dir, 'plugins', p));
      }
      write(path.join(cfg, 'plugins'), 'bench_dns\nrcpt_to.in_host_list\nbench_discard\n');
      write(path.join(cfg, 'host_list'), `${DOMAIN}\n`);
      write(path.join(cfg, 'me'), 'bench.haraka\n');
      write(
        path.join(cfg, 'smtp.ini'),
        `listen=127.0.0.1:${port}\nnodes=${ctx.cpus}\ndaemonize=false\nforce_shutdown_timeout=5\n` +
          `graceful_shutdown=false\n`,
      );
      write(path.join(cfg, 'log.ini'), '[main]\nlevel=warn\ntimestamps=false\nformat=default\n');
      this.dir = dir;
      this.port = port;
      this.args = [path.join(bench, 'node_modules/Haraka/bin/haraka'), '-c', dir];
      this.cmdline = `haraka -c DIR (smtp.ini: listen=127.0.0.1:PORT nodes=${ctx.cpus}; plugins: bench_dns rcpt_to.in_host_list bench_discard; log level warn)`;
    },
    spawn() {
      return { cmd: ctx.node, args: this.args, cwd: this.dir, env: { ...process.env, BENCH_DNS_PORT: String(dns_port) }, detached: true };
    },
  };

  const smtp_server = {
    id: 'smtp-server',
    family: 'smtp-server',
    variant: 'discard',
    label: 'smtp-server (discard)',
    idle_n: ctx.idle_n,
    prepare(port) {
      this.dir = path.join(work, this.id);
      fs.mkdirSync(this.dir, { recursive: true });
      this.port = port;
      this.args = [path.join(bench, 'peers/smtp-server.mjs'), String(port), String(dns_port), DOMAIN];
      this.cmdline = `node bench/peers/smtp-server.mjs PORT DNS_PORT ${DOMAIN} (one process; fixed 100 ms greeting delay, no option)`;
    },
    spawn() {
      return { cmd: ctx.node, args: this.args, cwd: this.dir, env: { ...process.env }, detached: true };
    },
  };

  const sink = {
    id: 'smtp-sink',
    family: 'smtp-sink',
    variant: 'discard',
    label: 'Postfix smtp-sink (floor)',
    idle_n: ctx.idle_n,
    prepare(port) {
      this.dir = path.join(work, this.id);
      fs.mkdirSync(this.dir, { recursive: true });
      this.port = port;
      const m = ctx.idle_n + 1000;
      this.args = ['-u', 'nobody', '-m', String(m), `127.0.0.1:${port}`, '1024'];
      this.cmdline = `smtp-sink -u nobody -m ${m} 127.0.0.1:PORT 1024 (no policy: accepts every recipient)`;
    },
    spawn() {
      return { cmd: path.join(pf, 'sbin/smtp-sink'), args: this.args, cwd: this.dir, env: pf_env, detached: true };
    },
  };

  return [sink, qpsmtpd_ts('discard'), qpsmtpd('discard'), haraka, smtp_server, qpsmtpd_ts('maildir'), qpsmtpd('maildir')];
}

function json(file) {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return {};
  }
}

function sh(cmd, args, env) {
  try {
    return execFileSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return 'unknown';
  }
}

export function versions(ctx) {
  const git = sh('git', ['-C', ctx.main, 'rev-parse', '--short', 'HEAD']);
  const dirty = sh('git', ['-C', ctx.main, 'status', '--porcelain', '--', 'lib', 'plugins']);
  return {
    'qpsmtpd-ts': `${json(path.join(ctx.main, 'package.json')).version} (git ${git}${dirty && dirty !== 'unknown' ? ', with uncommitted changes in lib/ or plugins/' : ''})`,
    qpsmtpd: sh('dpkg-query', ['-W', '-f=${Version}', 'qpsmtpd']),
    perl: sh('perl', ['-e', 'print $^V']),
    haraka: json(path.join(ctx.bench, 'node_modules/Haraka/package.json')).version,
    'smtp-server': json(path.join(ctx.bench, 'node_modules/smtp-server/package.json')).version,
    postfix: fs.existsSync(path.join(ctx.postfix_dir, 'VERSION')) ? fs.readFileSync(path.join(ctx.postfix_dir, 'VERSION'), 'utf8').trim() : 'unknown',
    node: process.version,
  };
}
