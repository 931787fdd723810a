// Where the package's own files are, whether running from lib/ (tests) or dist/lib/ (built).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function find_root(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (existsSync(path.join(d, 'package.json'))) return d;
    if (path.dirname(d) === d) return path.resolve(here, '..');
  }
}

export const PACKAGE_ROOT = find_root(here);
/** The embedded default config: `bin/qpsmtpd-ts start` on a fresh clone runs on it. */
export const PACKAGE_CONFIG_DIR = path.join(PACKAGE_ROOT, 'config');
/** Plugins shipped with the package, next to the code that is running (dist/plugins or plugins). */
export const PACKAGE_PLUGIN_DIR = path.resolve(here, '..', 'plugins');

export const VERSION: string = (() => {
  try {
    return JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();
