import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DECLINED, DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT, LOGINFO, OK } from '../lib/constants.js';
import { Connection } from '../lib/connection.js';
import { parse_plugin_line, plugin_file_for, plugin_name_for } from '../lib/plugin-loader.js';
import type { Plugin } from '../lib/plugin.js';
import { Qpsmtpd } from '../lib/qpsmtpd.js';
import { REPO, make_runtime, write_config } from './lib/harness.js';

function plugin_dir(files: Record<string, string>): string {
  return write_config(files, mkdtempSync(path.join(os.tmpdir(), 'qpts-plugins-')));
}

const SAMPLE = `
import { Plugin, OK, DENY, LOGINFO } from 'qpsmtpd-ts';
import type { Transaction, Address } from 'qpsmtpd-ts';
export default class MyCheck extends Plugin {
  private allow: string[] = [];
  register(...args: string[]) { this.allow = args; this.log(LOGINFO, 'registered', args.join(',')); }
  hook_rcpt(_t: Transaction, rcpt: Address) {
    return this.allow.includes(rcpt.host() ?? '') ? OK : [DENY, 'not here'];
  }
}
`;

describe('plugin names (qpsmtpd 6.1, observed)', () => {
  it.each([
    ['relay:0', 'relay_3a0'],
    ['queue/smtp-forward', 'queue::smtp_2dforward'],
    ['ident/p0f:3', 'ident::p0f_3a3'],
    ['auth/auth_flat_file', 'auth::auth_flat_file'],
    ['foo/2bar', 'foo::_32bar'],
    ['rcpt_ok', 'rcpt_ok'],
  ])('%s -> %s', (spec, name) => {
    expect(plugin_name_for(spec)).toBe(name);
  });
  it('drops the :N instance suffix for the file name', () => {
    expect(plugin_file_for('ident/p0f:3')).toBe('ident/p0f');
  });
  it('splits a config line on whitespace and refuses unsafe characters', () => {
    expect(parse_plugin_line('rcpt_map  domain example.test  file x')).toEqual({
      spec: 'rcpt_map',
      args: ['domain', 'example.test', 'file', 'x'],
    });
    expect(() => parse_plugin_line('relay\x1b[2J')).toThrow(/unsafe characters/);
  });
});

describe('plugin loading', () => {
  it('loads a .ts plugin from a plugin dir outside the package, passing the line arguments to register', async () => {
    const dir = plugin_dir({ 'my_check.ts': SAMPLE });
    const { runtime, logged } = await make_runtime({
      plugin_dirs: dir,
      plugins: ['my_check example.test other.test'],
      loglevel: '6',
    });
    expect(runtime.plugins.map((p) => p.plugin_name())).toEqual(['my_check']);
    expect(logged.some((l) => l.endsWith('my_check: registered example.test,other.test'))).toBe(true);
    const qp = new Qpsmtpd(runtime, new Connection());
    expect((await qp.run_hooks('rcpt', qp.address('<a@example.test>'))).rc).toBe(OK);
    expect(await qp.run_hooks('rcpt', qp.address('<a@else.test>'))).toMatchObject({ rc: DENY, msg: ['not here'] });
  });

  it('loads the same file twice as distinct instances with :N suffixes, in config order', async () => {
    const dir = plugin_dir({ 'my_check.ts': SAMPLE });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: ['my_check:0 a.test', 'my_check:1 b.test'] });
    expect(runtime.hooks.get('rcpt').map((e) => e.name)).toEqual(['my_check_3a0', 'my_check_3a1']);
  });

  it('auto-registers hook_* methods in qpsmtpd hook order, then hooks added in register()', async () => {
    const dir = plugin_dir({
      'multi.js': `import { Plugin, DECLINED } from 'qpsmtpd-ts';
        export default class extends Plugin {
          register() { this.register_hook('rcpt', 'extra'); }
          extra() { return DECLINED; }
          hook_rcpt() { return DECLINED; }
          hook_connect() { return DECLINED; }
          hook_pre_connection() { return DECLINED; }
          hook_auth_cram_md5() { return DECLINED; }
        }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'multi' });
    expect(runtime.hooks.names()).toEqual(['pre-connection', 'connect', 'auth-cram-md5', 'rcpt']);
    expect(runtime.hooks.get('rcpt').map((e) => e.method)).toEqual(['hook_rcpt', 'extra']);
  });

  it('runs an async init() before hooks are registered', async () => {
    const dir = plugin_dir({
      'slow_init.ts': `import { Plugin, OK } from 'qpsmtpd-ts';
        export default class extends Plugin {
          ready = false;
          async init() { await new Promise((r) => setTimeout(r, 10)); this.ready = true; }
          hook_noop() { return this.ready ? OK : 0; }
        }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'slow_init' });
    expect((await new Qpsmtpd(runtime).run_hooks('noop')).rc).toBe(OK);
  });

  it('accepts a Haraka-style module of hook functions', async () => {
    const dir = plugin_dir({
      'haraka_style.js': `import { DENYSOFT } from 'qpsmtpd-ts';
        export function register(...args) { this.args = args; }
        export function hook_mail(txn, sender) { return [DENYSOFT, 'later ' + this.args[0]]; }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'haraka_style x' });
    expect(await new Qpsmtpd(runtime).run_hooks('mail')).toMatchObject({ rc: DENYSOFT, msg: ['later x'] });
  });

  it('reports a misspelt hook method at load time, with a suggestion', async () => {
    const dir = plugin_dir({
      'typo.ts': `import { Plugin, OK } from 'qpsmtpd-ts';
        export default class extends Plugin { hook_rctp() { return OK; } }`,
    });
    await expect(make_runtime({ plugin_dirs: dir, plugins: ['# comment', 'typo'] })).rejects.toThrow(
      /plugins line 2: plugin 'typo' failed to load from .*typo\.ts: method hook_rctp is not a known hook \(did you mean hook_rcpt\?\)/,
    );
  });

  it('a missing plugin stops start-up naming the plugin dirs and the config line', async () => {
    const dir = plugin_dir({});
    await expect(make_runtime({ plugin_dirs: dir, plugins: ['nothere arg'] })).rejects.toThrow(
      /plugins line 1: plugin 'nothere arg' failed to load: Plugin nothere not found in our plugin dirs/,
    );
  });

  it('a plugin whose module throws stops start-up with the reason', async () => {
    const dir = plugin_dir({ 'broken.ts': `throw new Error('cannot start: missing key file');` });
    await expect(make_runtime({ plugin_dirs: dir, plugins: 'broken' })).rejects.toThrow(/broken\.ts: cannot start: missing key file/);
  });

  it('a Perl plugin file is recognised and explained', async () => {
    const dir = plugin_dir({ perlish: 'sub hook_rcpt { return DECLINED }\n' });
    await expect(make_runtime({ plugin_dirs: dir, plugins: 'perlish' })).rejects.toThrow(/looks like a Perl qpsmtpd plugin/);
  });

  it('parse_args: defaults, values, unknown arguments are start-up errors', async () => {
    const dir = plugin_dir({
      'argy.ts': `import { Plugin } from 'qpsmtpd-ts';
        export default class extends Plugin {
          register(...args: string[]) { this.parse_args(args, { reject: 1, reject_type: 'perm', timeout: undefined }); }
        }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'argy reject naughty timeout 5' });
    expect(runtime.plugins[0]!._args).toEqual({ reject: 'naughty', reject_type: 'perm', timeout: '5' });
    await expect(make_runtime({ plugin_dirs: dir, plugins: 'argy rejekt 0' })).rejects.toThrow(
      /plugin argy: unknown argument 'rejekt' \(known: loglevel, reject, reject_type, timeout\)/,
    );
  });

  it('isa_plugin makes the parent plugin methods available; own methods win', async () => {
    const dir = plugin_dir({
      'parent_plugin.ts': `import { Plugin, DENY } from 'qpsmtpd-ts';
        export default class extends Plugin {
          register(...a: string[]) { (this as any).parent_args = a; }
          hook_mail() { return [DENY, 'from parent']; }
          hook_rcpt() { return [DENY, 'parent rcpt']; }
        }`,
      'child_plugin.ts': `import { Plugin, OK } from 'qpsmtpd-ts';
        export default class extends Plugin {
          parent: any;
          async init() { this.parent = await this.isa_plugin('parent_plugin'); }
          register(...a: string[]) { this.parent.register.call(this, ...a); }
          hook_rcpt() { return OK; }
        }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'child_plugin x' });
    const qp = new Qpsmtpd(runtime);
    expect(await qp.run_hooks('mail')).toMatchObject({ rc: DENY, msg: ['from parent'] });
    expect((await qp.run_hooks('rcpt')).rc).toBe(OK);
    expect((runtime.plugins[0] as any).parent_args).toEqual(['x']);
  });
});

describe('plugin helpers (Qpsmtpd::Plugin 6.2)', () => {
  async function plugin_with(args: Record<string, unknown>) {
    const { runtime, logged } = await make_runtime({ loglevel: '6' });
    const qp = new Qpsmtpd(runtime, new Connection());
    const { Plugin } = await import('../lib/plugin.js');
    const p = new (class extends Plugin {})();
    p._plugin_name = 'tester';
    p._args = { ...args };
    p._qp = runtime.server_qp;
    return { view: qp.plugin_view(p), qp, logged };
  }

  it('get_reject honours reject 0, naughty and reject_type', async () => {
    let t = await plugin_with({ reject: 0 });
    expect(t.view.get_reject('no way', 'log text')).toBe(DECLINED);
    expect(t.logged.at(-1)).toMatch(/tester: fail, tolerated, log text$/);
    t = await plugin_with({ reject: 'naughty', reject_type: 'temp' });
    expect(t.view.get_reject('no way')).toBe(DECLINED);
    expect(t.qp.connection.notes('naughty')).toBe('(tester) no way');
    expect(t.qp.connection.notes('naughty_reject_type')).toBe('temp');
    t.view.store_deferred_reject('second');
    expect(t.qp.connection.notes('naughty')).toBe('(tester) no way\r\nsecond');
    t = await plugin_with({ reject_type: 'disconnect' });
    expect(t.view.get_reject('bye')).toEqual([DENY_DISCONNECT, 'bye']);
    t = await plugin_with({});
    expect(t.view.get_reject()).toEqual([DENY, 'unspecified error']);
  });

  it('get_reject_type maps qpsmtpd reject_type words', async () => {
    const { view } = await plugin_with({});
    expect(view.get_reject_type()).toBe(DENY);
    expect(view.get_reject_type(DENY, 'TEMP')).toBe(DENYSOFT);
    expect(view.get_reject_type(DENY, 'soft')).toBe(DENYSOFT);
    expect(view.get_reject_type(DENYSOFT, 'hard')).toBe(DENY);
    expect(view.get_reject_type(DENY, 'temp_disconnect')).toBe(DENYSOFT_DISCONNECT);
    expect(view.get_reject_type(DENYSOFT, 'bogus')).toBe(DENYSOFT);
  });

  it('is_immune, is_naughty, adjust_karma, store_auth_results', async () => {
    const { view, qp, logged } = await plugin_with({});
    expect(view.is_immune()).toBe(false);
    qp.connection.relay_client(1);
    expect(view.is_immune()).toBe(true);
    expect(logged.at(-1)).toMatch(/skip, relay client$/);
    qp.connection.relay_client(0);
    qp.transaction.notes('whitelistsender', 1);
    expect(view.is_immune()).toBe(true);
    expect(view.is_naughty()).toBeUndefined();
    expect(view.is_naughty('bad')).toBe(true);
    expect(qp.connection.notes('rejected')).toBe('bad');
    expect(view.adjust_karma(-2)).toBe(-2);
    view.adjust_karma(1);
    expect(qp.connection.notes('karma')).toBe(-1);
    view.store_auth_results('spf=pass');
    view.store_auth_results('dkim=none');
    expect(qp.connection.notes('authentication_results')).toBe('spf=pass; dkim=none');
  });

  it('loglevel argument adjusts log levels: N replaces, +N/-N shift within 0..7', async () => {
    const { view } = await plugin_with({ loglevel: '+2' });
    expect(view.adjust_log_level(LOGINFO, 'x')).toBe(7);
    view._args.loglevel = '-7';
    expect(view.adjust_log_level(LOGINFO, 'x')).toBe(0);
    view._args.loglevel = '3';
    expect(view.adjust_log_level(LOGINFO, 'x')).toBe(3);
  });

  it('temp_file and temp_dir are removed when the transaction ends', async () => {
    const { view, qp } = await plugin_with({});
    const f = view.temp_file();
    writeFileSync(f, 'x');
    const d = view.temp_dir();
    writeFileSync(path.join(d, 'inner'), 'y');
    const { existsSync } = await import('node:fs');
    await qp.reset_transaction();
    expect(existsSync(f) || existsSync(d)).toBe(false);
  });
});

describe('per-session plugin views', () => {
  it('hundreds of interleaved sessions each see their own connection, transaction and `this` state', async () => {
    const dir = plugin_dir({
      'stateful.ts': `import { Plugin, OK, DECLINED } from 'qpsmtpd-ts';
        export default class extends Plugin {
          async hook_connect() { (this as any).start_ip = this.connection.remote_ip(); return DECLINED; }
          async hook_rcpt(txn: any) {
            await new Promise((r) => setTimeout(r, Math.random() * 20));
            const mine = (this as any).start_ip === this.connection.remote_ip() && txn === this.transaction && this.qp.connection === this.connection;
            return mine ? [OK, (this as any).start_ip] : [0, 'mixed up'];
          }
        }`,
    });
    const { runtime } = await make_runtime({ plugin_dirs: dir, plugins: 'stateful' });
    const sessions = Array.from({ length: 300 }, (_, i) => {
      const ip = `127.0.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      return { ip, qp: new Qpsmtpd(runtime, new Connection().start({ remote_ip: ip })) };
    });
    await Promise.all(sessions.map((s) => s.qp.run_hooks('connect')));
    const results = await Promise.all(sessions.map((s) => s.qp.run_hooks('rcpt')));
    results.forEach((r, i) => expect(r).toMatchObject({ rc: OK, msg: [sessions[i]!.ip] }));
    expect((runtime.plugins[0] as Plugin & { start_ip?: string }).start_ip).toBeUndefined();
  });
});

describe('built package', () => {
  it('a .ts plugin outside the package loads in plain node and gets the running server module', async () => {
    const dir = plugin_dir({ 'my_check.ts': SAMPLE });
    const cfg = write_config({ plugin_dirs: dir, plugins: 'my_check example.test', spool_dir: mkdtempSync(path.join(os.tmpdir(), 'qpts-sp-')) });
    const script = `
      import { Runtime, Qpsmtpd, Plugin, OK } from ${JSON.stringify(path.join(REPO, 'dist/lib/index.js'))};
      const rt = new Runtime({ config_dir: ${JSON.stringify(cfg)}, package_config_dir: null, env: {} });
      await rt.load();
      const p = rt.plugins[0];
      const qp = new Qpsmtpd(rt);
      const r = await qp.run_hooks('rcpt', qp.address('<x@example.test>'));
      console.log(JSON.stringify({ same: p instanceof Plugin, rc: r.rc === OK }));
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: os.tmpdir() });
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ same: true, rc: true });
  });
});
