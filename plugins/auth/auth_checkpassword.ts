// auth/auth_checkpassword: SMTP AUTH (PLAIN, LOGIN) against a DJB checkpassword program
// (vpopmail's vchkpw, checkpassword, checkpassword-pam…).
//
//   auth/auth_checkpassword [checkpw <path> true <path>] [sudo <path to sudo>] [loglevel N]
//
// Without (valid) `checkpw`/`true` arguments, the first line of the `smtpauth-checkpassword`
// config file is used: `/path/to/checkpw /path/to/true`. Both must be executable files; when
// neither source names two, the plugin logs an error and stays inactive (as qpsmtpd), so AUTH
// is not offered on its account.
//
// Each attempt runs `<checkpw> <true>` with `<user>\0<password>\0Y123456\0` on file descriptor
// 3 (the checkpassword interface); exit status 0 means the password is right →
// `OK, "auth_checkpassword"` (connection note `authuser` = user); anything else → DECLINED (the
// next auth plugin, or 535). A program that runs past the hook's time limit is killed.
//
// `sudo <path>`: run the program through `<sudo> -C4` (with `-u vpopmail` for vchkpw), unless
// the server runs as root, as uid 89 with vchkpw, or the program is setuid (mode 4711) — what
// qpsmtpd meant to do on its own (its `which sudo` lookup kept the newline, so it never did).
import { spawn } from 'node:child_process';
import { accessSync, constants as FS, statSync } from 'node:fs';
import { constants as OS } from 'node:os';
import { DECLINED, LOGDEBUG, LOGERROR, LOGINFO, LOGNOTICE, OK, Plugin, PluginArgumentError, type Transaction } from '../../lib/index.js';

/** How much of the program's output is kept for the log. */
const MAX_OUTPUT = 2048;

function is_executable(p: string | undefined): p is string {
  if (!p) return false;
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, FS.X_OK);
    return true;
  } catch {
    return false;
  }
}

export default class extends Plugin {
  _checkpw?: string;
  _true?: string;
  _sudo?: string;

  override register(...args: string[]): void {
    const a = this.parse_args(args, { checkpw: undefined, true: undefined, sudo: undefined });
    if (a.sudo !== undefined && !is_executable(a.sudo)) {
      throw new PluginArgumentError(`plugin ${this.plugin_name()}: argument 'sudo': ${a.sudo} is not an executable file`);
    }
    this._sudo = a.sudo;
    const found = this.get_checkpw(a.checkpw, a.true);
    if (!found) return;
    [this._checkpw, this._true] = found;
    this.register_hook('auth-plain', 'auth_checkpassword');
    this.register_hook('auth-login', 'auth_checkpassword');
  }

  /** The program and its `true`: from the arguments if both are executable, else the config file. */
  get_checkpw(checkpw?: string, truth?: string): [string, string] | undefined {
    if (is_executable(checkpw) && is_executable(truth)) return [checkpw, truth];
    const missing_config =
      "disabled due to invalid configuration. See 'docs/plugins/auth/auth_checkpassword.md' for how to configure.";
    if (checkpw !== undefined || truth !== undefined) {
      this.log(LOGERROR, `checkpw '${checkpw ?? ''}' and true '${truth ?? ''}' must both be executable files`);
    }
    const config = this.qp.config('smtpauth-checkpassword');
    if (!config) {
      this.log(LOGERROR, missing_config);
      return undefined;
    }
    this.log(LOGNOTICE, 'reading config from smtpauth-checkpassword');
    const m = /^(\S+)\s+(\S+)\s*$/.exec(config);
    if (!m || !is_executable(m[1]) || !is_executable(m[2])) {
      this.log(LOGERROR, missing_config);
      return undefined;
    }
    return [m[1]!, m[2]!];
  }

  /** `[sudo, args…]` to put in front of the program, or [] (see the header comment). */
  get_sudo(binary: string): string[] {
    if (!this._sudo) return [];
    const euid = process.geteuid?.() ?? -1;
    if (euid === 0) return []; // running as root
    if (euid === 89 && /vchkpw$/.test(binary)) return []; // running as vpopmail
    try {
      if ((statSync(binary).mode & 0o7777) === 0o4711) return []; // setuid
    } catch {
      return [];
    }
    const sudo = [this._sudo, '-C4']; // -C4: sudo must not close file descriptor 3
    if (/vchkpw$/.test(binary)) sudo.push('-u', 'vpopmail');
    return sudo;
  }

  async auth_checkpassword(
    _transaction: Transaction | undefined,
    method: string,
    user: string,
    passClear?: string | null,
    _passHash?: string | null,
    _ticket?: string | null,
  ): Promise<number | [number, string]> {
    const binary = this._checkpw!;
    const truth = this._true!;
    this.connection.notes('auth_checkpassword_bin', binary);
    this.connection.notes('auth_checkpassword_true', truth);
    const pass = passClear ?? '';
    if (user.includes('\0') || pass.includes('\0')) {
      this.log(LOGNOTICE, 'fail, NUL in user name or password');
      return DECLINED;
    }
    const [cmd, ...pre] = [...this.get_sudo(binary), binary, truth];
    this.log(LOGDEBUG, `auth_checkpassword: ${[cmd, ...pre].join(' ')} 3<&0`);
    const status = await this.run_checkpw(cmd!, pre, Buffer.from(`${user}\0${pass}\0Y123456\0`, 'utf8'));
    if (status !== 0) {
      this.log(LOGNOTICE, `fail, auth failed: ${status}`);
      return DECLINED;
    }
    this.connection.notes('authuser', user);
    this.log(LOGINFO, `pass, auth success with ${method}`);
    return [OK, 'auth_checkpassword'];
  }

  /**
   * Runs the program with `input` on fd 3; resolves to a wait status as Perl's `$?` has it
   * (exit code << 8, or the signal number), -1 when it could not be started.
   */
  run_checkpw(cmd: string, args: string[], input: Buffer): Promise<number> {
    const signal = this.signal;
    return new Promise<number>((resolve) => {
      let out = '';
      const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
      const collect = (d: Buffer) => {
        if (out.length < MAX_OUTPUT) out += d.toString('latin1').slice(0, MAX_OUTPUT - out.length);
      };
      child.stdout!.on('data', collect);
      child.stderr!.on('data', collect);
      const fd3 = child.stdio[3] as NodeJS.WritableStream & { on(e: 'error', f: (e: Error) => void): void };
      // the program may exit without reading: EPIPE is not our failure, its status tells
      fd3.on('error', () => undefined);
      fd3.end(input);
      let settled = false;
      const abort = () => {
        this.log(LOGERROR, `${cmd} did not finish in time; killing it`);
        child.kill('SIGKILL');
        finish(OS.signals.SIGKILL);
      };
      signal?.addEventListener('abort', abort, { once: true });
      const finish = (status: number) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', abort);
        resolve(status);
      };
      child.once('error', (err) => {
        this.log(LOGERROR, `cannot run ${cmd}: ${err.message}`);
        finish(-1);
      });
      child.once('close', (code, sig) => {
        if (out.trim()) this.log(LOGDEBUG, `${cmd} said: ${out.trim()}`);
        finish(sig ? (OS.signals[sig] ?? 255) : (code ?? 0) << 8);
      });
    });
  }
}
