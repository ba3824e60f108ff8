// The Debian package (`npm run package`, scripts/package.mjs, packaging/deb/).
// Builds the .deb (and a version-bumped one), checks it with lintian, then installs it on this
// machine for real with dpkg, inside a network namespace that has only a loopback: no network, and
// what the maintainer scripts do to the kernel (sysctls, the flush on remove) happens to that
// namespace's nftables and routing, where the test can look. Upgrades over itself and to the bumped
// version keep an edited conffile and the kernel map; remove flushes; purge leaves nothing.
// Needs root, dpkg-deb, lintian; fails (never skips) without. Always purges in test.after.always.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { repoRoot } from '../../lab/lab.js';
import { systemTool } from '../../src/core/tools.js';

const test = anyTest as TestFn<{ tmp: string; ns: string; deb: string; before: string }>;
const REPO = repoRoot();
const PKG = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
const NAME = 'apns-proxy';
const CONFIG = '/etc/apns-proxy/config.json';
const IP = systemTool('ip');
const NFT = systemTool('nft');
// what the package and its maintainer scripts may create outside dpkg's file list
const LEFTOVERS = [
  '/etc/apns-proxy', '/var/lib/apns-proxy', '/var/lib/private/apns-proxy', '/usr/bin/apns-proxy', '/usr/lib/apns-proxy',
  '/etc/systemd/system/apns-proxy.service', '/etc/systemd/system/multi-user.target.wants/apns-proxy.service',
  '/var/lib/systemd/deb-systemd-helper-enabled/apns-proxy.service.dsh-also',
  '/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/apns-proxy.service',
  '/var/lib/systemd/deb-systemd-helper-masked/apns-proxy.service',
];
const present = (paths: string[]) => paths.filter((p) => { try { lstatSync(p); return true; } catch { return false; } });

/** Runs cmd in the test's namespace (only lo: no network). */
async function inNs(ns: string, cmd: string, args: string[], timeout = 120_000) {
  const r = await execa(IP, ['netns', 'exec', ns, cmd, ...args], { reject: false, timeout, stdin: 'ignore', env: { DEBIAN_FRONTEND: 'noninteractive' } });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** dpkg in the namespace; waits while another process (apt) holds the dpkg lock. */
async function dpkg(ns: string, args: string[]) {
  const until = Date.now() + 240_000;
  for (;;) {
    const r = await inNs(ns, 'dpkg', args);
    if (r.exitCode !== 0 && /dpkg (frontend )?lock|database is locked/i.test(r.stderr) && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 2000));
      continue;
    }
    return r;
  }
}

// every path named *apns* where a package and its scripts write, before install and after purge
const SCAN = ['/etc', '/var/lib/systemd', '/var/lib/dpkg/info', '/usr/lib', '/lib/systemd', '/usr/bin', '/usr/share/doc', '/usr/share/man/man1', '/var/lib'];
const scan = async () => (await execa('find', [...new Set(SCAN.filter((d) => existsSync(d)))], { reject: false })).stdout
  .split('\n').filter((p) => /apns/.test(p) && !p.startsWith(tmpdir())).sort().join('\n');

const status = async () => (await execa('dpkg-query', ['-W', '-f=${Status} ${Version}', NAME], { reject: false })).stdout;

async function build(out: string, version?: string): Promise<string> {
  // dist/ was just built by `npm test`: --no-build (no tsc rewriting files other tests run);
  // the native addons are prebuilt in a temporary copy by the script itself
  const r = await execa(process.execPath, [path.join(REPO, 'scripts/package.mjs'), '--no-build', '--out', out, ...(version ? ['--version', version] : [])],
    { cwd: REPO, reject: false, timeout: 300_000 });
  if (r.exitCode !== 0) throw new Error(`scripts/package.mjs failed: ${r.stderr}`);
  return String(r.stdout).trim().split('\n').at(-1)!;
}

test.before(async (t) => {
  if (process.getuid?.() !== 0) throw new Error('the package test installs with dpkg: run it as root');
  const st = await status();
  if (!/installed/.test(st) && present(LEFTOVERS).length) {
    throw new Error(`${present(LEFTOVERS).join(', ')} exist but the package is not installed (scripts/install.sh?): not touching them`);
  }
  const tmp = mkdtempSync(path.join(tmpdir(), 'apns-proxy-pkg-'));
  const ns = `apxdeb${process.pid}`;
  t.context = { tmp, ns, deb: '', before: '' };
  await execa(IP, ['netns', 'add', ns]);
  await execa(IP, ['-n', ns, 'link', 'set', 'lo', 'up']);
  if (st) await dpkg(ns, ['--purge', NAME]);  // left over by an interrupted run
  t.context.before = await scan();
  t.context.deb = await build(path.join(tmp, 'a'));
});

test.after.always(async (t) => {
  const { ns, tmp } = t.context ?? {};
  if (ns) {
    if (await status()) await dpkg(ns, ['--purge', NAME]);
    await execa(IP, ['netns', 'del', ns], { reject: false });
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test.serial('npm run package: the .deb holds the program, its production dependencies, the unit and the conffile; lintian reports no errors', async (t) => {
  const { deb } = t.context;
  const arch = (await execa('dpkg', ['--print-architecture'])).stdout.trim();
  t.is(path.basename(deb), `${NAME}_${PKG.version}-1_${arch}.deb`);
  const field = async (f: string) => (await execa('dpkg-deb', ['-f', deb, f])).stdout.trim();
  t.is(await field('Version'), `${PKG.version}-1`);
  t.is(await field('Architecture'), arch);
  const depends = (await field('Depends')).split(/,\s*/);
  for (const d of ['nodejs (>= 20)', 'nftables', 'iproute2']) t.true(depends.includes(d), `Depends: ${d}`);
  t.true(depends.some((d) => d.startsWith('libc6')), 'the addons\' libc dependency (dpkg-shlibdeps)');

  const files = (await execa('dpkg-deb', ['-c', deb])).stdout.split('\n').map((l) => l.split(/\s+/).slice(5).join(' ').replace(/^\./, '').replace(/ -> .*$/, ''));
  const has = (p: string) => files.includes(p) || files.includes(`${p}/`);
  const lib = '/usr/lib/apns-proxy';
  for (const p of [`${lib}/dist/src/cli.js`, `${lib}/package.json`, `${lib}/nft/apns-proxy.nft`, '/usr/bin/apns-proxy', '/lib/systemd/system/apns-proxy.service',
    '/usr/lib/sysctl.d/apns-proxy.conf', '/usr/lib/modules-load.d/apns-proxy.conf', CONFIG, '/usr/share/doc/apns-proxy/copyright',
    '/usr/share/doc/apns-proxy/changelog.Debian.gz', '/usr/share/man/man1/apns-proxy.1.gz']) t.true(has(p), p);
  for (const dep of Object.keys(PKG.dependencies)) t.true(has(`${lib}/node_modules/${dep}/package.json`), `production dependency ${dep}`);
  for (const dev of ['typescript', 'ava', 'prebuildify', '@types/node']) t.false(has(`${lib}/node_modules/${dev}`), `no dev dependency ${dev}`);
  t.is(files.filter((f) => /\/prebuilds\/linux-[^/]+\/[^/]+\.node$/.test(f) && f.includes(`/prebuilds/linux-${process.arch}/`)).length, 2, 'both addons, prebuilt');
  t.false(files.some((f) => f.includes('/prebuilds/') && f.endsWith('.node') && !f.includes(`/prebuilds/linux-${process.arch}/`)), 'no other architecture');
  t.false(files.some((f) => f.startsWith(`${lib}/dist/src/lab`) || (f.startsWith(`${lib}/dist/`) && f.endsWith('.map')) || f.startsWith(`${lib}/dist/test`) || f.startsWith(`${lib}/scripts`)), 'only what the program imports');

  const x = path.join(t.context.tmp, 'x');
  await execa('dpkg-deb', ['-R', deb, x]);
  t.is(readFileSync(path.join(x, 'DEBIAN/conffiles'), 'utf8'), `${CONFIG}\n`);
  const unit = readFileSync(path.join(x, 'lib/systemd/system/apns-proxy.service'), 'utf8');
  t.regex(unit, /^ExecStart=\/usr\/bin\/node \/usr\/lib\/apns-proxy\/dist\/src\/cli\.js run --config \/etc\/apns-proxy\/config\.json$/m);
  for (const d of ['DynamicUser=yes', 'ProtectSystem=strict', 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes']) t.true(unit.includes(`\n${d}\n`), d);
  const { defaultConfigText } = await import(pathToFileURL(path.join(REPO, 'dist/src/core/config.js')).href) as typeof import('../../src/core/config.js');
  t.is(readFileSync(path.join(x, 'etc/apns-proxy/config.json'), 'utf8'), defaultConfigText('file:///usr/lib/apns-proxy/config.schema.json'),
    'the defaults after "$schema" naming the shipped JSON Schema, as scripts/install.sh writes them');
  t.regex(readFileSync(path.join(x, 'usr/share/doc/apns-proxy/copyright'), 'utf8'), /^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/$/m);

  const lint = await execa('lintian', ['--no-cfg', deb], { reject: false, timeout: 300_000 });
  const out = `${lint.stdout}\n${lint.stderr}`;
  t.deepEqual(out.split('\n').filter((l) => /^E: /.test(l)), [], out);
  t.is(lint.exitCode, 0, out);
  // the check is real: the same package without its copyright file is an error
  rmSync(path.join(x, 'usr/share/doc/apns-proxy/copyright'));
  const broken = path.join(t.context.tmp, 'broken.deb');
  await execa('dpkg-deb', ['--root-owner-group', '-b', x, broken]);
  const bad = await execa('lintian', ['--no-cfg', broken], { reject: false, timeout: 300_000 });
  t.regex(bad.stdout, /^E: apns-proxy: no-copyright-file/m);
});

test.serial('dpkg -i without network: enabled, not started; the installed render and doctor run', async (t) => {
  const { ns, deb } = t.context;
  const r = await dpkg(ns, ['-i', deb]);
  t.is(r.exitCode, 0, r.stderr + r.stdout);
  t.regex(await status(), /^install ok installed /);
  t.regex(r.stdout, /the service is enabled but not started/);
  t.is(lstatSync('/usr/bin/apns-proxy').isSymbolicLink(), true);
  if (existsSync('/usr/bin/deb-systemd-helper')) {
    t.true(present(['/etc/systemd/system/multi-user.target.wants/apns-proxy.service']).length === 1, 'enabled (wants symlink)');
  }
  // the installed unit as systemd reads it (ExecStart's node, the man page of Documentation=)
  const verify = await execa('systemd-analyze', ['verify', '/lib/systemd/system/apns-proxy.service'], { reject: false, timeout: 60_000 });
  t.is(verify.exitCode, 0, verify.stderr);
  t.is(`${verify.stdout}${verify.stderr}`.trim(), '', 'no warnings');
  const render = await inNs(ns, '/usr/bin/apns-proxy', ['render', '--config', CONFIG]);
  t.is(render.exitCode, 0, render.stderr);
  t.regex(render.stdout, /table inet apns_proxy/);
  const doctor = await inNs(ns, 'apns-proxy', ['doctor']);
  t.true(doctor.exitCode === 0 || doctor.exitCode === 1, `doctor ran: exit ${doctor.exitCode} ${doctor.stderr}`);
  t.regex(doctor.stdout, /^ok +config: \/etc\/apns-proxy\/config\.json is valid$/m);
  t.regex(doctor.stdout, /^ok +fallback helper: the native helper .* loads$/m, 'the installed prebuilt addon loads');
  t.regex(doctor.stdout, /^(FAIL|WARN) +upstream dns: /m, 'findings printed (no network in the namespace)');
});

test.serial('upgrade over itself and to a newer version: the edited conffile and the kernel map stay', async (t) => {
  const { ns, deb, tmp } = t.context;
  // the kernel map of a running router: our stamped table in the namespace
  const sync = await inNs(ns, 'sh', ['-c', `apns-proxy render --config ${CONFIG} | ${NFT} -f -`]);
  t.is(sync.exitCode, 0, sync.stderr);
  const tables = async () => (await inNs(ns, NFT, ['list', 'tables'])).stdout;
  t.regex(await tables(), /table inet apns_proxy/);
  const edited = readFileSync(CONFIG, 'utf8').replace('"level": "info"', '"level": "debug"');
  t.not(edited, readFileSync(CONFIG, 'utf8'));
  writeFileSync(CONFIG, edited);

  const again = await dpkg(ns, ['-i', deb]);
  t.is(again.exitCode, 0, again.stderr + again.stdout);
  t.notRegex(again.stdout, /flush|removed table/);
  t.is(readFileSync(CONFIG, 'utf8'), edited, 'reinstall keeps the edit');
  t.regex(await tables(), /table inet apns_proxy/, 'reinstall keeps the kernel map');

  const bumped = await build(path.join(tmp, 'b'), `${PKG.version}-2`);
  const up = await dpkg(ns, ['-i', bumped]);
  t.is(up.exitCode, 0, up.stderr + up.stdout);
  t.is(await status(), `install ok installed ${PKG.version}-2`);
  t.notRegex(up.stdout, /flush|removed table/);
  t.is(readFileSync(CONFIG, 'utf8'), edited, 'upgrade keeps the edit');
  t.deepEqual(readdirSync('/etc/apns-proxy'), ['config.json'], 'no .dpkg-dist / .dpkg-new: nothing to ask');
  t.regex(await tables(), /table inet apns_proxy/, 'upgrade keeps the kernel map');
  t.regex((await inNs(ns, NFT, ['list', 'map', 'inet', 'apns_proxy', 'couriers4'])).stdout, /map couriers4/);
});

test.serial('dpkg -r flushes the kernel map and keeps the config; dpkg -P leaves nothing behind', async (t) => {
  const { ns } = t.context;
  const owned = (await execa('dpkg-query', ['-L', NAME])).stdout.split('\n')
    .filter((p) => p && !p.startsWith('/etc/') && existsSync(p) && !statSync(p).isDirectory());  // (/lib: a symlink to a directory)
  t.true(owned.length > 100, `dpkg -L lists the files (${owned.length})`);
  mkdirSync('/var/lib/apns-proxy', { recursive: true });
  writeFileSync('/var/lib/apns-proxy/state.json', '{}\n');  // as the daemon would have left it

  const rm = await dpkg(ns, ['-r', NAME]);
  t.is(rm.exitCode, 0, rm.stderr + rm.stdout);
  t.regex(rm.stdout, /removed table inet apns_proxy/);
  t.notRegex((await inNs(ns, NFT, ['list', 'tables'])).stdout, /apns_proxy/, 'prerm flushed with the still-installed program');
  t.regex(await status(), /^deinstall ok config-files /);
  t.deepEqual(present(owned), [], 'the program\'s files are gone');
  t.deepEqual(present(['/usr/bin/apns-proxy', '/usr/lib/apns-proxy']), []);
  t.true(existsSync(CONFIG), 'the config is kept');
  t.true(existsSync('/var/lib/apns-proxy/state.json'), 'the state is kept');

  const purge = await dpkg(ns, ['-P', NAME]);
  t.is(purge.exitCode, 0, purge.stderr + purge.stdout);
  t.is(await status(), '', 'dpkg knows nothing of it');
  t.deepEqual(present(LEFTOVERS), [], 'config, state, unit enablement and masks are gone');
  t.is(await scan(), t.context.before, 'the same *apns* paths as before the install');
});
