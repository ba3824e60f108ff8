// The two native addons as packaged: each beside its feature (src/dns/fastpath, src/fallback/relay),
// loaded by node-gyp-build from the source directory of the compiled wrapper, optional at install
// (scripts/build-native.mjs: a prebuild, else a compile, else one warning and exit 0), and a clear
// E_NATIVE_MISSING at run time. Needs the addons built (npm ci or npm run build:native); fails, never
// skips, without them.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { execa } from 'execa';
import { addonDir } from '../../src/core/addon.js';
import { ApnsProxyError } from '../../src/core/errors.js';
import { loadFastPath } from '../../src/dns/fastpath/index.js';
import { loadRelayAddon } from '../../src/fallback/relay/index.js';
import { nodeBin, repoRoot } from '../../lab/lab.js';

const ROOT = repoRoot();
const SCRIPT = path.join(ROOT, 'scripts/build-native.mjs');
const ADDONS = [
  { name: 'fastpath', dir: 'src/dns/fastpath', target: 'apns_proxy_fastpath', lost: /no UDP fast path: the DNS server serves UDP with node:dgram/ },
  { name: 'relay', dir: 'src/fallback/relay', target: 'apns_proxy_relay', lost: /no userspace fallback: set fallback\.enabled to false/ },
];

test('addonDir: the compiled wrapper (dist/src/...) loads from the source directory that ships the addon', (t) => {
  const url = (p: string) => pathToFileURL(path.join(ROOT, p)).href;
  t.is(addonDir(url('dist/src/dns/fastpath/index.js')), path.join(ROOT, 'src/dns/fastpath'));
  t.is(addonDir(url('dist/src/fallback/relay/index.js')), path.join(ROOT, 'src/fallback/relay'));
  t.is(addonDir(pathToFileURL('/elsewhere/x/index.js').href), '/elsewhere/x', 'outside dist/src: its own directory');
});

test('both addons load through node-gyp-build, from beside their features', (t) => {
  t.notThrows(() => loadFastPath());
  t.notThrows(() => loadRelayAddon());
});

test('relay addon missing: E_NATIVE_MISSING naming the addon and fallback.enabled, not E_LISTEN', (t) => {
  const err = t.throws(() => loadRelayAddon(() => { throw new Error('No native build was found for platform=linux arch=x64\n    loaded from: /x'); }));
  t.true(err instanceof ApnsProxyError);
  t.is((err as ApnsProxyError).code, 'E_NATIVE_MISSING');
  t.regex(err!.message, /apns_proxy_relay/);
  t.regex(err!.message, /No native build was found for platform=linux arch=x64\)/, 'the loader\'s first line, not its whole text');
  t.regex(err!.message, /npm run build:native" .* or set fallback\.enabled to false$/);
  t.notThrows(() => loadRelayAddon(), 'a failed stand-in does not poison the real loader');
});

/** A copy of the addons' sources under a temp root, without prebuilds or builds; PATH holding only node. */
function bareTree(t: { teardown(fn: () => void): void }): { root: string; env: Record<string, string> } {
  const tmp = mkdtempSync(path.join(tmpdir(), 'apns-proxy-addons-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const bin = path.join(tmp, 'bin');
  mkdirSync(bin);
  symlinkSync(nodeBin(), path.join(bin, 'node'));
  for (const a of ADDONS) {
    cpSync(path.join(ROOT, a.dir), path.join(tmp, 'root', a.dir), {
      recursive: true, filter: (src) => !/[/\\](prebuilds|build)$/.test(src),
    });
  }
  // no python3, make, g++, nor npm's node-gyp: a router without a toolchain
  return { root: path.join(tmp, 'root'), env: { PATH: bin, npm_config_node_gyp: '' } };
}

test('install without a prebuild and without a toolchain: one warning per addon saying what is lost, exit 0', async (t) => {
  const { root, env } = bareTree(t);
  const r = await execa(nodeBin(), [SCRIPT, 'install', '--root', root], { reject: false, env, extendEnv: false });
  t.is(r.exitCode, 0, r.stderr);
  for (const a of ADDONS) {
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith(`apns-proxy: warning: the ${a.name} addon (${a.target})`));
    t.is(warnings.length, 1, r.stderr);
    t.regex(warnings[0]!, a.lost);
    t.false(existsSync(path.join(root, a.dir, 'build')), 'no half-built leftovers');
  }
});

test('install with prebuilds: they are used as they are, no compiler needed', async (t) => {
  const { root, env } = bareTree(t);
  for (const a of ADDONS) {
    // the prebuild npm run build:native made, or else the file npm ci compiled, put where a package ships it
    const prebuilds = path.join(ROOT, a.dir, 'prebuilds', `linux-${process.arch}`);
    const built = existsSync(prebuilds) ? path.join(prebuilds, readdirSync(prebuilds)[0]!) : path.join(ROOT, a.dir, 'build/Release', `${a.target}.node`);
    const dest = path.join(root, a.dir, 'prebuilds', `linux-${process.arch}`);
    mkdirSync(dest, { recursive: true });
    cpSync(built, path.join(dest, `${a.target}.glibc.node`));
  }
  const r = await execa(nodeBin(), [SCRIPT, 'install', '--root', root], { reject: false, env, extendEnv: false });
  t.is(r.exitCode, 0, r.stderr);
  for (const a of ADDONS) {
    t.true(r.stderr.includes(`apns-proxy: ${a.name} addon: using ${a.dir}/prebuilds/linux-${process.arch}/${a.target}.glibc.node`), r.stderr);
  }
  t.false(/warning|compiling/.test(r.stderr), r.stderr);
});
