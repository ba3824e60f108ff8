#!/usr/bin/env node
// The two native addons, each in the source directory beside its feature (its C file, binding.gyp
// and, in a package, prebuilds/):
//
//   fastpath  src/dns/fastpath    apns_proxy_fastpath  the DNS server's UDP fast path
//   relay     src/fallback/relay  apns_proxy_relay     the fallback's transparent listener and relay
//
//   node scripts/build-native.mjs install    (npm's `install` hook: npm ci, npm install)
//     Per addon: a prebuild for this platform and architecture (prebuilds/linux-<arch>/*.node) or an
//     earlier local build that loads is used as it is; otherwise it is compiled with node-gyp
//     (needs python3, make, g++). Both are optional: when one can be had neither way, one warning
//     names it and what is lost, and the install goes on (exit 0).
//   node scripts/build-native.mjs prebuild   (npm run build:native)
//     Per addon: prebuildify --napi, which compiles it and leaves <dir>/prebuilds/linux-<arch>/
//     <target>.node, the file a package ships so that installing it needs no compiler. Fails (exit 1)
//     when an addon does not compile.
//
// --root DIR: the package root (default: this script's parent directory; tests use a copy).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

const ADDONS = [
  {
    name: 'fastpath', dir: 'src/dns/fastpath', target: 'apns_proxy_fastpath',
    lost: 'no UDP fast path: the DNS server serves UDP with node:dgram (the same answers, less throughput)',
  },
  {
    name: 'relay', dir: 'src/fallback/relay', target: 'apns_proxy_relay',
    lost: 'no userspace fallback: set fallback.enabled to false in the config, or the daemon will not start',
  },
];

const say = (text) => process.stderr.write(`apns-proxy: ${text}\n`);

/** node-gyp: npm's bundled copy (npm_config_node_gyp in npm scripts, else beside npm), else from PATH. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  const js = candidates.find((c) => c && existsSync(c));
  return js ? [process.execPath, js] : ['node-gyp'];
}

/** The addon's file as node-gyp-build would load it, when it loads; else undefined and why not. */
function loadable(dir) {
  const nodeGypBuild = require('node-gyp-build');
  try {
    const file = nodeGypBuild.path(dir);
    require(file);
    return { file };
  } catch (err) {
    return { why: String(err?.message ?? err).split('\n')[0] };
  }
}

function run(argv, cwd, quiet) {
  const r = spawnSync(argv[0], argv.slice(1), { cwd, encoding: 'utf8', stdio: quiet ? 'pipe' : 'inherit', env: process.env });
  if (r.error) return { ok: false, why: r.error.message };
  if (r.status !== 0) {
    // node-gyp names the cause on its "stack Error:" line ("Could not find any Python installation
    // to use", "not found: make"); a compiler error on an "error:" line
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n');
    const stack = out.find((l) => /ERR! stack Error: /.test(l))?.replace(/^.*ERR! stack Error: /, '');
    const cc = out.find((l) => /\berror:/.test(l))?.trim();
    return { ok: false, why: `node-gyp: ${cc ?? stack ?? `exit ${r.status}`}` };
  }
  return { ok: true };
}

function install(root) {
  let missing = 0;
  for (const a of ADDONS) {
    const dir = path.join(root, a.dir);
    const found = loadable(dir);
    if (found.file) {
      say(`${a.name} addon: using ${path.relative(root, found.file)}`);
      continue;
    }
    say(`${a.name} addon: no prebuild for ${process.platform}-${process.arch}; compiling ${a.target} (node-gyp)`);
    const built = run([...nodeGyp(), 'rebuild'], dir, true);
    const after = built.ok ? loadable(dir) : { why: built.why };
    if (after.file) {
      say(`${a.name} addon: built ${path.relative(root, after.file)}`);
      continue;
    }
    rmSync(path.join(dir, 'build'), { recursive: true, force: true });  // no half-built leftovers
    missing++;
    say(`warning: the ${a.name} addon (${a.target}) has no prebuild here and could not be compiled (${after.why}): ${a.lost}. ` +
      'To build it: install python3, make and g++, then run npm run build:native.');
  }
  return 0;  // both addons are optional
}

function prebuild(root) {
  const bin = path.join(path.dirname(require.resolve('prebuildify/package.json')), 'bin.js');
  // prebuildify runs one executable: a shim for npm's node-gyp
  const gyp = nodeGyp();
  const env = {};
  let shimDir;
  if (gyp.length === 2) {
    shimDir = mkdtempSync(path.join(tmpdir(), 'apns-proxy-gyp-'));
    const shim = path.join(shimDir, 'node-gyp');
    writeFileSync(shim, `#!/bin/sh\nexec ${gyp.map((p) => `'${p.replace(/'/g, "'\\''")}'`).join(' ')} "$@"\n`, { mode: 0o755 });
    env.PREBUILD_NODE_GYP = shim;
  }
  let failed = 0;
  for (const a of ADDONS) {
    const dir = path.join(root, a.dir);
    say(`${a.name} addon: prebuildify --napi in ${a.dir}`);
    rmSync(path.join(dir, 'build'), { recursive: true, force: true });  // node-gyp-build prefers build/ over prebuilds/
    // --napi: one binary for every Node version; the headers are this Node's; --tag-libc: glibc or musl
    const r = spawnSync(process.execPath, [bin, '--napi', '--tag-libc', '--name', a.target, '--target', `node@${process.versions.node}`],
      { cwd: dir, stdio: 'inherit', env: { ...process.env, ...env } });
    if (r.status !== 0) {
      failed++;
      say(`error: prebuildify failed for the ${a.name} addon (${a.target}); it needs python3, make and g++`);
      continue;
    }
    rmSync(path.join(dir, 'build'), { recursive: true, force: true });  // intermediates; the addon is in prebuilds/
    const found = loadable(dir);
    if (!found.file) {
      failed++;
      say(`error: the ${a.name} addon was built but does not load: ${found.why}`);
      continue;
    }
    say(`${a.name} addon: ${path.relative(root, found.file)}`);
  }
  if (shimDir) rmSync(shimDir, { recursive: true, force: true });
  return failed ? 1 : 0;
}

const args = process.argv.slice(2);
let root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const at = args.indexOf('--root');
if (at >= 0) {
  root = path.resolve(args[at + 1] ?? '.');
  args.splice(at, 2);
}
const mode = args[0] ?? 'install';
if (mode === 'install') process.exitCode = install(root);
else if (mode === 'prebuild') process.exitCode = prebuild(root);
else {
  say(`usage: node scripts/build-native.mjs install|prebuild [--root DIR] (got ${JSON.stringify(mode)})`);
  process.exitCode = 2;
}
