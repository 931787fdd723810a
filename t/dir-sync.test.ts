// lib/dir-sync.ts: directory fsync with group commit — shared, yet never one that began before the call.
import fsp from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sync_dir } from '../lib/dir-sync.js';

const dirs: string[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Counts real fsyncs (FileHandle#sync) and when each started and ended, in call order. */
async function watch_syncs(): Promise<string[]> {
  const events: string[] = [];
  const probe = await fsp.open(os.tmpdir(), 'r');
  const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  const real = proto.sync;
  let n = 0;
  vi.spyOn(proto, 'sync').mockImplementation(async function (this: fsp.FileHandle) {
    const i = ++n;
    events.push(`start ${i}`);
    await new Promise((r) => setTimeout(r, 20)); // a slow disk, so calls overlap
    await real.call(this);
    events.push(`end ${i}`);
  });
  return events;
}

describe('sync_dir', () => {
  it('concurrent callers share fsyncs; a caller during an fsync waits for the next one', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-dsync-'));
    dirs.push(dir);
    const events = await watch_syncs();
    const first = sync_dir(dir).then(() => events.push('first done'));
    const later = Array.from({ length: 9 }, (_, i) => sync_dir(dir).then(() => events.push(`later ${i} done`)));
    await Promise.all([first, ...later]);
    // one fsync for the first caller, one shared by the nine that came while it ran
    expect(events.filter((e) => e.startsWith('start'))).toEqual(['start 1', 'start 2']);
    expect(events.indexOf('first done')).toBeGreaterThan(events.indexOf('end 1'));
    for (let i = 0; i < 9; i++) expect(events.indexOf(`later ${i} done`)).toBeGreaterThan(events.indexOf('end 2'));
    // idle again: the next caller gets an fsync of its own at once
    await sync_dir(dir);
    expect(events.filter((e) => e.startsWith('start'))).toHaveLength(3);
  });

  it('an fsync that fails fails every caller that shares it', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'qpts-dsync-'));
    dirs.push(dir);
    rmSync(dir, { recursive: true });
    const results = await Promise.allSettled([sync_dir(dir), sync_dir(dir), sync_dir(dir)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason.code).toBe('ENOENT');
  });
});
