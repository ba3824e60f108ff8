// Where a native addon lives and how it is loaded. Each addon sits beside its feature, in the source
// directory that holds its C file, binding.gyp and prebuilds/ (src/dns/fastpath, src/fallback/relay);
// its TypeScript wrapper is compiled to the same place under dist/. node-gyp-build, the ecosystem's
// loader, takes that directory and loads a local build (build/Release) or else the prebuild that
// matches this platform and architecture (prebuilds/linux-x64/*.node).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;

const HERE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));  // <root>/dist/src (or <root>/src)

/**
 * The addon directory of the wrapper module at `moduleUrl`: its directory with dist/src/ mapped
 * back to src/ (dist/src/dns/fastpath/index.js → src/dns/fastpath), unchanged when not under dist.
 */
export function addonDir(moduleUrl: string): string {
  const dir = path.dirname(fileURLToPath(moduleUrl));
  const rel = path.relative(HERE, dir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) return dir;
  const distSrc = path.basename(HERE) === 'src' && path.basename(path.dirname(HERE)) === 'dist';
  return distSrc ? path.join(path.dirname(path.dirname(HERE)), 'src', rel) : dir;
}

/** Loads the addon of the wrapper module at `moduleUrl`; throws (node-gyp-build's message) when none is built. */
export function loadAddon<T>(moduleUrl: string): T {
  return nodeGypBuild(addonDir(moduleUrl)) as T;
}
