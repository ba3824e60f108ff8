#!/usr/bin/env node
// `npm run schema`: writes, from the TypeBox schema (src/core/config-schema.ts) as built in dist/ (run
// `npm run build` first), the two files generated from it:
//   config.schema.json                         the published JSON Schema of config.json
//   src/core/config-contract.generated.ts      the check and defaults config.ts loads instead of TypeBox
// `--check` writes nothing and exits 1 when a committed file differs (the unit tests check it too).
// After a change to the schema, build again: dist/ must hold the new generated module.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { publishedSchemaText, contractModuleText } = await import(path.join(ROOT, 'dist/src/core/config-schema.js'));
const outputs = [
  [path.join(ROOT, 'config.schema.json'), publishedSchemaText()],
  [path.join(ROOT, 'src/core/config-contract.generated.ts'), contractModuleText()],
];
const check = process.argv.includes('--check');
let stale = false;
for (const [file, text] of outputs) {
  const rel = path.relative(ROOT, file);
  if (check) {
    let current = '';
    try { current = readFileSync(file, 'utf8'); } catch { /* missing: differs */ }
    if (current !== text) {
      process.stderr.write(`${rel} is not what src/core/config-schema.ts generates: run npm run build && npm run schema && npm run build\n`);
      stale = true;
    }
  } else {
    writeFileSync(file, text);
    process.stderr.write(`wrote ${rel}\n`);
  }
}
if (stale) process.exit(1);
