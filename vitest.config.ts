import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Plugins import the package by name; inside tests that is the source tree.
    alias: { 'qpsmtpd-ts': fileURLToPath(new URL('./lib/index.ts', import.meta.url)) },
  },
  test: {
    include: ['t/**/*.test.ts'],
    testTimeout: 30000,
    hookTimeout: 30000,
    pool: 'forks',
    // .ci/run reads the counts from the JSON report
    reporters: ['default', ['json', { outputFile: '.ci/results.json' }]],
  },
});
