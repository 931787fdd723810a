// The pid file: written by the master, read by stop/reload/status.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';

export function read_pid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function pid_alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses when a live process owns the file (a stale file is replaced). */
export function claim_pid_file(file: string, pid = process.pid): void {
  const old = read_pid(file);
  if (old !== undefined && old !== pid && pid_alive(old)) {
    throw new Error(`Found an already running qpsmtpd-ts with pid ${old} (pid file ${file}).`);
  }
  writeFileSync(file, `${pid}\n`);
}

export function remove_pid_file(file: string, pid = process.pid): void {
  if (read_pid(file) === pid) {
    try {
      unlinkSync(file);
    } catch {
      /* already gone */
    }
  }
}
