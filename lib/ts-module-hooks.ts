// Module customization hooks (node:module register) for plugin files outside the package:
// `qpsmtpd-ts` resolves to the running server's own entry point, and `.ts` files are
// transpiled on load, so a plugin directory needs neither node_modules nor a build step.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

let entry = '';
let source_lib = '';
let built_lib = '';

export async function initialize(data: { entry: string; source_lib: string; built_lib: string }): Promise<void> {
  ({ entry, source_lib, built_lib } = data);
}

type Next<T> = (...args: any[]) => Promise<T>;

export async function resolve(specifier: string, context: unknown, next: Next<{ url: string }>): Promise<unknown> {
  if (specifier === 'qpsmtpd-ts') return { url: entry, shortCircuit: true };
  try {
    return await next(specifier, context);
  } catch (err) {
    if (!/^\.\.?\//.test(specifier) || !specifier.endsWith('.js')) throw err;
    const parent = (context as { parentURL?: string }).parentURL;
    const target = parent ? new URL(specifier, parent).href : '';
    // a package plugin run from source imports ../lib/x.js: use the running (built) copy
    if (source_lib && target.startsWith(source_lib)) return { url: built_lib + target.slice(source_lib.length), shortCircuit: true };
    // `import './helper.js'` from a .ts plugin whose sibling is helper.ts
    return next(specifier.slice(0, -3) + '.ts', context);
  }
}

export async function load(url: string, context: unknown, next: Next<unknown>): Promise<unknown> {
  if (!url.startsWith('file:') || !/\.m?ts$/.test(url)) return next(url, context);
  const file = fileURLToPath(url);
  const ts = (await import('typescript')).default;
  const out = ts.transpileModule(await readFile(file, 'utf8'), {
    fileName: file,
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      sourceMap: false,
      inlineSourceMap: true,
      inlineSources: true,
    },
  });
  return { format: 'module', source: out.outputText, shortCircuit: true };
}
