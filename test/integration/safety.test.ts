// Safety against the real kernel in the lab's router namespace: configuration never destroys
// state that is not ours (an operator's nft table, routes in the fallback's table), and risky
// combinations are refused with exit code 2 before anything is touched. Needs root; never skips.
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { type Lab, createLab, nodeBin, repoRoot, writeLabConfig } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab }>;
const CLI = join(repoRoot(), 'dist/src/cli.js');

const OPERATOR_TABLE = `table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tip saddr 198.51.100.0/24 counter drop
\t}
}
`;

test.before(async (t) => {
  t.context = { lab: await createLab() };
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

/** The CLI in the router namespace with a lab config (DNS and metrics off unless given). */
async function cli(lab: Lab, command: string, overrides: Record<string, unknown>, name: string) {
  const config = await writeLabConfig(lab, { dns: { listen: [] }, metrics: { listen: [] }, resolver: { timeoutMs: 300 }, ...overrides }, `${name}.json`);
  // A `run` that is wrongly not refused would serve forever: the timeout turns that into exit -1.
  return lab.exec(lab.ns.router, nodeBin(), [CLI, command, '--config', config], { reject: false, timeoutMs: 20_000 });
}

const router = (lab: Lab, cmd: string, ...args: string[]) => lab.exec(lab.ns.router, cmd, args, { reject: false });
const ourTable = async (lab: Lab) => (await router(lab, 'nft', 'list', 'table', 'inet', 'apns_proxy')).exitCode === 0;

test.serial('an operator table inet filter survives run, refresh and flush with nft.table "filter" (exit 2)', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'nft', ['-f', '-'], { input: OPERATOR_TABLE });
  const before = (await router(lab, 'nft', 'list', 'table', 'inet', 'filter')).stdout;
  t.regex(before, /ip saddr 198\.51\.100\.0\/24 counter packets 0 bytes 0 drop/);
  try {
    for (const command of ['run', 'refresh', 'flush']) {
      const r = await cli(lab, command, { nft: { table: 'filter' } }, `filter-${command}`);
      t.is(r.exitCode, 2, `${command}: ${r.stderr}`);
      t.regex(r.stderr, new RegExp(`^apns-proxy ${command}: refused, nothing changed: nft\\.table: table inet filter exists and is not ours .*\\[E_NOT_OURS\\]; fix: set nft\\.table to a name no other table uses`, 'm'));
      t.is((await router(lab, 'nft', 'list', 'table', 'inet', 'filter')).stdout, before, `${command} left inet filter as it was`);
    }
    const rules = (await router(lab, 'ip', '-4', 'rule', 'show')).stdout;
    t.notRegex(rules, /fwmark/, 'no policy routing was installed either');
  } finally {
    await router(lab, 'nft', 'delete', 'table', 'inet', 'filter');
  }
});

test.serial('a route already in table 42 survives run and refresh with fallback.table 42 (exit 2); flush leaves it too', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'ip', ['route', 'add', '203.0.113.0/24', 'dev', 'r1', 'table', '42']);
  const before = (await router(lab, 'ip', '-4', 'route', 'show', 'table', '42')).stdout;
  t.regex(before, /^203\.0\.113\.0\/24 dev r1/m);
  try {
    for (const command of ['run', 'refresh']) {
      const r = await cli(lab, command, { fallback: { table: 42 } }, `table42-${command}`);
      t.is(r.exitCode, 2, `${command}: ${r.stderr}`);
      t.regex(r.stderr, /refused, nothing changed: fallback\.table: routing table 42 is in use by routes that are not ours \(203\.0\.113\.0\/24 dev r1 scope link\).*\[E_NOT_OURS\]; fix: set fallback\.table/);
      t.is((await router(lab, 'ip', '-4', 'route', 'show', 'table', '42')).stdout, before, `${command}: table 42 unchanged`);
      t.notRegex((await router(lab, 'ip', '-4', 'rule', 'show')).stdout, /fwmark/);
      t.false(await ourTable(lab), `${command}: nothing touched, not even our nft table`);
    }
    // flush removes only our exact rule and route: there are none, and the operator's route stays
    const f = await cli(lab, 'flush', { fallback: { table: 42 } }, 'table42-flush');
    t.is(f.exitCode, 0, f.stderr);
    t.is((await router(lab, 'ip', '-4', 'route', 'show', 'table', '42')).stdout, before);
  } finally {
    await router(lab, 'ip', 'route', 'flush', 'table', '42');
  }
});

test.serial('our fwmark already sent to another table by someone else is refused', async (t) => {
  const { lab } = t.context;
  await lab.exec(lab.ns.router, 'ip', ['rule', 'add', 'fwmark', '0x2a', 'lookup', '100', 'priority', '100']);
  try {
    const r = await cli(lab, 'run', {}, 'mark');
    t.is(r.exitCode, 2, r.stderr);
    t.regex(r.stderr, /fallback\.mark: ip rule "priority 100 fwmark 0x2a lookup 100" already matches our fwmark 0x2a and is not ours/);
    t.regex((await router(lab, 'ip', '-4', 'rule', 'show')).stdout, /^100:\s+from all fwmark 0x2a lookup 100\s*$/m);
  } finally {
    await router(lab, 'ip', 'rule', 'del', 'priority', '100');
  }
});

test.serial('vipPrefix 192.0.2.0/24 (the router\'s own client network) is refused', async (t) => {
  const { lab } = t.context;
  const r = await cli(lab, 'run', { vipPrefix: '192.0.2.0/24' }, 'vip');
  t.is(r.exitCode, 2, r.stderr);
  t.regex(r.stderr, /^apns-proxy run: refused, nothing changed: vipPrefix: 192\.0\.2\.0\/24 overlaps 192\.0\.2\.1\/24 on r0, a network of this router.*\[E_UNSAFE\]; fix: /m);
  t.false(await ourTable(lab));
});

test.serial('upstreamDns at our own listener (0.0.0.0:53 covers 192.0.2.1) is refused', async (t) => {
  const { lab } = t.context;
  const r = await cli(lab, 'run', { upstreamDns: ['192.0.2.1'], dns: { listen: ['0.0.0.0:53'] } }, 'loop');
  t.is(r.exitCode, 2, r.stderr);
  t.regex(r.stderr, /upstreamDns\[0\]: 192\.0\.2\.1:53 is our own DNS listener \(dns\.listen\[0\] 0\.0\.0\.0:53, every local address\)/);
  t.false(await ourTable(lab));
});

test.serial('what is ours is accepted: refresh installs the routing, a second refresh and flush find it ours', async (t) => {
  const { lab } = t.context;
  for (const command of ['refresh', 'refresh']) {
    const r = await cli(lab, command, { fallback: { table: 43 } }, 'ours');
    t.is(r.exitCode, 0, r.stderr);
  }
  t.regex((await router(lab, 'ip', '-4', 'rule', 'show')).stdout, /fwmark 0x2a lookup 43/);
  t.regex((await router(lab, 'ip', '-4', 'route', 'show', 'table', '43')).stdout, /^local default dev lo/m);
  const f = await cli(lab, 'flush', { fallback: { table: 43 } }, 'ours');
  t.is(f.exitCode, 0, f.stderr);
  t.notRegex((await router(lab, 'ip', '-4', 'rule', 'show')).stdout, /fwmark/);
  t.is((await router(lab, 'ip', '-4', 'route', 'show', 'table', '43')).stdout.trim(), '');
  t.false(await ourTable(lab));
});
