// Daemon options: qpsmtpd-forkserver's and qpsmtpd-prefork's flags, plus ours, from the
// command line over the optional `qpsmtpd-ts.ini` settings file.
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ini from 'ini';
import { PACKAGE_CONFIG_DIR } from '../paths.js';

export class UsageError extends Error {}

export interface ListenSpec {
  host: string;
  port: number;
  /** Implicit TLS (SMTPS). */
  tls?: boolean;
  /** Each connection opens with a PROXY header (v1 or v2) from a peer in `trusted_proxies`. */
  proxy?: boolean;
  /** LMTP (RFC 2033) instead of SMTP. */
  lmtp?: boolean;
}

export interface DaemonOptions {
  listen: ListenSpec[];
  limit_connections: number;
  max_from_ip: number;
  user?: string;
  pid_file?: string;
  detach: boolean;
  no_rdns: boolean;
  config_dir?: string;
  workers: number;
  /** Sessions a worker serves before it is replaced; 0 = never (qpsmtpd-prefork: 100 per child). */
  worker_sessions: number;
  /** Seconds TERM/INT wait for sessions before answering 421. */
  shutdown_timeout: number;
  debug: boolean;
}

export const USAGE = `usage: qpsmtpd-ts <command> [options]

commands:
  start          run the server (foreground unless --detach)
  stop           stop the server named by --pid-file (TERM)
  reload         reload config and plugins without dropping sessions (HUP)
  status         tell whether the server named by --pid-file runs
  check-config   load the config dir and every plugin; report problems; exit 1 on any
  version        print the version
  help           this text

options (start; qpsmtpd-forkserver / qpsmtpd-prefork names):
  -l, --listen-address ADDR[:PORT][/FLAGS]  address to listen on, repeatable (default 127.0.0.1);
                                   IPv6 as [::1]:2525; FLAGS, comma-separated: tls = implicit
                                   TLS (SMTPS, port 465), proxy = PROXY protocol header from a
                                   trusted proxy first, lmtp = LMTP; e.g. 0.0.0.0:2526/tls,proxy
      --interface ADDR             same as --listen-address (prefork)
  -p, --port PORT                  port for addresses without one, repeatable (default 2525)
  -c, --limit-connections N        concurrent sessions in all (default 15)
      --children N                 same as --limit-connections (prefork)
      --idle-children N            accepted for prefork compatibility (workers stay warm)
  -m, --max-from-ip N              concurrent sessions per client IP, 0 = no limit (default 5)
  -u, --user USER                  drop privileges to USER after binding
      --pid-file PATH              write the master's pid here (absolute path)
  -d, --detach                     run in the background
  -H, --no-rdns                    no reverse DNS lookup of clients
      --config DIR                 config directory (default: $QPSMTPD_CONFIG, then ./config)
      --workers N                  worker processes (default: number of CPUs)
      --worker-sessions N          replace a worker after N sessions (default 0: never)
      --shutdown-timeout SECONDS   TERM waits this long for sessions (default 30)
      --debug                      log at LOGDEBUG on stderr
      --quiet, --pretty-child, --renice-parent N   accepted for prefork compatibility

The same settings can live in <config dir>/qpsmtpd-ts.ini (key = long option name);
command-line flags win.
`;

const FLAGS = {
  'listen-address': { type: 'string', short: 'l', multiple: true },
  interface: { type: 'string', multiple: true },
  port: { type: 'string', short: 'p', multiple: true },
  'limit-connections': { type: 'string', short: 'c' },
  children: { type: 'string' },
  'idle-children': { type: 'string' },
  'max-from-ip': { type: 'string', short: 'm' },
  user: { type: 'string', short: 'u' },
  'pid-file': { type: 'string' },
  detach: { type: 'boolean', short: 'd' },
  'no-rdns': { type: 'boolean', short: 'H' },
  config: { type: 'string' },
  workers: { type: 'string' },
  'worker-sessions': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  debug: { type: 'boolean' },
  quiet: { type: 'boolean' },
  'pretty-child': { type: 'boolean' },
  'renice-parent': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

export type RawOptions = Partial<Record<keyof typeof FLAGS, string | string[] | boolean>>;

export function parse_cli(argv: string[]): { command: string; values: RawOptions } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const [command = 'help', ...extra] = parsed.positionals;
  if (extra.length) throw new UsageError(`unexpected argument: ${extra[0]}`);
  return { command, values: parsed.values as RawOptions };
}

/** `<config dir>/qpsmtpd-ts.ini`, if there is one: values as if given on the command line. */
export function read_ini(config_dir: string | undefined): RawOptions {
  // the same order as config files: --config, $QPSMTPD_CONFIG, the package's config/
  const dir = config_dir || process.env.QPSMTPD_CONFIG || PACKAGE_CONFIG_DIR;
  const file = path.join(dir, 'qpsmtpd-ts.ini');
  if (!existsSync(file)) return {};
  const data = ini.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const out: RawOptions = {};
  for (const [key, value] of Object.entries(data)) {
    const k = key.replace(/\[\]$/, '') as keyof typeof FLAGS;
    if (!(k in FLAGS)) throw new UsageError(`${file}: unknown setting '${key}'`);
    const spec = FLAGS[k];
    if (spec.type === 'boolean') out[k] = value === true || value === 'true' || value === '1';
    else if ('multiple' in spec) out[k] = (Array.isArray(value) ? value : [value]).map(String);
    else out[k] = String(value);
  }
  return out;
}

function int(name: string, v: unknown, def: number, min = 0): number {
  if (v === undefined) return def;
  const s = String(v);
  if (!/^\d+$/.test(s) || Number(s) < min) throw new UsageError(`--${name} must be a whole number${min ? ` >= ${min}` : ''}, not '${s}'`);
  return Number(s);
}

const LISTEN_RE = /^(\[.*\]|[\w\-.]+)(?::(\d+))?(?:\/([\w,+]+))?$/;
const LISTEN_FLAGS = ['tls', 'proxy', 'lmtp'] as const;

export function parse_listen(spec: string, ports: number[]): ListenSpec[] {
  const m = LISTEN_RE.exec(spec);
  if (!m) throw new UsageError(`Malformed listen address '${spec}'`);
  const host = m[1]!.replace(/^\[(.*)\]$/, '$1');
  const flags: Partial<Record<(typeof LISTEN_FLAGS)[number], true>> = {};
  for (const f of m[3] === undefined ? [] : m[3].split(/[,+]/)) {
    const flag = f.toLowerCase() as (typeof LISTEN_FLAGS)[number];
    if (!LISTEN_FLAGS.includes(flag)) throw new UsageError(`Unknown listener flag '${f}' in '${spec}' (known: ${LISTEN_FLAGS.join(', ')})`);
    flags[flag] = true;
  }
  if (m[2] !== undefined) return [{ host, port: port_number(m[2]), ...flags }];
  return ports.map((port) => ({ host, port, ...flags }));
}

function port_number(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 0 || n > 65535) throw new UsageError(`invalid port '${s}'`);
  return n;
}

/** Validated daemon options: flags over ini over defaults. */
export function daemon_options(cli: RawOptions): DaemonOptions {
  const config_dir = cli.config as string | undefined;
  const v: RawOptions = { ...read_ini(config_dir), ...Object.fromEntries(Object.entries(cli).filter(([, x]) => x !== undefined)) };
  const ports = ((v.port as string[] | undefined) ?? ['2525']).map(port_number);
  const addrs = [...((v['listen-address'] as string[] | undefined) ?? []), ...((v.interface as string[] | undefined) ?? [])];
  const listen = (addrs.length ? addrs : ['127.0.0.1']).flatMap((a) => parse_listen(a, ports));
  const user = v.user as string | undefined;
  if (user !== undefined && !/^[\w-]+$/.test(user)) throw new UsageError(`invalid --user '${user}'`);
  const pid_file = v['pid-file'] as string | undefined;
  if (pid_file !== undefined && !/^\/[\w/.-]+$/.test(pid_file)) throw new UsageError(`--pid-file must be an absolute path, not '${pid_file}'`);
  const children = v.children ?? v['limit-connections'];
  const limit = int('limit-connections', children, 15, 1);
  const idle = int('idle-children', v['idle-children'], 5);
  void idle;
  if (v['renice-parent'] !== undefined) {
    const n = Number(v['renice-parent']);
    if (!Number.isInteger(n) || n <= -20 || n >= 20) throw new UsageError(`--renice-parent must be between -19 and 19`);
  }
  return {
    listen,
    limit_connections: limit,
    max_from_ip: int('max-from-ip', v['max-from-ip'], 5),
    ...(user !== undefined ? { user } : {}),
    ...(pid_file !== undefined ? { pid_file } : {}),
    detach: !!v.detach,
    no_rdns: !!v['no-rdns'],
    ...(config_dir !== undefined ? { config_dir: path.resolve(config_dir) } : {}),
    workers: int('workers', v.workers, Math.max(1, os.availableParallelism?.() ?? os.cpus().length), 1),
    worker_sessions: int('worker-sessions', v['worker-sessions'], 0),
    shutdown_timeout: int('shutdown-timeout', v['shutdown-timeout'], 30),
    debug: !!v.debug,
  };
}
