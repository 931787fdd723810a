// fsync of a directory with group commit: every caller whose directory entries changed before
// an fsync started shares it. A queue makes `new/` durable before each 250; with many messages
// in flight one fsync then covers all of them instead of one fsync each.
import fsp from 'node:fs/promises';

const noop = (): void => undefined;

class GroupSync {
  /** The fsync under way. */
  private running?: Promise<void>;
  /** The fsync that starts when the running one is over (callers who came during it). */
  private waiting?: Promise<void>;

  constructor(
    private readonly dir: string,
    private readonly idle: () => void,
  ) {}

  sync(): Promise<void> {
    if (!this.running) return this.start();
    // the running fsync may have begun before the caller's change: only the next one covers it
    return (this.waiting ??= this.running.then(noop, noop).then(() => {
      this.waiting = undefined;
      return this.start();
    }));
  }

  private start(): Promise<void> {
    const p = fsync_dir(this.dir);
    this.running = p;
    const done = (): void => {
      if (this.running !== p) return;
      this.running = undefined;
      if (!this.waiting) this.idle();
    };
    p.then(done, done);
    return p;
  }
}

async function fsync_dir(dir: string): Promise<void> {
  const dh = await fsp.open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close().catch(noop);
  }
}

const groups = new Map<string, GroupSync>();

/**
 * Resolves once `dir` has been fsync'd by an fsync that started after this call; rejects with
 * that fsync's error. Concurrent callers share fsyncs (at most two per directory at a time:
 * the running one and the next).
 */
export function sync_dir(dir: string): Promise<void> {
  let g = groups.get(dir);
  if (!g) {
    const entry = new GroupSync(dir, () => {
      if (groups.get(dir) === entry) groups.delete(dir);
    });
    groups.set(dir, (g = entry));
  }
  return g.sync();
}
