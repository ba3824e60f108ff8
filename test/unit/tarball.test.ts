// The npm tarball (`npm pack`, package.json "files") holds every file its modules import, and no
// part of the lab (lab/, scripts/lab.sh: a development tool that runs from a checkout). Needs the
// tree built (npm run test:unit builds it first).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../../lab/lab.js';
import { missingImports, relativeReferences } from '../helpers/imports.js';

const show = (m: { from: string; specifier: string; resolved: string }[]): string =>
  m.map((x) => `${x.from}: '${x.specifier}' → ${x.resolved}`).join('\n');

test('missingImports finds an import of a file outside the set, and only that', (t) => {
  const code: Record<string, string> = {
    'dist/src/a.js': "import { b } from './b.js';\nimport {\n  c,\n} from '../lab/c.js';\nexport * from './d.js';\nimport 'node:fs';\nconst x = await import('./gone.js');\n// import from './not-code.js' in a comment line is not an import\n",
    'dist/src/b.js': "const { createRequire } = require('./cjs');\nconst t = new URL('../../nft/t.nft', import.meta.url);\nconst u = new URL('../../nope/', import.meta.url);\n",
    'dist/src/d.js': 'export const d = 1;\n',
    'dist/src/cjs/index.js': '',
    'nft/t.nft': '',
  };
  const missing = missingImports(Object.keys(code), (f) => code[f]!);
  t.deepEqual(missing.map((m) => m.resolved).sort(), ['dist/lab/c.js', 'dist/src/gone.js', 'nope'], show(missing));
  t.deepEqual(relativeReferences("import x from 'execa';\nimport y from './y.js';").map((r) => r.specifier), ['./y.js']);
});

test('every module in the npm tarball resolves its relative imports within the tarball; the lab is not in it', async (t) => {
  const root = repoRoot();
  const r = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, reject: false, timeout: 60_000 });
  t.is(r.exitCode, 0, r.stderr);
  const files = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
  t.true(files.includes('dist/src/cli.js'), 'the program is in the tarball (run npm run build first)');
  t.true(files.includes('nft/apns-proxy.nft'));
  const modules = files.filter((f) => /\.(?:m|c)?js$/.test(f));
  t.true(modules.length > 20, `${modules.length} modules`);
  const missing = missingImports(files, (f) => readFileSync(path.join(root, f), 'utf8'));
  t.deepEqual(missing, [], `imports missing from the tarball (a stale build? rm -rf dist && npm run build):\n${show(missing)}`);
  const lab = files.filter((f) => /^(?:lab|dist\/lab|dist\/src\/lab|dist\/test|test)\//.test(f) || f === 'scripts/lab.sh');
  t.deepEqual(lab, [], 'no lab and no tests in the tarball');
});
