#!/usr/bin/env node
// `npm run package`: builds pkg/apns-proxy_<version>_<arch>.deb with dpkg-deb. No network: the
// production node_modules come from the local node_modules (npm prune --offline in a staged copy),
// the native addons are prebuilt for this architecture (scripts/build-native.mjs prebuild, i.e.
// prebuildify --napi, with Debian's hardening flags) in a temporary copy of their sources, so the
// checkout's own builds and prebuilds are neither used nor touched.
//
//   node scripts/package.mjs [--no-build] [--version V] [--out DIR]
//
//   --no-build   skip `npm run build` (use dist/ as it is; tests, right after npm test built it)
//   --version V  the Debian version (default: package.json "version" with Debian revision -1; tests
//                build a bumped one)
//   --out DIR    where the .deb goes (default: pkg/)
//
// What goes in is found, not listed: the files `npm pack` would publish (package.json "files"),
// of which dist/ only the modules the bin entry (package.json "bin") imports, directly or not, and
// neither scripts/ nor systemd/ (those are installed at their system paths below). So moving source
// files around needs no change here.
//
//   /usr/lib/apns-proxy/                 the program: dist/…, nft/, the addons' binding sources and
//                                        prebuilds/linux-<arch>/, package.json, production node_modules,
//                                        config.schema.json (config.json's JSON Schema)
//   /usr/bin/apns-proxy                  symlink to the bin entry
//   /lib/systemd/system/apns-proxy.service   systemd/apns-proxy.service with the package's paths
//   /usr/lib/sysctl.d/apns-proxy.conf, /usr/lib/modules-load.d/apns-proxy.conf
//   /etc/apns-proxy/config.json          conffile: "$schema" (the schema above), then every key at its
//                                        default (as scripts/install.sh writes it)
//   /usr/share/doc/apns-proxy/           README.md, copyright (machine-readable), changelog.Debian.gz
//   /usr/share/man/man1/apns-proxy.1.gz  from `apns-proxy --help`
//   /usr/share/lintian/overrides/apns-proxy   packaging/deb/lintian-overrides
//   DEBIAN/                              control, conffiles, md5sums, packaging/deb/{postinst,prerm,postrm}
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync,
  rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NAME = 'apns-proxy';
const LIB = `/usr/lib/${NAME}`;
const DEB_DIR = path.join(ROOT, 'packaging/deb');

const say = (text) => process.stderr.write(`package: ${text}\n`);
function die(text) {
  say(`error: ${text}`);
  process.exit(1);
}

// --- arguments ----------------------------------------------------------------------------------
const args = process.argv.slice(2);
let build = true;
let version;
let out = path.join(ROOT, 'pkg');
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--no-build') build = false;
  else if (a === '--version') version = args[++i];
  else if (a === '--out') out = path.resolve(args[++i] ?? '');
  else die(`unknown argument ${a} (usage: node scripts/package.mjs [--no-build] [--version V] [--out DIR])`);
}

/** Runs a command; its output goes to stderr (stdout of this script stays the .deb path). */
function run(file, argv, opts = {}) {
  const r = spawnSync(file, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'], ...opts, env: { ...process.env, ...opts.env } });
  if (r.error) die(`${file}: ${r.error.message}`);
  if (r.status !== 0) die(`${file} ${argv.join(' ')} failed (exit ${r.status})`);
  return r;
}
const capture = (file, argv, opts = {}) => execFileSync(file, argv, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...opts });

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
// Debian revision -1: the packaging of upstream version pkg.version (a non-native package)
version ??= `${pkg.version}-1`;
if (!/^[0-9][A-Za-z0-9.+~-]*$/.test(version ?? '')) die(`not a Debian version: ${JSON.stringify(version)}`);
const arch = capture('dpkg', ['--print-architecture']).trim();
// the prebuilt addons are for this Node's architecture: it must be the package's
const NODE_ARCH = { amd64: 'x64', arm64: 'arm64', armhf: 'arm', i386: 'ia32', ppc64el: 'ppc64', s390x: 's390x', riscv64: 'riscv64' };
if (NODE_ARCH[arch] !== process.arch) die(`dpkg architecture ${arch} does not match this Node's ${process.arch}`);
const bins = Object.entries(typeof pkg.bin === 'string' ? { [NAME]: pkg.bin } : pkg.bin ?? {});
if (bins.length === 0) die('package.json has no "bin"');

// --- build ----------------------------------------------------------------------------------------
if (build) run('npm', ['run', 'build']);
const work = mkdtempSync(path.join(tmpdir(), 'apns-proxy-deb-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
for (const [, rel] of bins) if (!existsSync(path.join(ROOT, rel))) die(`${rel} is missing: run npm run build`);
if (!existsSync(path.join(ROOT, 'node_modules/.package-lock.json'))) die('node_modules is missing: run npm ci');

// --- what npm would publish (package.json "files") ---------------------------------------------
const packed = JSON.parse(capture('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '--offline']))[0].files.map((f) => f.path);

/** The relative imports of a compiled ES module (static, re-exports, side-effect and literal dynamic). */
function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const specs = [];
  const re = /\b(?:import|export)\s+(?:type\s+)?[\w*{}\s,$]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) specs.push(m[1] ?? m[2] ?? m[3]);
  if (/\bimport\s*\(\s*[^'"\s)]/.test(text)) die(`${path.relative(ROOT, file)} has a computed dynamic import(): cannot tell what it needs`);
  return specs.filter((s) => s.startsWith('.'));
}
const closure = new Set();
const todo = bins.map(([, rel]) => path.join(ROOT, rel));
while (todo.length) {
  const file = todo.pop();
  const rel = path.relative(ROOT, file);
  if (closure.has(rel)) continue;
  if (!existsSync(file)) die(`${rel} is imported but missing`);
  closure.add(rel);
  for (const spec of importsOf(file)) todo.push(path.resolve(path.dirname(file), spec));
}
const top = (p) => p.split('/')[0];
const program = packed.filter((p) => {
  if (top(p) === 'dist') return closure.has(p);  // only what the program loads (no lab, no source maps)
  if (['scripts', 'systemd'].includes(top(p))) return false;  // checkout installs; the unit etc. go to their places
  if (/^(README|LICEN[CS]E|CHANGELOG)/i.test(p)) return false;  // README goes to /usr/share/doc
  return true;
});
for (const rel of closure) if (!packed.includes(rel)) die(`${rel} is imported but package.json "files" does not publish it`);

// the native addons (every published directory with a binding.gyp): their published sources are
// copied to a temporary tree and prebuilt there; the checkout's prebuilds/ are not shipped
const addons = packed.filter((p) => p.endsWith('/binding.gyp')).map((p) => path.dirname(p));
const isPrebuild = (p) => addons.some((d) => p.startsWith(`${d}/prebuilds/`));
const shipped = program.filter((p) => !isPrebuild(p));
const native = path.join(work, 'native');
for (const rel of shipped.filter((p) => addons.some((d) => p.startsWith(`${d}/`)))) {
  mkdirSync(path.dirname(path.join(native, rel)), { recursive: true });
  copyFileSync(path.join(ROOT, rel), path.join(native, rel));
}
const flags = {};  // node-gyp's Makefiles add CFLAGS, CPPFLAGS and LDFLAGS from the environment
for (const f of ['CFLAGS', 'CPPFLAGS', 'LDFLAGS']) {
  flags[f] = capture('dpkg-buildflags', ['--get', f], { env: { ...process.env, DEB_BUILD_MAINT_OPTIONS: 'hardening=+all' } }).trim();
}
run(process.execPath, [path.join(ROOT, 'scripts/build-native.mjs'), 'prebuild', '--root', native], { env: flags });
const prebuilds = [];
for (const dir of addons) {
  const sub = `${dir}/prebuilds/linux-${process.arch}`;
  const found = existsSync(path.join(native, sub)) ? readdirSync(path.join(native, sub)).filter((f) => f.endsWith('.node')) : [];
  if (found.length === 0) die(`no prebuild in ${sub} after scripts/build-native.mjs prebuild`);
  prebuilds.push(...found.map((f) => `${sub}/${f}`));
}

// --- stage --------------------------------------------------------------------------------------------
const stage = path.join(work, 'root');
const lib = path.join(stage, LIB.slice(1));
const put = (rel, mode = 0o644, from = ROOT) => {
  const dest = path.join(lib, rel);
  mkdirSync(path.dirname(dest), { recursive: true });
  copyFileSync(path.join(from, rel), dest);
  chmodSync(dest, mode);
};
for (const rel of shipped) put(rel);
for (const rel of prebuilds) put(rel, 0o644, native);
for (const [, rel] of bins) chmodSync(path.join(lib, rel), 0o755);

// production dependencies: a copy of the local node_modules, pruned offline without install scripts
cpSync(path.join(ROOT, 'node_modules'), path.join(lib, 'node_modules'), { recursive: true, verbatimSymlinks: true });
copyFileSync(path.join(ROOT, 'package-lock.json'), path.join(lib, 'package-lock.json'));
run('npm', ['prune', '--omit=dev', '--ignore-scripts', '--offline', '--no-audit', '--no-fund'], { cwd: lib, stdio: ['ignore', 'ignore', 'inherit'] });
rmSync(path.join(lib, 'package-lock.json'));
rmSync(path.join(lib, 'node_modules/.bin'), { recursive: true, force: true });  // nothing runs them
const prodDeps = capture('npm', ['ls', '--omit=dev', '--all', '--parseable', '--offline'], { cwd: lib }).trim().split('\n').slice(1)
  .map((d) => path.relative(lib, d));
for (const d of prodDeps) if (!existsSync(path.join(lib, d, 'package.json'))) die(`production dependency ${d} missing after prune`);

/** Every file and directory under dir (relative), depth first. */
function walk(dir, rel = '') {
  const out = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    out.push(r);
    if (e.isDirectory()) out.push(...walk(dir, r));
  }
  return out;
}
// node_modules: no dotfiles or editor backups lintian would flag, nothing writable but by root,
// scripts with a #! line executable (they are not run, but lintian checks), nothing else executable
for (const rel of walk(path.join(lib, 'node_modules'))) {
  const p = path.join(lib, 'node_modules', rel);
  const st = lstatSync(p);
  if (st.isSymbolicLink()) continue;
  const base = path.basename(p);
  // the modules' own README, CHANGELOG and History files (their licenses stay)
  if (st.isFile() && /^(readme|changelog|history)(\.(md|markdown|txt))?$/i.test(base)) { rmSync(p); continue; }
  if (st.isFile() && ['.npmignore', '.eslintrc', '.travis.yml', '.editorconfig', '.jshintrc', '.gitattributes', '.nycrc'].includes(base)) { rmSync(p); continue; }
  if (st.isDirectory()) { chmodSync(p, 0o755); continue; }
  const head = readFileSync(p).subarray(0, 2).toString();
  chmodSync(p, head === '#!' ? 0o755 : 0o644);
}
// empty directories left by the prune
for (const rel of walk(path.join(lib, 'node_modules')).reverse()) {
  const p = path.join(lib, 'node_modules', rel);
  if (lstatSync(p).isDirectory() && readdirSync(p).length === 0) rmSync(p, { recursive: true });
}
// the addons: stripped of debugging symbols
const elfs = walk(lib).filter((r) => r.endsWith('.node')).map((r) => path.join(lib, r));
for (const f of elfs) run('strip', ['--strip-unneeded', '--remove-section=.comment', '--remove-section=.note', f]);

// /usr/bin
mkdirSync(path.join(stage, 'usr/bin'), { recursive: true });
for (const [name, rel] of bins) symlinkSync(`../lib/${NAME}/${rel}`, path.join(stage, 'usr/bin', name));

// systemd unit, sysctl.d, modules-load.d
const mainBin = bins.find(([n]) => n === NAME)?.[1] ?? bins[0][1];
const unitSrc = readFileSync(path.join(ROOT, 'systemd/apns-proxy.service'), 'utf8');
if (!/^ExecStart=\/usr\/bin\/node \/opt\/apns-proxy\//m.test(unitSrc)) die('systemd/apns-proxy.service: ExecStart is not "/usr/bin/node /opt/apns-proxy/…"');
const unit = unitSrc
  .replace(/^(# scripts\/install\.sh installs this file)/m, `# The Debian package installs this file as /lib/systemd/system/apns-proxy.service, with the program\n# in ${LIB}; its prerm runs \`apns-proxy flush\` on dpkg -r (not on upgrade).\n$1`)
  .replace(/^ExecStart=\/usr\/bin\/node \/opt\/apns-proxy\/\S+/m, `ExecStart=/usr/bin/node ${LIB}/${mainBin}`)
  .replace(/^Documentation=file:\/\/\/opt\/apns-proxy\/README\.md$/m, `Documentation=file:///usr/share/doc/${NAME}/README.md`)
  .replace(/^Documentation=.*$/m, (l) => `${l}\nDocumentation=man:${NAME}(1)`);
if (unit.includes('/opt/apns-proxy/')) die('the unit still names /opt/apns-proxy outside comments');
const file = (rel, text, mode = 0o644) => {
  const dest = path.join(stage, rel);
  mkdirSync(path.dirname(dest), { recursive: true });
  writeFileSync(dest, text);
  chmodSync(dest, mode);
};
file(`lib/systemd/system/${NAME}.service`, unit);
file(`usr/lib/sysctl.d/${NAME}.conf`, readFileSync(path.join(ROOT, 'systemd/sysctl.d/apns-proxy.conf')));
file(`usr/lib/modules-load.d/${NAME}.conf`, readFileSync(path.join(ROOT, 'systemd/modules-load.d/apns-proxy.conf')));

// the default configuration: written by the staged program itself (the module that exports
// defaultConfigText), "$schema" naming the JSON Schema the package ships (package.json "files")
const configModules = [...closure].filter((r) => /^export function defaultConfigText\b/m.test(readFileSync(path.join(ROOT, r), 'utf8')));
if (configModules.length !== 1) die(`expected one module exporting defaultConfigText, found ${configModules.length}`);
const SCHEMA = `${LIB}/config.schema.json`;
if (!existsSync(path.join(stage, SCHEMA))) die(`${SCHEMA} is not in the package: package.json "files" must list config.schema.json`);
const defaults = capture(process.execPath, ['--input-type=module', '-e',
  `const { defaultConfigText } = await import(${JSON.stringify(path.join(lib, configModules[0]))});
   process.stdout.write(defaultConfigText(${JSON.stringify(`file://${SCHEMA}`)}));`]);
file(`etc/${NAME}/config.json`, defaults);
// the staged program runs: it validates its own defaults and loads its addons
const check = spawnSync(process.execPath, [path.join(lib, mainBin), 'render', '--config', path.join(stage, `etc/${NAME}/config.json`)], { encoding: 'utf8' });
if (check.status !== 0) die(`the staged program does not render its default config: ${check.stderr}`);
const addonCheck = spawnSync(process.execPath, ['-e', `const b = require(${JSON.stringify(path.join(lib, 'node_modules/node-gyp-build'))});
  for (const d of ${JSON.stringify(addons.map((d) => path.join(lib, d)))}) b(d);`], { encoding: 'utf8' });
if (addonCheck.status !== 0) die(`the staged addons do not load: ${addonCheck.stderr}`);

// --- documentation ------------------------------------------------------------------------------
const doc = `usr/share/doc/${NAME}`;
file(`${doc}/README.md`, readFileSync(path.join(ROOT, 'README.md')));
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? (spawnSync('git', ['log', '-1', '--format=%ct'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || Math.floor(Date.now() / 1000)));
const when = new Date(epoch * 1000);
const maintainer = process.env.DEB_MAINTAINER
  ?? (typeof pkg.author === 'string' ? pkg.author : pkg.author?.email ? `${pkg.author.name} <${pkg.author.email}>` : undefined)
  ?? (spawnSync('git', ['log', '-1', '--format=%an <%ae>'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || 'apns-proxy maintainers <apns-proxy@users.noreply.github.com>');
const rfc2822 = when.toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, (_, d, n, m, y, t) => `${d}, ${n.padStart(2, '0')} ${m} ${y} ${t} +0000`);
file(`${doc}/changelog.Debian.gz`, gzipSync(
  `${NAME} (${version}) unstable; urgency=medium\n\n  * apns-proxy ${pkg.version}, packaged from the upstream tree by\n    npm run package.\n\n -- ${maintainer}  ${rfc2822}\n`,
  { level: 9 }));

// copyright: the program, then each bundled module under its own license
const LICENSE_TEXT = {
  MIT: ` Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
 associated documentation files (the "Software"), to deal in the Software without restriction,
 including without limitation the rights to use, copy, modify, merge, publish, distribute,
 sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
 NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
 NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
 OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
 CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`,
  ISC: ` Permission to use, copy, modify, and/or distribute this software for any purpose with or without
 fee is hereby granted, provided that the above copyright notice and this permission notice appear
 in all copies.
 .
 THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS
 SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE
 AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE
 OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS
 SOFTWARE.`,
  'Apache-2.0': ' On Debian systems, the full text of the Apache License, Version 2.0 is in\n /usr/share/common-licenses/Apache-2.0.',
};
const used = new Set([pkg.license]);
const stanzas = [];
for (const d of prodDeps.sort()) {
  const m = JSON.parse(readFileSync(path.join(lib, d, 'package.json'), 'utf8'));
  const license = m.license ?? m.licenses?.map?.((l) => l.type).join(' or ');
  for (const l of String(license).replace(/[()]/g, '').split(/ OR | or /)) {
    if (!LICENSE_TEXT[l.trim()]) die(`${m.name}: license ${license} has no text in scripts/package.mjs (add it to LICENSE_TEXT)`);
    used.add(l.trim());
  }
  const licFile = readdirSync(path.join(lib, d)).find((f) => /^licen[cs]e/i.test(f));
  const holders = licFile
    ? readFileSync(path.join(lib, d, licFile), 'utf8').split('\n').map((l) => l.trim()).filter((l) => /^copyright\b.*\d{4}/i.test(l)).map((l) => l.replace(/^copyright\s*(\(c\)|©)?\s*/i, ''))
    : [];
  const author = typeof m.author === 'string' ? m.author : m.author?.name;
  const copyright = holders.length ? holders : [author ? `${author} and the ${m.name} contributors` : `the ${m.name} contributors`];
  stanzas.push(`Files: usr/lib/${NAME}/${d}/*\nCopyright: ${copyright.join('\n ')}\nLicense: ${String(license).replace(/[()]/g, '')}\n`);
}
if (!LICENSE_TEXT[pkg.license]) die(`package.json license ${pkg.license} has no text in scripts/package.mjs`);
file(`${doc}/copyright`, [
  `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: ${NAME}\nComment: The program (usr/lib/${NAME}) bundles its production npm dependencies in\n usr/lib/${NAME}/node_modules; each is listed below with its license.\n`,
  `Files: *\nCopyright: ${when.getUTCFullYear()} the ${NAME} authors\nLicense: ${pkg.license}\n`,
  ...stanzas,
  ...[...used].sort().map((l) => `License: ${l}\n${LICENSE_TEXT[l]}\n`),
].join('\n'));

// man page, from the program's own usage text
const usage = capture(process.execPath, [path.join(lib, mainBin), '--help']);
const roff = (s) => s.replace(/\\/g, '\\e').replace(/^([.'])/gm, '\\&$1').replace(/-/g, '\\-');
const man = `.TH APNS\\-PROXY 1 "${when.toISOString().slice(0, 10)}" "${NAME} ${version}" "User Commands"
.SH NAME
apns\\-proxy \\- APNs courier DNS and nftables DNAT map for routers
.SH SYNOPSIS
.B apns\\-proxy
.I command
.RB [ \\-\\-config
.IR PATH ]
.SH DESCRIPTION
${roff(pkg.description)}
.PP
.nf
${roff(usage.trimEnd())}
.fi
.SH FILES
.TP
.I /etc/apns\\-proxy/config.json
the configuration (every key at its default after installation)
.TP
.I /var/lib/apns\\-proxy
the state (last\\-known\\-good mapping, control socket)
.SH SEE ALSO
.BR nft (8),
/usr/share/doc/apns\\-proxy/README.md
`;
file(`usr/share/man/man1/${NAME}.1.gz`, gzipSync(man, { level: 9 }));
file(`usr/share/lintian/overrides/${NAME}`, readFileSync(path.join(DEB_DIR, 'lintian-overrides')));

// --- DEBIAN/ ----------------------------------------------------------------------------------------
const debian = path.join(stage, 'DEBIAN');
mkdirSync(debian, { recursive: true });
for (const s of ['postinst', 'prerm', 'postrm']) {
  copyFileSync(path.join(DEB_DIR, s), path.join(debian, s));
  chmodSync(path.join(debian, s), 0o755);
}
writeFileSync(path.join(debian, 'conffiles'), `/etc/${NAME}/config.json\n`);

// shared-library dependencies of the addons (libc), as dpkg-shlibdeps computes them
const shlib = path.join(work, 'shlibdeps');
mkdirSync(path.join(shlib, 'debian'), { recursive: true });
writeFileSync(path.join(shlib, 'debian/control'), `Source: ${NAME}\n\nPackage: ${NAME}\nArchitecture: any\n`);
const shlibs = capture('dpkg-shlibdeps', ['-O', '--warnings=0', ...elfs.map((f) => `-e${f}`)], { cwd: shlib })
  .trim().replace(/^shlibs:Depends=/, '').split(/,\s*/).filter(Boolean);

// files and sizes
const all = walk(stage).filter((r) => !r.startsWith('DEBIAN'));
let kib = 0;
const sums = [];
for (const rel of all.sort()) {
  const p = path.join(stage, rel);
  const st = lstatSync(p);
  kib += st.isFile() ? Math.ceil(st.size / 1024) : 1;
  if (st.isFile() && !rel.startsWith('etc/')) sums.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${rel}\n`);
}
writeFileSync(path.join(debian, 'md5sums'), sums.join(''));
const description = pkg.description.replace(/\s+/g, ' ').trim();
const wrap = (text) => text.match(/.{1,76}(\s|$)/g).map((l) => ` ${l.trim()}`).join('\n');
writeFileSync(path.join(debian, 'control'), [
  `Package: ${NAME}`,
  `Version: ${version}`,
  `Architecture: ${arch}`,
  `Maintainer: ${maintainer}`,
  `Installed-Size: ${kib}`,
  `Depends: ${['nodejs (>= 20)', 'nftables', 'iproute2', ...shlibs].join(', ')}`,
  `Recommends: procps, kmod`,
  `Section: net`,
  `Priority: optional`,
  `Description: APNs courier DNS and nftables DNAT map for Linux routers`,
  wrap(description),
  ' .',
  wrap('The package enables the apns-proxy service but does not start it on first installation: review /etc/apns-proxy/config.json and run apns-proxy doctor, then systemctl start apns-proxy.'),
  '',
].join('\n'));

// --- build ------------------------------------------------------------------------------------------
for (const rel of walk(stage)) {
  const p = path.join(stage, rel);
  if (lstatSync(p).isDirectory()) chmodSync(p, 0o755);
}
mkdirSync(out, { recursive: true });
const deb = path.join(out, `${NAME}_${version}_${arch}.deb`);
rmSync(deb, { force: true });
run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { stdio: ['ignore', 'ignore', 'inherit'], env: { SOURCE_DATE_EPOCH: String(epoch) } });
say(`built ${path.relative(process.cwd(), deb) || deb} (${Math.round(statSync(deb).size / 1024)} KiB; ${shipped.length} program files, ${prodDeps.length} npm modules)`);
process.stdout.write(`${deb}\n`);
