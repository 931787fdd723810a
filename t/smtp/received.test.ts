// The Received header the core adds stays well-formed whatever the client calls itself (INJ-02).
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PLUGIN_DIR, REPO, make_runtime } from '../lib/harness.js';
import { start_session } from '../lib/session.js';

async function received_for(helo: string): Promise<string> {
  const queue = mkdtempSync(path.join(os.tmpdir(), 'qpts-q-'));
  const { runtime } = await make_runtime({
    me: 'mx.local.test',
    plugin_dirs: [path.join(REPO, 't', 'fixtures', 'plugins'), PLUGIN_DIR],
    plugins: ['test_rcpt_local', 'test_queue'],
    test_queue_dir: queue,
  });
  const { client } = start_session(runtime);
  await client.reply();
  expect((await client.cmd(`EHLO ${helo}`))!.code).toBe(250);
  await client.cmd('MAIL FROM:<a@example.test>');
  await client.cmd('RCPT TO:<r@local.test>');
  await client.cmd('DATA');
  expect((await client.cmd('Subject: t\r\n\r\nbody\r\n.'))!.code).toBe(250);
  const file = readdirSync(path.join(queue, 'new')).find((f) => f.endsWith('.eml'))!;
  const text = readFileSync(path.join(queue, 'new', file), 'latin1');
  return /^Received: [^\n]*\n(?: [^\n]*\n)*/m.exec(text)![0];
}

describe('Received header', () => {
  it('names the client and its HELO as qpsmtpd does', async () => {
    const r = await received_for('client.test');
    expect(r).toMatch(/^Received: from Unknown \(HELO client\.test\) \(127\.0\.0\.1\)\n by mx\.local\.test \(qpsmtpd-ts\/[^)]+\) with ESMTP id [0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}\.1; \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n$/);
  });

  it('a HELO name with comment syntax cannot unbalance the header (INJ-02)', async () => {
    const r = await received_for('a(b)c"d;e\\');
    expect(r).toMatch(/\(HELO a\?b\?c"d;e\?\)/);
    const opens = (r.match(/\(/g) ?? []).length;
    const closes = (r.match(/\)/g) ?? []).length;
    expect(opens).toBe(closes);
  });
});
