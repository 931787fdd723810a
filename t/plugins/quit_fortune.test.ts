// quit_fortune: registered only when /usr/games/fortune is executable; a stand-in fortune
// program tests the goodbye. (qpsmtpd has no plugin test for it.)
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Plugin } from '../../lib/index.js';
import { make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

interface QuitFortune extends Plugin {
  _fortune: string;
}

async function setup(line = 'quit_fortune') {
  const rt = await make_runtime({ plugins: [line], me: 'mx.example.test' });
  return { ...rt, plugin: rt.runtime.plugins[0] as QuitFortune };
}

/** A fake `fortune` that checks for -s and prints two lines. */
function fake_fortune(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-fortune-'));
  const file = path.join(dir, 'fortune');
  writeFileSync(file, '#!/bin/sh\n[ "$1" = "-s" ] || exit 1\nprintf "Q: What is a dog?\\nA: A cat in disguise.\\n"\n');
  chmodSync(file, 0o755);
  return file;
}

/** The loaded plugin, pointed at `program` and hooked as register() would have done. */
async function with_fortune(program: string) {
  const rt = await setup();
  rt.plugin._fortune = program;
  if (!rt.runtime.hooks.has('quit')) rt.plugin.register_hook('quit', 'fortune');
  return rt;
}

const DEFAULT_BYE = 'mx.example.test closing connection. Have a wonderful day.';

describe('quit_fortune: registration', () => {
  it('registers quit only if /usr/games/fortune is executable', async () => {
    const { runtime } = await setup();
    expect(runtime.hooks.has('quit')).toBe(existsSync('/usr/games/fortune'));
  });

  it('refuses arguments at start-up', async () => {
    await expect(setup('quit_fortune cookies 1')).rejects.toThrow(/quit_fortune: unknown argument 'cookies'/);
  });
});

describe('quit_fortune: SMTP sessions', () => {
  it('without the hook (no fortune program) QUIT gets the usual 221', async () => {
    const { runtime } = await with_fortune('/nonexistent/fortune');
    runtime.hooks.unregister('quit', runtime.plugins[0]!.plugin_name());
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221, text: DEFAULT_BYE });
    await done;
  });

  it('after HELO: 221 <me> closing connection. plus the fortune lines', async () => {
    const { runtime } = await with_fortune(fake_fortune());
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('QUIT')).toMatchObject({
      code: 221,
      lines: ['mx.example.test closing connection.', '  / Q: What is a dog?', '  / A: A cat in disguise.'],
    });
    expect(await client.wait_closed()).toBe(true);
    await done;
  });

  it('after EHLO, or without a greeting: the usual 221', async () => {
    const { runtime } = await with_fortune(fake_fortune());
    let s = start_session(runtime);
    await s.client.reply();
    await s.client.cmd('EHLO client.test');
    expect(await s.client.cmd('QUIT')).toMatchObject({ code: 221, text: DEFAULT_BYE });
    await s.done;

    s = start_session(runtime);
    await s.client.reply();
    expect(await s.client.cmd('QUIT')).toMatchObject({ code: 221, text: DEFAULT_BYE });
    await s.done;
  });

  it('a failing fortune program leaves just the first line', async () => {
    const { runtime } = await with_fortune('/bin/false');
    const { client, done } = start_session(runtime);
    await client.reply();
    await client.cmd('HELO client.test');
    expect(await client.cmd('QUIT')).toMatchObject({ code: 221, lines: ['mx.example.test closing connection.'] });
    await done;
  });
});
