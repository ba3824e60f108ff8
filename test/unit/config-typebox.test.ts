// config.js must not load TypeBox on the way to a valid config: its modules cost the daemon (and every
// CLI command, which all parse the config first) ~8 MB of memory. A fresh node imports config.js with
// a resolve hook that fails any import of @sinclair/typebox (ESM), and reads require.cache (CommonJS,
// which the error path loads and Node 20's hooks do not see).
import { execFileSync } from 'node:child_process';
import test from 'ava';

const CONFIG = new URL('../../src/core/config.js', import.meta.url).href;
const SCHEMA = new URL('../../src/core/config-schema.js', import.meta.url).href;

const CHILD = `
import { createRequire, register } from 'node:module';
const hook = \`export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  if (r.url.includes('/@sinclair/typebox/')) throw new Error('TypeBox imported: ' + r.url);
  return r;
}\`;
register('data:text/javascript,' + encodeURIComponent(hook));
const typeboxInRequireCache = () => Object.keys(createRequire(process.cwd() + '/').cache).filter((f) => f.includes('/@sinclair/typebox/')).length;
const out = {};
const { parseConfig } = await import(process.argv[1]);
out.valid = parseConfig({ dns: { ttl: 5 } }).dns.ttl;
out.cachedAfterValid = typeboxInRequireCache();
try { parseConfig({ dns: { ttl: '30' } }); } catch (err) { out.refused = err.message; }
out.cachedAfterRefused = typeboxInRequireCache() > 0;
try { await import(process.argv[2]); out.schemaImport = 'loaded'; } catch (err) { out.schemaImport = err.message; }
console.log(JSON.stringify(out));
`;

test('importing config.js and parsing a valid config loads no TypeBox; a refused one loads its Errors (CommonJS)', (t) => {
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', CHILD, CONFIG, SCHEMA], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'],
  })) as Record<string, unknown>;
  t.is(out.valid, 5);
  t.is(out.cachedAfterValid, 0, 'no TypeBox module in require.cache after a valid config');
  t.is(out.refused, 'config: dns.ttl: must be an integer in 0..86400, got "30"');
  t.true(out.cachedAfterRefused, 'the error path loads TypeBox\'s Errors through require');
  // the hook can fail: config-schema.js imports TypeBox
  t.regex(String(out.schemaImport), /^TypeBox imported: file:.*\/@sinclair\/typebox\//);
});
