// user_config: qpsmtpd's t/plugin_tests/user_config as facts, lookups through the config
// layer, and a session where a per-recipient file changes the answer.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Connection, DECLINED, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { PLUGIN_DIR, REPO, make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

const FIX = path.join(REPO, 't', 'fixtures', 'plugins-a');

interface UserConfig extends Plugin {
  pattern: string;
  hook_user_config(t: unknown, addr: unknown, conf: string): number | [number, ...string[]];
}

async function setup(line = 'user_config', files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const plugin = rt.runtime.plugins[0] as UserConfig;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as UserConfig;
  return { ...rt, plugin, qp, view };
}

/** qpsmtpd's FakeAddress. */
const fake = (user: string, host: string, address: string) => ({ user: () => user, host: () => host, address: () => address });

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'qpts-uc-'));

describe('user_config: qpsmtpd plugin test', () => {
  it('test_hook_user_config', async () => {
    const dirname = tmp();
    const { view } = await setup(`user_config ${dirname}/%u_%h_%a`);
    const dir = path.join(dirname, 'testuser_testhost_testaddress');
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(path.join(dir, 'testfield'), 'testdata');
    const a = fake('testuser', 'testhost', 'testaddress');
    const [r, value] = view.hook_user_config(undefined, a, 'testfield') as [number, string];
    expect(r).toBe(OK); // OK when the config file is present
    expect(value).toBe('testdata');
    const none = view.hook_user_config(undefined, a, 'noconfig');
    expect(none).toBe(DECLINED); // DECLINED and no value without a file
  });
});

describe('user_config: behaviour', () => {
  it('the default pattern is /home/%u/.qpsmtpd', async () => {
    expect((await setup()).plugin.pattern).toBe('/home/%u/.qpsmtpd');
  });

  it('every line is a value (line ends removed, nothing filtered); an empty file is OK with none', async () => {
    const dir = tmp();
    mkdirSync(path.join(dir, 'bob'));
    writeFileSync(path.join(dir, 'bob', 'list'), 'one\n# two\n\nthree\n');
    writeFileSync(path.join(dir, 'bob', 'empty'), '');
    mkdirSync(path.join(dir, 'bob', 'subdir'));
    const { view } = await setup(`user_config ${dir}/%u`);
    const bob = fake('bob', 'example.test', 'bob@example.test');
    expect(view.hook_user_config(undefined, bob, 'list')).toEqual([OK, 'one', '# two', '', 'three']);
    expect(view.hook_user_config(undefined, bob, 'empty')).toEqual([OK]);
    expect(view.hook_user_config(undefined, bob, 'subdir')).toBe(DECLINED); // not a file
  });

  it('per-address lookups go through the plugin, others fall back to the global files', async () => {
    const dir = tmp();
    mkdirSync(path.join(dir, 'example.test', 'bob@example.test'), { recursive: true });
    writeFileSync(path.join(dir, 'example.test', 'bob@example.test', 'spam_level'), '5\n');
    const { qp } = await setup(`user_config ${dir}/%h/%a`, { spam_level: '10' });
    const bob = qp.address('<bob@example.test>')!;
    const eve = qp.address('<eve@example.test>')!;
    expect(bob.config('spam_level')).toBe('5');
    expect(qp.config('spam_level', bob)).toBe('5');
    expect(eve.config('spam_level')).toBe('10');
    expect(qp.config('spam_level')).toBe('10');
  });

  it('address parts that would leave the directory are not used', async () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'secret'), 'x');
    mkdirSync(path.join(dir, 'users'));
    const { view } = await setup(`user_config ${dir}/users/%u`);
    expect(view.hook_user_config(undefined, fake('..', 'h', '..@h'), 'secret')).toBe(DECLINED);
    expect(view.hook_user_config(undefined, fake('a/../..', 'h', 'a/../..@h'), 'secret')).toBe(DECLINED);
  });

  it('refuses more than one argument at start-up', async () => {
    await expect(setup('user_config /a/%u /b/%u')).rejects.toThrow(/user_config: takes one argument/);
  });
});

describe('user_config: SMTP session', () => {
  it("a recipient's own whitelistsenders file lets a sender through (whitelist per_recipient)", async () => {
    const dir = tmp();
    mkdirSync(path.join(dir, 'bob'));
    writeFileSync(path.join(dir, 'bob', 'whitelistsenders'), 'friend@else.test\n');
    const { runtime } = await make_runtime({
      me: 'mx.example.test',
      plugin_dirs: [PLUGIN_DIR, FIX],
      plugins: [`user_config ${dir}/%u`, 'whitelist per_recipient 1', 'test_result rcpt DENY not for you'],
    });
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    await client.cmd('HELO client.test');
    expect((await client.cmd('MAIL FROM:<friend@else.test>'))!.code).toBe(250);
    expect(await client.cmd('RCPT TO:<bob@example.test>')).toMatchObject({ code: 250, text: '<bob@example.test>, recipient ok' });
    expect(await client.cmd('RCPT TO:<alice@example.test>')).toMatchObject({ code: 550, text: 'not for you' });
    await client.cmd('QUIT');
    await done;
  });
});
