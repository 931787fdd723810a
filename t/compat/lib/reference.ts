// Debian's qpsmtpd 0.94 (package `qpsmtpd`) run beside qpsmtpd-ts as the reference of the
// differential test: `qpsmtpd-forkserver` on 127.0.0.1 with a config dir written here, its
// per-connection PTR lookups sent to our loopback DNS stub by qp-dns-wrap.pl (see there why).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const FORKSERVER = '/usr/bin/qpsmtpd-forkserver';
export const DEBIAN_PLUGIN_DIR = '/usr/share/qpsmtpd/plugins';
export const WRAPPER = path.join(import.meta.dirname, '..', 'qp-dns-wrap.pl');
/** The user Debian's package creates; the daemon drops to it when we run as root. */
export const QP_USER = 'qpsmtpd';

/** Why the reference cannot run here, or undefined when it can. */
export function reference_unavailable(): string | undefined {
  const hint =
    "Debian's qpsmtpd 0.94 is the reference of the differential test; `.ci/run` installs it " +
    '(apt-get install --no-install-recommends qpsmtpd). Install it the same way to run t/compat locally.';
  if (!existsSync(FORKSERVER)) return `${FORKSERVER} is missing. ${hint}`;
  if (!existsSync(path.join(DEBIAN_PLUGIN_DIR, 'queue', 'maildir'))) return `${DEBIAN_PLUGIN_DIR}/queue/maildir is missing. ${hint}`;
  const perl = spawnSync('perl', ['-MNet::DNS', '-MQpsmtpd', '-e', 'print $Qpsmtpd::VERSION'], { encoding: 'utf8' });
  if (perl.status !== 0) return `perl cannot load Net::DNS and Qpsmtpd (${(perl.stderr || String(perl.error)).trim()}). ${hint}`;
  if (!perl.stdout.startsWith('0.94')) return `the installed qpsmtpd is ${perl.stdout}, not 0.94. ${hint}`;
  if (process.getuid?.() === 0 && !user_ids(QP_USER)) return `user ${QP_USER} does not exist (the qpsmtpd package creates it). ${hint}`;
  return undefined;
}

function user_ids(user: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/** A TCP port that was free a moment ago (the forkserver needs a number up front). */
export function free_port(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface ReferenceServer {
  port: number;
  maildir: string;
  version: string;
  /** What the daemon wrote to stdout/stderr (its log), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export interface ReferenceOptions {
  dns_port: number;
  /** Plugin lines before the queue plugin (which is always `queue/maildir <tmp>/maildir`). */
  plugins: string[];
  /** Config files (name → content or lines). */
  files: Record<string, string | string[]>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) if (p.exitCode === null && p.pid) process.kill(p.pid, 'SIGTERM');
});

/** Starts the reference daemon; resolves once it listens. */
export async function start_reference(opts: ReferenceOptions): Promise<ReferenceServer> {
  // outside any git checkout: qpsmtpd 0.94 appends `git describe` to its version when it finds .git
  const base = mkdtempSync(path.join(os.tmpdir(), 'qpts-compat-ref-'));
  const config = path.join(base, 'config');
  const spool = path.join(base, 'spool');
  const maildir = path.join(base, 'maildir');
  for (const d of [config, spool, maildir]) mkdirSync(d);
  const files: Record<string, string | string[]> = {
    ...opts.files,
    plugin_dirs: DEBIAN_PLUGIN_DIR,
    spool_dir: spool,
    loglevel: '6',
    plugins: [...opts.plugins, `queue/maildir ${maildir}`],
  };
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(path.join(config, name), Array.isArray(content) ? content.join('\n') + '\n' : content.endsWith('\n') ? content : content + '\n');
  }
  chmodSync(spool, 0o700); // qpsmtpd refuses a spool dir that others can read
  const as_root = process.getuid?.() === 0;
  if (as_root) {
    const ids = user_ids(QP_USER)!;
    chown_tree(base, ids.uid, ids.gid);
  }

  const port = await free_port();
  const args = ['-Tw', WRAPPER, String(opts.dns_port), FORKSERVER, '-l', '127.0.0.1', '-p', String(port), '-c', '64', '-m', '0'];
  if (as_root) args.push('-u', QP_USER);
  const proc = spawn('perl', args, {
    cwd: base,
    env: { PATH: '/usr/bin:/bin', QPSMTPD_CONFIG: config, LANG: 'C', TZ: process.env.TZ ?? 'UTC' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(proc);
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString('latin1');
    if (out.length > 400_000) out = out.slice(-200_000);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`qpsmtpd-forkserver did not start within 20 s:\n${out}`)), 20000);
    const check = () => {
      if (out.includes(`Listening on 127.0.0.1:${port}`)) {
        clearTimeout(timer);
        proc.stderr!.off('data', check);
        proc.off('exit', on_exit);
        resolve();
      }
    };
    const on_exit = (code: number | null) => fail(new Error(`qpsmtpd-forkserver exited (${code}) before listening:\n${out}`));
    const fail = (err: Error) => {
      clearTimeout(timer);
      proc.stderr!.off('data', check);
      proc.off('exit', on_exit);
      if (proc.exitCode === null) proc.kill('SIGTERM');
      reject(err);
    };
    proc.stderr!.on('data', check);
    proc.on('exit', on_exit);
    check();
  });

  const version = execFileSync('perl', ['-MQpsmtpd', '-e', 'print $Qpsmtpd::VERSION'], { encoding: 'utf8' });
  return {
    port,
    maildir,
    version,
    output: () => out,
    stop: async () => {
      // the forkserver's TERM handler interrupts its children and exits
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      running.delete(proc);
      rmSync(base, { recursive: true, force: true });
    },
  };
}

function chown_tree(p: string, uid: number, gid: number): void {
  chownSync(p, uid, gid);
  if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) chown_tree(path.join(p, n), uid, gid);
}
