// loadcheck: refuse connections while the system load is too high.
//
//   loadcheck [max_load 7] [cache_time 10] [uptime /usr/bin/uptime] [loglevel N]
//
// At `connect`, when the 1-minute load average is above `max_load` →
// `450 Server load too high, please try again later.` and the connection is closed.
// The load is read from /kern/loadavg (BSD), /proc/loadavg (Linux), or the output of the
// `uptime` command, whichever is found first at start-up; if none is, the plugin logs
// `unable to acquire system load` and registers no hook. A value is re-read at most every
// `cache_time` seconds; the cache is shared by the sessions of a worker process.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  DECLINED,
  DENYSOFT,
  LOGDEBUG,
  LOGERROR,
  Plugin,
  PluginArgumentError,
  type Transaction,
} from '../lib/index.js';
import { is_readable, is_executable } from '../lib/base.js';

type LoadMethod = () => Promise<void> | void;

/** The cached load: one object per loaded plugin, shared by every session's view. */
interface LoadState {
  load: number;
  time: number;
}

export default class extends Plugin {
  /** Where the load comes from; tests point these at fixtures. */
  _kern_loadavg = '/kern/loadavg';
  _proc_loadavg = '/proc/loadavg';
  _state: LoadState = { load: -1, time: 0 };
  _method?: LoadMethod;

  override register(...args: string[]): void {
    const a = this.parse_args(args, { max_load: undefined, cache_time: undefined, uptime: undefined });
    for (const k of ['max_load', 'cache_time'] as const) {
      if (a[k] !== undefined && !/^\d+(\.\d+)?$/.test(String(a[k]))) {
        throw new PluginArgumentError(`plugin ${this.plugin_name()}: ${k} must be a number, got '${a[k]}'`);
      }
    }
    // qpsmtpd's `||=`: 0 means the default
    a.max_load = Number(a.max_load) || 7;
    a.uptime = a.uptime || '/usr/bin/uptime';
    a.cache_time = Number(a.cache_time) || 10;
    this._state = { load: -1, time: 0 };
    this._method = this.get_load_method();
    // only register the hook if we can measure load
    if (this._method) this.register_hook('connect', 'loadcheck');
  }

  async loadcheck(_transaction?: Transaction): Promise<number | [number, string]> {
    const now = Math.floor(Date.now() / 1000);
    const st = this._state;
    if (now > st.time + Number(this._args.cache_time)) {
      // cache value expired, update
      await this._method?.();
      st.time = now;
    }
    if (st.load > Number(this._args.max_load)) {
      this.log(LOGERROR, `local load too high: ${st.load}`);
      return [DENYSOFT, 'Server load too high, please try again later.'];
    }
    return [DECLINED, `continuing with load: ${st.load}`];
  }

  /** The first way of reading the load that works here, or undefined. */
  get_load_method(): LoadMethod | undefined {
    if (is_readable(this._kern_loadavg)) {
      return () => {
        // fixed-point values and the scale: "<1min> <5min> <15min> <scale>"
        const vals = readFileSync(this._kern_loadavg, 'latin1').split(' ');
        this.set_load(Number(vals[0]) / Number(vals[3]), this._kern_loadavg);
      };
    }
    if (is_readable(this._proc_loadavg)) {
      return () => {
        const first = readFileSync(this._proc_loadavg, 'latin1').split(' ')[0];
        this.set_load(Number(first), this._proc_loadavg);
      };
    }
    const uptime = String(this._args.uptime);
    if (is_executable(uptime)) {
      return () =>
        new Promise<void>((resolve) => {
          // 10:33AM  up  2:06, 1 user, load averages: 6.55, 3.76, 2.48
          // 12:29am  2 users,  load average: 0.05, 0.05, 0.06
          execFile(uptime, [], { timeout: 5000, ...(this.signal ? { signal: this.signal } : {}) }, (err, stdout) => {
            const m = err ? null : /aver\S+: (\d+\.\d+)/.exec(String(stdout));
            if (m) this.set_load(Number(m[1]), uptime);
            resolve();
          });
        });
    }
    this.log(LOGERROR, 'unable to acquire system load');
    return undefined;
  }

  private set_load(load: number, source: string): void {
    if (Number.isNaN(load)) return;
    this._state.load = load;
    this.log(LOGDEBUG, `${source} reported: ${load}`);
  }
}
