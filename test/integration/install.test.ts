// The appliance: the systemd unit and scripts/install.sh / uninstall.sh, for the parts that
// need no running systemd. The unit is checked by systemd-analyze, and its privileges for real: the
// daemon runs in a lab router namespace as a uid without a passwd entry (like DynamicUser=) holding
// only the unit's capabilities. The scripts install into a temp root (--root), twice; uninstall's
// flush runs inside the lab's router namespace. Needs root; fails (never skips) without.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { execa } from 'execa';
import { DEFAULTS, defaultConfigText, parseConfig, parseConfigText } from '../../src/core/config.js';
import { type Lab, createLab, distPath, nodeBin, repoRoot } from '../../lab/lab.js';
import { listTree, missingImports } from '../helpers/imports.js';

const test = anyTest as TestFn<{ lab: Lab; tmp: string }>;
const REPO = repoRoot();
const UNIT = path.join(REPO, 'systemd/apns-proxy.service');
const INSTALL = path.join(REPO, 'scripts/install.sh');
const UNINSTALL = path.join(REPO, 'scripts/uninstall.sh');
const NOBODY_UID = 61234;  // no passwd entry, like a DynamicUser= uid

test.before(async (t) => {
  const lab = await createLab({ scenario: { live: 50, perCourier: { '7': 'silent' } } });
  const tmp = mkdtempSync(path.join(tmpdir(), 'apns-proxy-install-'));
  t.context = { lab, tmp };
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
  if (t.context.tmp) rmSync(t.context.tmp, { recursive: true, force: true });
});

/** The unit's directives, `[Section] Key` → values in order (comments and blank lines skipped). */
function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) { section = sec[1]!; continue; }
    const eq = line.indexOf('=');
    const key = `[${section}] ${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

const one = (d: Map<string, string[]>, key: string): string | undefined => d.get(`[Service] ${key}`)?.at(-1);

async function verify(unitText: string, name = 'apns-proxy.service'): Promise<{ exitCode: number; output: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'apns-proxy-unit-'));
  try {
    writeFileSync(path.join(dir, name), unitText);
    const r = await execa('systemd-analyze', ['verify', path.join(dir, name)], { reject: false, timeout: 60_000 });
    return { exitCode: r.exitCode ?? -1, output: `${r.stdout}${r.stderr}`.trim() };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The repository unit with its node path pointing at this machine's node (CI may keep it elsewhere). */
const unitForThisMachine = (): string => readFileSync(UNIT, 'utf8').replace('ExecStart=/usr/bin/node ', `ExecStart=${nodeBin()} `);

test.serial('systemd-analyze verify accepts the unit without a single warning (and does flag a broken copy)', async (t) => {
  const good = await verify(unitForThisMachine());
  t.is(good.exitCode, 0, good.output);
  t.is(good.output, '', 'no warnings at all');
  // the check is real: systemd-analyze exits 0 on bad values too, but prints them
  const broken = await verify(unitForThisMachine().replace('ProtectSystem=strict', 'ProtectSystem=bogus').replace('Restart=on-failure', 'Restart=on-failure\nNoSuchKey=1'));
  t.regex(broken.output, /ProtectSystem|bogus/);
  t.regex(broken.output, /NoSuchKey/);
});

test.serial('the unit: capabilities only, each hardening line commented, the directives the issue asks for', (t) => {
  const text = readFileSync(UNIT, 'utf8');
  const d = directives(text);
  t.is(one(d, 'AmbientCapabilities'), 'CAP_NET_ADMIN CAP_NET_BIND_SERVICE');
  t.is(one(d, 'CapabilityBoundingSet'), 'CAP_NET_ADMIN CAP_NET_BIND_SERVICE');
  t.false(/CAP_NET_RAW|CAP_SYS_ADMIN/.test([...d.values()].flat().join(' ')), 'no CAP_NET_RAW, no CAP_SYS_ADMIN');
  t.is(d.get('[Service] User'), undefined, 'no fixed user: DynamicUser');
  t.is(one(d, 'DynamicUser'), 'yes');
  t.is(one(d, 'NoNewPrivileges'), 'yes');
  t.is(one(d, 'ProtectSystem'), 'strict');
  t.is(one(d, 'StateDirectory'), 'apns-proxy');
  t.is(one(d, 'ConfigurationDirectory'), 'apns-proxy');
  t.is(one(d, 'RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6 AF_NETLINK');
  t.is(one(d, 'Restart'), 'on-failure');
  t.is(one(d, 'ExecReload'), 'kill -HUP $MAINPID');
  t.regex(one(d, 'ExecStart') ?? '', /^\/usr\/bin\/node \/opt\/apns-proxy\/dist\/src\/cli\.js run --config \/etc\/apns-proxy\/config\.json$/);
  t.is(d.get('[Service] MemoryDenyWriteExecute'), undefined, 'V8 needs W+X memory');
  t.is(d.get('[Service] KillSignal'), undefined, 'SIGTERM: the daemon leaves the kernel map in place');
  t.true(Number(one(d, 'LimitNOFILE')) >= 2 * DEFAULTS.fallback.maxConnections + 4096, 'two fds per fallback connection, plus headroom');
  // the state directory is the config's default stateDir
  t.is(`/var/lib/${one(d, 'StateDirectory')}`, DEFAULTS.stateDir);

  // every directive from the identity block on is under a comment (a group may share one)
  const lines = text.split('\n');
  const from = lines.findIndex((l) => l.startsWith('DynamicUser='));
  const to = lines.findIndex((l) => l.startsWith('[Install]'));
  t.true(from > 0 && to > from);
  for (let i = from; i < to; i++) {
    if (!/^\w+=/.test(lines[i]!)) continue;
    let j = i - 1;
    while (/^\w+=/.test(lines[j]!)) j--;
    t.true(lines[j]!.startsWith('#'), `line ${i + 1} (${lines[i]}) has a comment above it`);
  }

  const sysctl = readFileSync(path.join(REPO, 'systemd/sysctl.d/apns-proxy.conf'), 'utf8');
  t.regex(sysctl, /^net\.ipv4\.ip_forward = 1$/m);
  t.true(Number(/^net\.netfilter\.nf_conntrack_max = (\d+)$/m.exec(sysctl)?.[1]) >= 131072);
  const modules = readFileSync(path.join(REPO, 'systemd/modules-load.d/apns-proxy.conf'), 'utf8').split('\n').filter((l) => /^\w/.test(l));
  for (const m of ['nf_tables', 'nf_conntrack', 'nft_numgen', 'nft_tproxy', 'nft_socket']) t.true(modules.includes(m), m);
});

/** Runs the daemon in the router namespace as NOBODY_UID holding exactly `caps`. */
async function runConfined(lab: Lab, caps: string[], name: string) {
  chmodSync(lab.dir, 0o755);
  const state = path.join(lab.dir, `state-${name}`);
  mkdirSync(state, { recursive: true });
  chownSync(state, NOBODY_UID, NOBODY_UID);
  const config = path.join(lab.dir, `confined-${name}.json`);
  writeFileSync(config, JSON.stringify({
    vipPrefix: '198.18.100.0/24', couriers: { first: 1, last: 60 }, upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'], resolver: { timeoutMs: 300 },
    dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24'] },
    refresh: { schedule: '0 0 1 1 *' }, fallback: { enabled: true }, stateDir: state, log: { level: 'debug' },
  }));
  chmodSync(config, 0o644);
  const set = caps.map((c) => `,+${c.replace(/^CAP_/, '').toLowerCase()}`).join('');
  return lab.spawn(lab.ns.router, 'setpriv', [
    `--reuid=${NOBODY_UID}`, `--regid=${NOBODY_UID}`, '--clear-groups', '--no-new-privs',
    `--inh-caps=-all${set}`, `--ambient-caps=-all${set}`, `--bounding-set=-all${set}`,
    nodeBin(), distPath('src/cli.js'), 'run', '--config', config,
  ]);
}

test.serial('the unit\'s capabilities are enough: the daemon runs as a nameless uid with only them (and not without CAP_NET_ADMIN)', async (t) => {
  const { lab } = t.context;
  const caps = one(directives(readFileSync(UNIT, 'utf8')), 'AmbientCapabilities')!.split(/\s+/);
  await lab.setScenario({ live: 50, perCourier: { '7': 'silent' } });
  const daemon = await runConfined(lab, caps, 'unit');
  try {
    await daemon.waitForLine(/refresh: 49 fresh, 0 stale, 11 absent/, 15_000);
    // `ip netns exec` and setpriv exec into node: the spawned pid is the daemon's
    const status = readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
    t.regex(status, new RegExp(`^Uid:\\s+${NOBODY_UID}\\s`, 'm'));
    t.regex(status, /^CapEff:\s+0000000000001400$/m, 'exactly CAP_NET_ADMIN (12) and CAP_NET_BIND_SERVICE (10)');
    // DNS on port 53, the kernel path, and the fallback's transparent socket + policy routing
    const dig = await lab.exec(lab.ns.client, 'dig', ['+short', '+time=2', '+tries=1', '@192.0.2.1', '5-courier.push.apple.com']);
    t.is(dig.stdout.trim(), '198.18.100.5');
    const kernel = await lab.probe(['connect', '198.18.100.5', '5223']);
    t.is(kernel.hellos.length, 1, JSON.stringify(kernel));
    await lab.setScenario({ live: 50 });
    const fallback = await lab.probe(['connect', '198.18.100.7', '5223']);
    t.is(fallback.hellos.length, 1, JSON.stringify(fallback));
    await daemon.waitForLine(/fallback #\d+: courier 7 \S+ → \S+ \(resolved\)/, 5000);
  } finally {
    daemon.kill('SIGTERM');
    await daemon.exited;
  }
  await lab.exec(lab.ns.router, nodeBin(), [distPath('src/cli.js'), 'flush', '--config', path.join(lab.dir, 'confined-unit.json')]);

  const without = await runConfined(lab, caps.filter((c) => c !== 'CAP_NET_ADMIN'), 'no-admin');
  t.not(await without.exited, 0);
  t.regex(without.stderr(), /Operation not permitted/);
});

/** Every file under dir with its size and mode (the idempotency check compares two of these). */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = lstatSync(p);
      out.push(`${path.relative(dir, p)} ${e.isSymbolicLink() ? `-> ${readlinkSync(p)}` : e.isDirectory() ? 'dir' : `${st.size} ${(st.mode & 0o777).toString(8)}`}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

async function sh(script: string, args: string[], env: Record<string, string> = {}, ns = '') {
  const argv = ns ? ['ip', ['netns', 'exec', ns, 'bash', script, ...args]] as const : ['bash', [script, ...args]] as const;
  return execa(argv[0], [...argv[1]], { reject: false, timeout: 120_000, env: { ...process.env, ...env } });
}

test.serial('install into a temp root twice: same tree, the config written once and never overwritten', async (t) => {
  const root = path.join(t.context.tmp, 'root1');
  const first = await sh(INSTALL, ['--root', root]);
  t.is(first.exitCode, 0, first.stderr + first.stdout);
  t.regex(first.stdout, /wrote \/etc\/apns-proxy\/config\.json/);
  t.regex(first.stdout, /the running system \(kernel settings, systemd\) was not touched/);

  // the program, the command, the config, the unit
  const prefix = path.join(root, 'opt/apns-proxy');
  t.true(existsSync(path.join(prefix, 'dist/src/cli.js')));
  // each addon beside its feature: the prebuild (npm run build:native) or the local build (npm ci compiled it)
  const addon = (dir: string, target: string) => [`${dir}/prebuilds/linux-${process.arch}/${target}.glibc.node`, `${dir}/build/Release/${target}.node`]
    .filter((f) => existsSync(path.join(prefix, f)));
  t.is(addon('src/fallback/relay', 'apns_proxy_relay').length, 1, 'the relay addon');
  t.is(addon('src/dns/fastpath', 'apns_proxy_fastpath').length, 1, 'the fastpath addon');
  t.false(existsSync(path.join(prefix, 'build')), 'no top-level build/: the addons are beside their features');
  t.true(existsSync(path.join(prefix, 'nft/apns-proxy.nft')));
  t.false(existsSync(path.join(prefix, 'dist/test')), 'no tests installed');
  t.false(existsSync(path.join(prefix, 'dist/lab')) || existsSync(path.join(prefix, 'scripts/lab.sh')), 'no lab installed');
  const installed = listTree(prefix, ['node_modules']);
  t.true(installed.includes('dist/src/cli.js'));
  const missing = missingImports(installed, (f) => readFileSync(path.join(prefix, f), 'utf8'));
  t.deepEqual(missing, [], `the installed tree imports files it does not have:\n${missing.map((m) => `${m.from}: ${m.specifier}`).join('\n')}`);
  t.false(existsSync(path.join(prefix, 'node_modules/ava')), 'no dev dependencies');
  t.false(existsSync(path.join(prefix, 'node_modules/typescript')), 'no dev dependencies');
  t.is(readlinkSync(path.join(root, 'usr/local/bin/apns-proxy')), '/opt/apns-proxy/dist/src/cli.js');
  const configText = readFileSync(path.join(root, 'etc/apns-proxy/config.json'), 'utf8');
  t.deepEqual(parseConfigText(configText, 'config.json'), parseConfig({}), 'the defaults, valid');
  const { $schema, ...written } = JSON.parse(configText) as Record<string, unknown>;
  t.deepEqual(written, JSON.parse(JSON.stringify(DEFAULTS)), 'every key spelled out');
  t.true(configText.startsWith('{\n  "$schema": '), '"$schema" is the first key');
  t.is($schema, 'file:///opt/apns-proxy/config.schema.json');
  t.is(configText, defaultConfigText('file:///opt/apns-proxy/config.schema.json'));
  // the schema it names is installed there, the one the repository publishes
  t.is(readFileSync(path.join(prefix, 'config.schema.json'), 'utf8'), readFileSync(path.join(REPO, 'config.schema.json'), 'utf8'));
  t.is((statSync(path.join(prefix, 'config.schema.json')).mode & 0o777).toString(8), '644');
  t.regex(readFileSync(path.join(root, 'etc/apns-proxy/README.md'), 'utf8'), /\/opt\/apns-proxy\/config\.schema\.json, which config\.json names in "\$schema"/);
  t.regex(readFileSync(path.join(root, 'etc/apns-proxy/README.md'), 'utf8'), /dns\.listen/);
  const unit = readFileSync(path.join(root, 'etc/systemd/system/apns-proxy.service'), 'utf8');
  t.regex(unit, new RegExp(`^ExecStart=${nodeBin().replace(/[.]/g, '\\.')} /opt/apns-proxy/dist/src/cli\\.js run --config /etc/apns-proxy/config\\.json$`, 'm'));
  const v = await verify(unit);
  t.is(v.output, '', 'the installed unit verifies too');
  t.is(readFileSync(path.join(root, 'etc/sysctl.d/apns-proxy.conf'), 'utf8'), readFileSync(path.join(REPO, 'systemd/sysctl.d/apns-proxy.conf'), 'utf8'));
  t.true(existsSync(path.join(root, 'etc/modules-load.d/apns-proxy.conf')));
  // the installed tree runs on its own (production dependencies, template, addon path)
  const render = await execa(nodeBin(), [path.join(prefix, 'dist/src/cli.js'), 'render', '--config', path.join(root, 'etc/apns-proxy/config.json')], { reject: false });
  t.is(render.exitCode, 0, render.stderr);
  t.regex(render.stdout, /table inet apns_proxy \{/);
  const relay = await execa(nodeBin(), ['--input-type=module', '-e', `const m = await import('${path.join(prefix, 'dist/src/fallback/relay/index.js')}'); m.loadRelayAddon(); console.log('ok')`], { reject: false });
  t.is(relay.stdout.trim(), 'ok', relay.stderr);
  const fastpath = await execa(nodeBin(), ['--input-type=module', '-e', `const m = await import('${path.join(prefix, 'dist/src/dns/fastpath/index.js')}'); m.loadFastPath(); console.log('ok')`], { reject: false });
  t.is(fastpath.stdout.trim(), 'ok', fastpath.stderr);

  // the operator edits the config; a second run changes nothing else and keeps it
  const before = tree(root);
  const edited = JSON.stringify({ vipPrefix: '10.99.99.0/24', log: { level: 'debug' } }, null, 2);
  writeFileSync(path.join(root, 'etc/apns-proxy/config.json'), edited);
  const second = await sh(INSTALL, ['--root', root]);
  t.is(second.exitCode, 0, second.stderr + second.stdout);
  t.regex(second.stdout, /updated \/opt\/apns-proxy/);
  t.regex(second.stdout, /kept the existing \/etc\/apns-proxy\/config\.json/);
  t.is(readFileSync(path.join(root, 'etc/apns-proxy/config.json'), 'utf8'), edited);
  const after = tree(root).filter((l) => !l.startsWith('etc/apns-proxy/config.json '));
  t.deepEqual(after, before.filter((l) => !l.startsWith('etc/apns-proxy/config.json ')));
  t.deepEqual(readdirSync(path.join(root, 'opt')), ['apns-proxy'], 'no staging leftovers');
});

test.serial('install: other prefix and bindir are written into the unit and the link', async (t) => {
  const root = path.join(t.context.tmp, 'root2');
  const r = await sh(INSTALL, ['--root', root, '--prefix', '/srv/apx', '--bindir', '/usr/sbin']);
  t.is(r.exitCode, 0, r.stderr + r.stdout);
  t.is(readlinkSync(path.join(root, 'usr/sbin/apns-proxy')), '/srv/apx/dist/src/cli.js');
  const unit = readFileSync(path.join(root, 'etc/systemd/system/apns-proxy.service'), 'utf8');
  t.regex(unit, /^ExecStart=\S+ \/srv\/apx\/dist\/src\/cli\.js run /m);
  t.false(unit.includes('/opt/apns-proxy'));
  t.is((JSON.parse(readFileSync(path.join(root, 'etc/apns-proxy/config.json'), 'utf8')) as { $schema: string }).$schema, 'file:///srv/apx/config.schema.json');
  t.true(existsSync(path.join(root, 'srv/apx/config.schema.json')));
  const u = await sh(UNINSTALL, ['--root', root, '--prefix', '/srv/apx', '--bindir', '/usr/sbin', '--purge']);
  t.is(u.exitCode, 0, u.stderr);
  t.false(existsSync(path.join(root, 'srv/apx')));
  t.false(existsSync(path.join(root, 'usr/sbin/apns-proxy')));
});

test.serial('install names every missing requirement and writes nothing', async (t) => {
  const bin = path.join(t.context.tmp, 'oldnode');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, 'node'), '#!/bin/sh\necho 18.19.0\n', { mode: 0o755 });
  const root = path.join(t.context.tmp, 'root3');
  const r = await sh(INSTALL, ['--root', root], { APNS_PROXY_TOOL_PATH: bin });
  t.is(r.exitCode, 1);
  t.regex(r.stderr, /missing Node\.js >= 20 \(.*oldnode\/node is 18\.19\.0\)/);
  t.regex(r.stderr, /missing nftables \(no nft found; apt-get install nftables\)/);
  t.regex(r.stderr, /missing iproute2 \(no ip found; apt-get install iproute2\)/);
  t.false(existsSync(root));
});

test.serial('uninstall flushes the table and policy routing, keeps the config; --purge removes it; again is fine', async (t) => {
  const { lab } = t.context;
  const root = path.join(t.context.tmp, 'root4');
  t.is((await sh(INSTALL, ['--root', root])).exitCode, 0);
  const cli = path.join(root, 'opt/apns-proxy/dist/src/cli.js');
  const config = path.join(root, 'etc/apns-proxy/config.json');
  writeFileSync(config, JSON.stringify({
    vipPrefix: '198.18.100.0/24', couriers: { first: 1, last: 60 }, upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'], resolver: { timeoutMs: 300 }, dns: { listen: [] },
    stateDir: path.join(root, 'var/lib/apns-proxy'),
  }));
  await lab.setScenario({ live: 50 });
  // the installed program programs the router namespace's kernel
  const refresh = await lab.exec(lab.ns.router, nodeBin(), [cli, 'refresh', '--config', config], { reject: false });
  t.is(refresh.exitCode, 0, refresh.stderr);
  t.regex((await lab.exec(lab.ns.router, 'nft', ['list', 'tables'])).stdout, /inet apns_proxy/);
  t.regex((await lab.exec(lab.ns.router, 'ip', ['-4', 'rule', 'show'])).stdout, /fwmark 0x2a lookup 42/);

  const u = await sh(UNINSTALL, ['--root', root, '--flush'], {}, lab.ns.router);
  t.is(u.exitCode, 0, u.stderr + u.stdout);
  t.regex(u.stdout, /removed table inet apns_proxy and the fallback's policy routing/);
  t.regex(u.stdout, /kept \/etc\/apns-proxy \(config\)/);
  t.notRegex((await lab.exec(lab.ns.router, 'nft', ['list', 'tables'])).stdout, /apns_proxy/);
  t.notRegex((await lab.exec(lab.ns.router, 'ip', ['-4', 'rule', 'show'])).stdout, /fwmark 0x2a/);
  t.false(existsSync(path.join(root, 'opt/apns-proxy')));
  t.false(existsSync(path.join(root, 'usr/local/bin/apns-proxy')));
  t.false(existsSync(path.join(root, 'etc/systemd/system/apns-proxy.service')));
  t.false(existsSync(path.join(root, 'etc/sysctl.d/apns-proxy.conf')));
  t.false(existsSync(path.join(root, 'etc/modules-load.d/apns-proxy.conf')));
  t.true(existsSync(config), 'the config is kept');
  t.true(statSync(path.join(root, 'var/lib/apns-proxy')).isDirectory(), 'the state is kept');

  const purge = await sh(UNINSTALL, ['--root', root, '--purge']);
  t.is(purge.exitCode, 0, purge.stderr);
  t.false(existsSync(path.join(root, 'etc/apns-proxy')));
  t.false(existsSync(path.join(root, 'var/lib/apns-proxy')));
  const again = await sh(UNINSTALL, ['--root', root, '--purge', '--flush'], {}, lab.ns.router);
  t.is(again.exitCode, 0, again.stderr);
  t.regex(again.stdout, /nothing to flush/);
});

test.serial('install --ha --router: notify script, sysctls, example pair.json, rendered keepalived and conntrackd (a foreign file kept)', async (t) => {
  const { EXAMPLE_PAIR, DEFAULT_PATHS, renderConntrackd, renderKeepalived } = await import('../../src/ops/ha/render.js');
  const root = path.join(t.context.tmp, 'root-ha');
  mkdirSync(path.join(root, 'etc/keepalived'), { recursive: true });
  writeFileSync(path.join(root, 'etc/keepalived/keepalived.conf'), '# somebody else\'s\n');
  t.not((await sh(INSTALL, ['--root', root, '--router', 'a'])).exitCode, 0, '--router without --ha is refused');
  const r = await sh(INSTALL, ['--root', root, '--ha', '--router', 'a']);
  t.is(r.exitCode, 0, r.stderr + r.stdout);
  const etc = (f: string) => path.join(root, 'etc', f);
  t.is(statSync(etc('apns-proxy/ha/notify.sh')).mode & 0o777, 0o755);
  t.is(readFileSync(etc('apns-proxy/ha/notify.sh'), 'utf8'), readFileSync(path.join(REPO, 'contrib/ha/notify.sh'), 'utf8'));
  t.is(readFileSync(etc('sysctl.d/apns-proxy-ha.conf'), 'utf8'), readFileSync(path.join(REPO, 'contrib/ha/sysctl.conf'), 'utf8'));
  t.deepEqual(JSON.parse(readFileSync(etc('apns-proxy/ha/pair.json'), 'utf8')), JSON.parse(JSON.stringify(EXAMPLE_PAIR)));
  const tpl = (f: string) => readFileSync(path.join(REPO, 'contrib/ha', f), 'utf8');
  t.is(readFileSync(etc('conntrackd/conntrackd.conf'), 'utf8'), renderConntrackd(tpl('conntrackd.conf.in'), EXAMPLE_PAIR, 'a', DEFAULT_PATHS));
  t.is(readFileSync(etc('keepalived/keepalived.conf'), 'utf8'), '# somebody else\'s\n', 'a foreign keepalived.conf is kept');
  t.is(readFileSync(etc('keepalived/keepalived.conf.apns-proxy'), 'utf8'), renderKeepalived(tpl('keepalived.conf.in'), EXAMPLE_PAIR, 'a', DEFAULT_PATHS));
  t.regex(r.stdout, /"snat": "203\.0\.113\.1"/, 'prints the config keys both routers need');
  t.true(existsSync(path.join(root, 'opt/apns-proxy/contrib/ha/keepalived.conf.in')));

  // pair.json is never overwritten; router b renders from the edited file; our own file is replaced
  const edited = { ...EXAMPLE_PAIR, routers: { ...EXAMPLE_PAIR.routers, b: { ...EXAMPLE_PAIR.routers.b, priority: 99 } } };
  writeFileSync(etc('apns-proxy/ha/pair.json'), JSON.stringify(edited));
  const b = await sh(INSTALL, ['--root', root, '--ha', '--router', 'b']);
  t.is(b.exitCode, 0, b.stderr + b.stdout);
  t.deepEqual(JSON.parse(readFileSync(etc('apns-proxy/ha/pair.json'), 'utf8')), JSON.parse(JSON.stringify(edited)));
  t.regex(readFileSync(etc('keepalived/keepalived.conf.apns-proxy'), 'utf8'), /\tpriority 99\n/);
  t.regex(readFileSync(etc('conntrackd/conntrackd.conf'), 'utf8'), /IPv4_address 198\.51\.100\.2\n\t\tIPv4_Destination_Address 198\.51\.100\.1\n/);
  // a broken pair.json stops the install with the key named
  writeFileSync(etc('apns-proxy/ha/pair.json'), JSON.stringify({ ...edited, vrid: { client: 5, upstream: 5 } }));
  const bad = await sh(INSTALL, ['--root', root, '--ha', '--router', 'b']);
  t.not(bad.exitCode, 0);
  t.regex(bad.stderr, /pair\.vrid\.upstream/);
});

test.serial('README: the configuration block is the code\'s defaults, and every key has a row', (t) => {
  const readme = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Configuration\n'), readme.indexOf('\n## ', readme.indexOf('\n## Configuration\n') + 5));
  const json = /```json\n([\s\S]*?)\n```/.exec(section)?.[1];
  t.truthy(json, 'a json block under ## Configuration');
  t.deepEqual(JSON.parse(json!), JSON.parse(JSON.stringify(DEFAULTS)));
  const leaves = (o: object, prefix = ''): string[] => Object.entries(o).flatMap(([k, v]) =>
    v && typeof v === 'object' && !Array.isArray(v) ? leaves(v as object, `${prefix}${k}.`) : [`${prefix}${k}`]);
  for (const key of leaves(DEFAULTS)) {
    const last = key.split('.').at(-1)!;
    t.true(section.includes(`| \`${key}\``) || section.includes(`\`${key}\`,`) || section.includes(`, \`.${last}\``) || section.includes(`, \`${key}\``), `README documents ${key}`);
  }
});
