// quit_fortune: say goodbye with a fortune cookie.
//
//   quit_fortune [loglevel N]
//
// Only when /usr/games/fortune is executable at start-up is the `quit` hook registered;
// otherwise the plugin does nothing and QUIT gets the usual `221 <me> closing connection.
// Have a wonderful day.` For a client that greeted with HELO (one that says EHLO is "probably
// too sophisticated to enjoy the fun") QUIT is answered with `221 <me> closing connection.`
// followed by each line of `fortune -s`, prefixed with `  / `.
import { execFile } from 'node:child_process';
import { DECLINED, DONE, LOGDEBUG, Plugin } from '../lib/index.js';
import { is_executable } from '../lib/base.js';

interface Responder {
  respond?: (code: number, ...lines: unknown[]) => boolean;
}

export default class extends Plugin {
  _fortune = '/usr/games/fortune';

  override register(...args: string[]): void {
    this.parse_args(args, {});
    // if fortune is not installed, don't register the hook
    if (!is_executable(this._fortune)) {
      this.log(LOGDEBUG, `${this._fortune} not found, not registering`);
      return;
    }
    this.register_hook('quit', 'fortune');
  }

  async fortune(): Promise<number> {
    const c = this.connection;
    // if she talks EHLO she is probably too sophisticated to enjoy the fun
    if (!c.hello() || c.hello() === 'ehlo') return DECLINED;
    const qp = this.qp as unknown as Responder;
    if (typeof qp.respond !== 'function') return DECLINED;

    const out = await this.run_fortune();
    const lines = out === '' ? [] : out.replace(/\n$/, '').split('\n').map((l) => `  / ${l}`);
    qp.respond(221, `${this.config('me')} closing connection.`, ...lines);
    return DONE;
  }

  /** The output of `fortune -s` ('' if it fails). */
  run_fortune(): Promise<string> {
    return new Promise((resolve) => {
      execFile(
        this._fortune,
        ['-s'],
        { timeout: 10000, encoding: 'latin1', ...(this.signal ? { signal: this.signal } : {}) },
        (err, stdout) => resolve(err && !stdout ? '' : String(stdout)),
      );
    });
  }
}
