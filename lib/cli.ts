// bin/qpsmtpd-ts: start, stop, reload, status, check-config, version, help.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe_error } from './hooks.js';
import { VERSION } from './paths.js';
import { Runtime } from './runtime.js';
import { Master } from './server/master.js';
import { USAGE, UsageError, daemon_options, parse_cli, type DaemonOptions, type RawOptions } from './server/options.js';
import { pid_alive, read_pid } from './server/pidfile.js';

const DETACHED_ENV = 'QPSMTPD_TS_DETACHED';

export async function main(argv: string[]): Promise<number> {
  try {
    const { command, values } = parse_cli(argv);
    if (values.help || command === 'help') return print(USAGE, 0);
    if (values.version || command === 'version') return print(`qpsmtpd-ts ${VERSION}`, 0);
    switch (command) {
      case 'start':
        return await start(daemon_options(values));
      case 'stop':
        return await signal_server(daemon_options(values), 'SIGTERM');
      case 'reload':
        return await signal_server(daemon_options(values), 'SIGHUP');
      case 'status':
        return status(daemon_options(values));
      case 'check-config':
        return await check_config(values);
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`qpsmtpd-ts: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    process.stderr.write(`qpsmtpd-ts: ${describe_error(err)}\n`);
    return 1;
  }
}

function print(text: string, code: number): number {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  return code;
}

async function start(opts: DaemonOptions): Promise<number> {
  if (opts.detach && !process.env[DETACHED_ENV]) return detach();
  const master = new Master(opts);
  await master.start();
  for (const a of master.addresses()) process.stderr.write(`qpsmtpd-ts ${VERSION} listening on ${a.host}:${a.port} (pid ${process.pid})\n`);
  if (process.send) {
    process.send({ t: 'started', pid: process.pid });
    process.disconnect();
  }
  await master.exited;
  return 0;
}

/** Re-runs this command in a new session with no terminal; returns when it is serving. */
function detach(): Promise<number> {
  const bin = fileURLToPath(new URL('../../bin/qpsmtpd-ts', import.meta.url));
  const child = spawn(process.execPath, [bin, ...process.argv.slice(2)], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, [DETACHED_ENV]: '1' },
  });
  return new Promise((resolve) => {
    child.once('message', (m: { pid?: number }) => {
      process.stdout.write(`qpsmtpd-ts started in the background (pid ${m.pid})\n`);
      child.disconnect();
      child.unref();
      resolve(0);
    });
    child.once('exit', (code) => {
      process.stderr.write(`qpsmtpd-ts: the server did not start (exit ${code}); run it without --detach to see why\n`);
      resolve(1);
    });
  });
}

function need_pid_file(opts: DaemonOptions): string {
  if (!opts.pid_file) throw new UsageError('--pid-file (or pid-file in qpsmtpd-ts.ini) names the server to talk to');
  return opts.pid_file;
}

async function signal_server(opts: DaemonOptions, sig: 'SIGTERM' | 'SIGHUP'): Promise<number> {
  const file = need_pid_file(opts);
  const pid = read_pid(file);
  if (pid === undefined || !pid_alive(pid)) {
    process.stderr.write(`qpsmtpd-ts is not running (${pid === undefined ? `no pid in ${file}` : `stale pid file ${file}`})\n`);
    return 1;
  }
  process.kill(pid, sig);
  if (sig === 'SIGHUP') return print(`reload requested (pid ${pid})`, 0);
  const deadline = Date.now() + (opts.shutdown_timeout + 10) * 1000;
  while (pid_alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (pid_alive(pid)) {
    process.stderr.write(`qpsmtpd-ts (pid ${pid}) is still running\n`);
    return 1;
  }
  return print(`qpsmtpd-ts stopped (pid ${pid})`, 0);
}

/** LSB status codes: 0 running, 1 dead with a pid file, 3 not running. */
function status(opts: DaemonOptions): number {
  const file = need_pid_file(opts);
  const pid = read_pid(file);
  if (pid === undefined) return print(`qpsmtpd-ts is not running (no ${file})`, 3);
  if (!pid_alive(pid)) return print(`qpsmtpd-ts is not running (stale pid file ${file}, pid ${pid})`, 1);
  return print(`qpsmtpd-ts is running (pid ${pid})`, 0);
}

/** Loads every plugin line on its own so that all problems are reported, not just the first. */
async function check_config(values: RawOptions): Promise<number> {
  const config_dir = values.config as string | undefined;
  const rt = new Runtime({ ...(config_dir ? { config_dir } : {}), log_writer: () => {} });
  const problems: string[] = [];
  try {
    await rt.load_logging();
  } catch (err) {
    problems.push(describe_error(err));
  }
  rt.plugin_dirs = rt.server_qp.plugin_dirs();
  let lines: string[] = [];
  try {
    lines = rt.server_qp.config_list('plugins');
  } catch (err) {
    problems.push(describe_error(err));
  }
  let loaded = 0;
  for (const line of lines) {
    try {
      await rt.load_plugin_line(line, rt.plugin_dirs);
      loaded++;
    } catch (err) {
      problems.push(describe_error(err));
    }
  }
  await rt.close();
  process.stdout.write(`config: ${rt.config.config_dir('plugins')}\nplugin dirs: ${rt.plugin_dirs.join(', ')}\n`);
  if (!problems.length) return print(`OK: ${loaded} plugin${loaded === 1 ? '' : 's'} loaded`, 0);
  const unported = problems.map((p) => /qpsmtpd plugin (\S+) is not ported/.exec(p)?.[1]).filter((x): x is string => !!x);
  for (const p of problems) process.stdout.write(`problem: ${p}\n`);
  if (unported.length) process.stdout.write(`not yet ported to qpsmtpd-ts: ${unported.join(', ')}\n`);
  return print(`${problems.length} problem${problems.length === 1 ? '' : 's'}, ${loaded} plugin${loaded === 1 ? '' : 's'} loaded`, 1);
}
