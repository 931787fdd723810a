// The public API type-checks from a separate TypeScript project that imports the package by
// name (resolved through package.json "exports" to the built declarations in dist/).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO } from './lib/harness.js';

describe('public API', () => {
  it('compiles a plugin written against `qpsmtpd-ts` with the built type declarations', async () => {
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = await promisify(execFile)(process.execPath, [tsc, '-p', path.join(REPO, 't', 'api', 'tsconfig.json')]).catch((e) => e);
    expect(`${r.stdout ?? ''}${r.stderr ?? ''}`).toBe('');
    expect(r.code ?? 0).toBe(0);
  });

  it('fails on a misuse, so the check above means something', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const dir = mkdtempSync(path.join(REPO, 't', 'api', '.tmp-'));
    writeFileSync(path.join(dir, 'bad.ts'), "import { Plugin } from 'qpsmtpd-ts';\nexport default class X extends Plugin { hook_rcpt() { return this.connection.no_such_method(); } }\n");
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../tsconfig.json', files: ['bad.ts'] }));
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = await promisify(execFile)(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')]).catch((e) => e);
    const { rmSync } = await import('node:fs');
    rmSync(dir, { recursive: true, force: true });
    expect(r.stdout).toMatch(/no_such_method/);
  });
});
