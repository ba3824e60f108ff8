// Which relative imports of a set of modules point at files outside the set: a shipped tree (the
// npm tarball, an installed prefix) must contain everything its modules import.
//
// Looked at in every .js/.mjs/.cjs file: static `import … from '…'` / `export … from '…'`, bare
// `import '…'`, `import('…')`, `require('…')` with a literal, and `new URL('…', import.meta.url)`
// (a file read at run time, such as the nft template). Only relative specifiers ('./', '../')
// count: packages come from node_modules, computed paths cannot be checked statically.
import { readdirSync } from 'node:fs';
import path from 'node:path';

export interface MissingImport {
  /** the importing module, relative to the tree's root (posix) */
  readonly from: string;
  readonly specifier: string;
  /** where it points, relative to the root */
  readonly resolved: string;
}

const PATTERNS: { re: RegExp; kind: 'esm' | 'require' | 'url' }[] = [
  { re: /^[ \t]*(?:import|export)\b[^;'"`]*?\bfrom\s*['"]([^'"\n]+)['"]/gm, kind: 'esm' },
  { re: /^[ \t]*import\s*['"]([^'"\n]+)['"]/gm, kind: 'esm' },
  { re: /\bimport\(\s*['"]([^'"\n]+)['"]\s*\)/g, kind: 'esm' },
  { re: /\brequire\(\s*['"]([^'"\n]+)['"]\s*\)/g, kind: 'require' },
  { re: /\bnew URL\(\s*['"]([^'"\n]+)['"]\s*,\s*import\.meta\.url\s*\)/g, kind: 'url' },
];

/** The relative specifiers a module's source refers to, with how each is resolved. */
export function relativeReferences(code: string): { specifier: string; kind: 'esm' | 'require' | 'url' }[] {
  const out: { specifier: string; kind: 'esm' | 'require' | 'url' }[] = [];
  for (const { re, kind } of PATTERNS) {
    for (const m of code.matchAll(re)) {
      const specifier = m[1]!;
      if (specifier.startsWith('./') || specifier.startsWith('../')) out.push({ specifier, kind });
    }
  }
  return out;
}

/**
 * The relative references of every module in `files` (paths relative to the root, posix) that
 * resolve to nothing in `files`. ESM needs the exact file; require() may also add .js, .json or
 * /index.js; a URL may name a file or a directory holding files.
 */
export function missingImports(files: readonly string[], read: (rel: string) => string): MissingImport[] {
  const set = new Set(files.map((f) => path.posix.normalize(f)));
  const isDir = (p: string): boolean => [...set].some((f) => f.startsWith(`${p}/`));
  const missing: MissingImport[] = [];
  for (const from of set) {
    if (!/\.(?:m|c)?js$/.test(from)) continue;
    for (const { specifier, kind } of relativeReferences(read(from))) {
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier.replace(/[?#].*$/, ''))).replace(/\/$/, '');
      const candidates = kind === 'require' ? [resolved, `${resolved}.js`, `${resolved}.json`, `${resolved}/index.js`] : [resolved];
      const found = candidates.some((c) => set.has(c)) || (kind === 'url' && isDir(resolved));
      if (!found) missing.push({ from, specifier, resolved });
    }
  }
  return missing;
}

/** Every file under dir (relative, posix), skipping the directory names in `skip`. */
export function listTree(dir: string, skip: readonly string[] = []): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!skip.includes(e.name)) walk(r);
      } else if (e.isFile() || e.isSymbolicLink()) out.push(r);
    }
  };
  walk('');
  return out;
}
