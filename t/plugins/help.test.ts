// help: HELP answers from help files. (qpsmtpd has no plugin test for it.)
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Connection, DONE, OK, Qpsmtpd, type Plugin } from '../../lib/index.js';
import { REPO, make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

const FIX = path.join(REPO, 't', 'fixtures', 'plugins-a');
const HELP_DIR = path.join(FIX, 'help');

interface Help extends Plugin {
  _config: { not_implemented?: string; help_dir?: string; files: Map<string, string> };
  hook_help(t: unknown, ...args: string[]): Promise<number | [number, ...string[]]>;
}

async function setup(line: string, files: Record<string, string | string[]> = {}) {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test', ...files });
  const plugin = rt.runtime.plugins[0] as Help;
  const qp = new Qpsmtpd(rt.runtime, new Connection().start({ remote_ip: '127.0.0.1' }));
  const view = qp.plugin_view(plugin) as Help;
  return { ...rt, plugin, qp, view };
}

const cwd = process.cwd();
afterEach(() => process.chdir(cwd));

describe('help: the hook', () => {
  it('no argument: the usage line', async () => {
    const { view } = await setup(`help help_dir ${HELP_DIR}`);
    expect(await view.hook_help(undefined)).toEqual([OK, "Try 'HELP COMMAND' for getting help on COMMAND"]);
  });

  it('a command with a file in help_dir: its lines (lower-cased name); CRLF files too', async () => {
    const { view } = await setup(`help help_dir ${HELP_DIR}`);
    expect(await view.hook_help(undefined, 'MAIL')).toEqual([OK, 'MAIL FROM:<address> [parameters]', '  Starts a mail transaction.']);
    expect(await view.hook_help(undefined, 'rcpt')).toEqual([OK, 'RCPT TO:<address>', '  Names a recipient.']);
  });

  it('no file, or an empty one: No help available', async () => {
    const { view } = await setup(`help help_dir ${HELP_DIR}`);
    expect(await view.hook_help(undefined, 'vrfy')).toEqual([OK, 'No help available for SMTP command: vrfy']);
    expect(await view.hook_help(undefined, 'EMPTY')).toEqual([OK, 'No help available for SMTP command: empty']);
  });

  it('<COMMAND> <file> pairs: a path with / as given, a bare name below help/', async () => {
    process.chdir(FIX);
    const { view, plugin, logged } = await setup(`help NOOP noop.txt Quit ${path.join(HELP_DIR, 'mail')} vrfy missing.txt`, { loglevel: '4' });
    expect(plugin._config.files.get('noop')).toBe(path.join('help', 'noop.txt'));
    expect(plugin._config.help_dir).toBeUndefined(); // only without any argument
    expect(await view.hook_help(undefined, 'noop')).toEqual([OK, 'Custom NOOP help']);
    expect(await view.hook_help(undefined, 'QUIT')).toEqual([OK, 'MAIL FROM:<address> [parameters]', '  Starts a mail transaction.']);
    expect(await view.hook_help(undefined, 'vrfy')).toEqual([OK, 'No help available for SMTP command: vrfy']);
    expect(logged.some((l) => l.endsWith("No help file for command 'vrfy'"))).toBe(true);
  });

  it('without arguments the help dir is ./help/', async () => {
    process.chdir(FIX);
    const { view, plugin } = await setup('help');
    expect(plugin._config.help_dir).toBe('./help/');
    expect(await view.hook_help(undefined, 'mail')).toEqual([OK, 'MAIL FROM:<address> [parameters]', '  Starts a mail transaction.']);
  });

  it('not_implemented and bad names answer 502 themselves (DONE); without a client only DONE', async () => {
    const { view } = await setup(`help not_implemented 1`);
    expect(await view.hook_help(undefined, 'mail')).toBe(DONE);
    const dir = await setup(`help help_dir ${HELP_DIR} not_implemented 0`);
    expect(await dir.view.hook_help(undefined, '../../etc/passwd')).toBe(DONE);
    expect(await dir.view.hook_help(undefined, 'mail')).toContain(OK);
  });

  it('refuses malformed arguments at start-up', async () => {
    await expect(setup('help help_dir')).rejects.toThrow(/help: arguments must be key\/value pairs/);
    await expect(setup('help help-dir /tmp')).rejects.toThrow(/help: invalid argument 'help-dir'/);
    await expect(setup('help help_dir /tmp/a;b')).rejects.toThrow(/invalid characters in help_dir/);
    await expect(setup('help mail /tmp/$x')).rejects.toThrow(/invalid characters in the help file name for command mail/);
  });
});

describe('help: SMTP session', () => {
  it('answers 214 from the files, 502 for bad names', async () => {
    const { runtime } = await setup(`help help_dir ${HELP_DIR}`);
    const { client, done } = start_session(runtime);
    expect((await client.reply())!.code).toBe(220);
    expect(await client.cmd('HELP')).toMatchObject({ code: 214, text: "Try 'HELP COMMAND' for getting help on COMMAND" });
    expect(await client.cmd('HELP Mail')).toMatchObject({ code: 214, lines: ['MAIL FROM:<address> [parameters]', '  Starts a mail transaction.'] });
    expect(await client.cmd('HELP foo')).toMatchObject({ code: 214, text: 'No help available for SMTP command: foo' });
    expect(await client.cmd('HELP ../../etc/passwd')).toMatchObject({ code: 502, text: 'Invalid command name' });
    expect(await client.cmd('HELP MAIL FROM')).toMatchObject({ code: 502, text: 'Invalid command name' });
    expect((await client.cmd('QUIT'))!.code).toBe(221);
    await done;
  });

  it('not_implemented 1 → 502 Not implemented.', async () => {
    const { runtime } = await setup('help not_implemented 1');
    const { client, done } = start_session(runtime);
    await client.reply();
    expect(await client.cmd('HELP')).toMatchObject({ code: 502, text: 'Not implemented.' });
    expect(await client.cmd('HELP DATA')).toMatchObject({ code: 502, text: 'Not implemented.' });
    await client.cmd('QUIT');
    await done;
  });
});
