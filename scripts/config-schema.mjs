#!/usr/bin/env node
// `npm run schema`: writes config.schema.json, the published JSON Schema of config.json, from the
// TypeBox schema (src/core/config-schema.ts) as built in dist/ (run `npm run build` first).
// `--check` writes nothing and exits 1 when the committed file differs (the unit tests check it too).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FILE = path.join(ROOT, 'config.schema.json');
const { publishedSchemaText } = await import(path.join(ROOT, 'dist/src/core/config-schema.js'));
const text = publishedSchemaText();
if (process.argv.includes('--check')) {
  let current = '';
  try { current = readFileSync(FILE, 'utf8'); } catch { /* missing: differs */ }
  if (current !== text) {
    process.stderr.write('config.schema.json is not what src/core/config-schema.ts generates: run npm run build && npm run schema\n');
    process.exit(1);
  }
} else {
  writeFileSync(FILE, text);
  process.stderr.write(`wrote ${path.relative(process.cwd(), FILE) || FILE}\n`);
}
