// The layers of src/, checked from the import lines: each folder imports only from the layers below
// it (or from itself), features do not import each other, and nothing in the product imports the
// tests or the lab. The rules are the ones README "How the code is laid out" describes.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { REPO } from '../helpers/fixtures.js';

const SRC = new URL('src/', REPO).pathname;

/** Layer of a file under src/ (repo-relative to src), lowest first; peers share a rank. */
function layer(rel: string): { name: string; rank: number } {
  if (rel.startsWith('core/')) return { name: 'core', rank: 0 };
  if (rel.startsWith('nft/')) return { name: 'nft', rank: 1 };
  if (rel.startsWith('dns/client/')) return { name: 'dns/client', rank: 1 };
  if (rel.startsWith('sync/')) return { name: 'sync', rank: 2 };
  if (rel.startsWith('dns/')) return { name: 'dns', rank: 3 };
  if (rel.startsWith('fallback/')) return { name: 'fallback', rank: 3 };
  if (rel.startsWith('ops/')) return { name: 'ops', rank: 4 };
  if (rel.startsWith('cli/') || rel === 'cli.ts') return { name: 'cli', rank: 5 };
  return { name: `unplaced (${rel})`, rank: -1 };
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
}

test('every src file sits in a layer, and imports only downwards or within its own folder', (t) => {
  const problems: string[] = [];
  for (const file of sources(SRC)) {
    const rel = path.relative(SRC, file);
    const own = layer(rel);
    if (own.rank < 0) problems.push(`${rel}: not in a layer folder`);
    for (const spec of imports(file)) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts');
      if (target.startsWith('..')) {
        problems.push(`${rel} imports ${spec}: outside src/ (the product must not import tests or the lab)`);
        continue;
      }
      const to = layer(target);
      if (to.name === own.name) continue;
      if (to.rank >= own.rank) problems.push(`${rel} (${own.name}) imports ${target} (${to.name})`);
    }
  }
  t.deepEqual(problems, []);
});

test('the layer check can fail: an upward and a cross-feature import are both found', (t) => {
  t.true(layer('core/net.ts').rank < layer('sync/controller.ts').rank);
  t.is(layer('dns/server.ts').rank, layer('fallback/listener.ts').rank, 'peers: neither may import the other');
  t.true(layer('dns/client/resolver.ts').rank < layer('sync/mapping.ts').rank);
});
