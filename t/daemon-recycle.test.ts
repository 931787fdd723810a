// A worker told to retire still serves every session it was handed before the master saw it
// retire (regression: such sessions got 220 and then 421).
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { connect, start_daemon } from './lib/daemon.js';
import { REPO, write_config } from './lib/harness.js';

describe('worker recycling under concurrent connections', () => {
  it('--worker-sessions 2 with 12 clients at once: every one is greeted and served', async () => {
    const dir = write_config({
      me: 'mx.local.test',
      plugin_dirs: [path.join(REPO, 't', 'fixtures', 'daemon'), path.join(REPO, 'dist', 'plugins')],
      plugins: ['accept_all', 'queue/discard'],
      spool_dir: mkdtempSync(path.join(os.tmpdir(), 'qpts-rc-')),
      dns_servers: '127.0.0.1:9',
      loglevel: '1',
    });
    const d = await start_daemon(['--config', dir, '-l', '127.0.0.1', '-p', '0', '--workers', '2', '--worker-sessions', '2', '-m', '0', '-c', '50']);
    try {
      const clients = await Promise.all(Array.from({ length: 12 }, () => connect(d.port)));
      const greetings = await Promise.all(clients.map((c) => c.reply(15000)));
      expect(greetings.map((g) => g?.code)).toEqual(Array(12).fill(220));
      const hellos = await Promise.all(clients.map((c) => c.cmd('HELO client.test', 15000)));
      expect(hellos.map((h) => h?.code)).toEqual(Array(12).fill(250));
      const quits = await Promise.all(clients.map((c) => c.cmd('QUIT', 15000)));
      expect(quits.map((q) => q?.code)).toEqual(Array(12).fill(221));
    } finally {
      await d.stop();
    }
  }, 60000);
});
