// The preflight (src/preflight.ts) with fake probes: what `run`, `refresh` and `flush` refuse.
import test from 'ava';
import { type LocalAddress, type PreflightProbes, dnsLoopProblems, formatProblem, parseAddresses, preflight, vipPrefixProblems } from '../../src/ops/preflight.js';
import { testConfig } from '../helpers/fixtures.js';

const ROUTER: LocalAddress[] = [
  { ifname: 'lo', family: 4, address: '127.0.0.1', prefixlen: 8 },
  { ifname: 'r0', family: 4, address: '192.0.2.1', prefixlen: 24 },
  { ifname: 'r1', family: 4, address: '203.0.113.1', prefixlen: 24 },
  { ifname: 'r1', family: 6, address: '2001:db8::1', prefixlen: 64 },
];

/** A router where everything is free: no table of that name, no rules, no routes in table 42. */
function clean(): PreflightProbes & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    tableOwner: async (t) => (asked.push(`tableOwner ${t}`), 'absent'),
    ipRules: async () => (asked.push('ipRules'), '[{"priority":0,"src":"all","table":"255"},{"priority":32766,"src":"all","table":"254"}]'),
    ipRoutes: async (n) => (asked.push(`ipRoutes ${n}`), '[]'),
    localAddresses: async () => (asked.push('localAddresses'), ROUTER),
  };
}

const config = testConfig({ dns: { listen: ['192.0.2.1:53'] } });

test('a clean router: no problems; our own table and routing are fine too', async (t) => {
  const p = clean();
  t.deepEqual(await preflight(config, p, { for: 'run' }), []);
  t.deepEqual(p.asked, ['tableOwner apns_proxy', 'ipRules', 'ipRoutes 42', 'localAddresses']);
  p.tableOwner = async () => 'ours';
  p.ipRules = async () => '[{"priority":32765,"src":"all","fwmark":"0x2a","table":"42"}]';
  p.ipRoutes = async () => '[{"type":"local","dst":"default","dev":"lo","scope":"host","flags":[]}]';
  t.deepEqual(await preflight(config, p, { for: 'run' }), []);
});

test('nft.table naming a table that is not ours (inet filter) is refused for run and flush', async (t) => {
  const p = clean();
  p.tableOwner = async () => 'foreign';
  const cfg = testConfig({ nft: { table: 'filter' } });
  for (const mode of ['run', 'flush'] as const) {
    const problems = await preflight(cfg, p, { for: mode });
    t.is(problems.length, 1, mode);
    t.like(problems[0], { check: 'nft table', code: 'E_NOT_OURS', key: 'nft.table' });
    t.regex(formatProblem(problems[0]!), /^nft\.table: table inet filter exists and is not ours \(it has no map couriers4 stamped "apns-proxy …"\): a sync would replace it and flush would delete it.* \[E_NOT_OURS\]; fix: set nft\.table to a name no other table uses/);
  }
});

test('flush looks only at the nft table (removing routing deletes nothing but ours)', async (t) => {
  const p = clean();
  p.ipRoutes = async () => '[{"dst":"203.0.113.0/24","dev":"r1","scope":"link","flags":[]}]';
  t.deepEqual(await preflight(testConfig({ vipPrefix: '192.0.2.0/24' }), p, { for: 'flush' }), []);
  t.deepEqual(p.asked, ['tableOwner apns_proxy']);
});

test('fallback.table with a route that is not ours is refused, naming the table and the route', async (t) => {
  const p = clean();
  p.ipRoutes = async () => '[{"dst":"203.0.113.0/24","dev":"r1","scope":"link","flags":[]}]';
  const [problem, ...rest] = await preflight(config, p, { for: 'run' });
  t.deepEqual(rest, []);
  t.like(problem, { check: 'policy routing', code: 'E_NOT_OURS', key: 'fallback.table' });
  t.regex(problem!.message, /routing table 42 is in use by routes that are not ours \(203\.0\.113\.0\/24 dev r1 scope link\)/);
  t.regex(problem!.fix, /set fallback\.table to a table no route uses/);
});

test('our fwmark sent to another table by a rule that is not ours is refused', async (t) => {
  const p = clean();
  p.ipRules = async () => '[{"priority":100,"src":"all","fwmark":"0x2a","table":"7"}]';
  const problems = await preflight(config, p, { for: 'run' });
  t.like(problems, [{ check: 'policy routing', code: 'E_NOT_OURS', key: 'fallback.mark' }]);
  // ...unless it is the running configuration's own rule (a reload that moves the table)
  t.deepEqual(await preflight(config, p, { for: 'run', alsoOurs: [{ mark: 0x2a, table: 7 }] }), []);
});

test('with the fallback off, routing is not looked at', async (t) => {
  const p = clean();
  p.ipRoutes = async () => '[{"dst":"203.0.113.0/24","dev":"r1","flags":[]}]';
  t.deepEqual(await preflight(testConfig({ fallback: { enabled: false } }), p, { for: 'run' }), []);
  t.false(p.asked.includes('ipRoutes 42'));
});

test('vipPrefix overlapping a network of this router is refused, naming the interface', (t) => {
  const [p] = vipPrefixProblems(testConfig({ vipPrefix: '192.0.2.0/24' }).vipPrefix, ROUTER);
  t.like(p, { check: 'vip prefix', code: 'E_UNSAFE', key: 'vipPrefix' });
  t.regex(p!.message, /^192\.0\.2\.0\/24 overlaps 192\.0\.2\.1\/24 on r0, a network of this router: connections to addresses there/);
  // wider and narrower interface networks overlap too; neighbours do not
  const at = (address: string, prefixlen: number): LocalAddress[] => [{ ifname: 'eth0', family: 4, address, prefixlen }];
  const vip = testConfig().vipPrefix;  // 198.18.100.0/24
  t.is(vipPrefixProblems(vip, at('198.18.0.1', 15)).length, 1);
  t.is(vipPrefixProblems(vip, at('198.18.100.129', 25)).length, 1);
  t.is(vipPrefixProblems(vip, at('198.18.100.7', 32)).length, 1);
  t.is(vipPrefixProblems(vip, at('198.18.101.1', 24)).length, 0);
  t.is(vipPrefixProblems(vip, at('198.18.99.1', 24)).length, 0);
  t.is(vipPrefixProblems(vip, ROUTER).length, 0);
});

test('upstreamDns pointing at our own listener is refused: same address, or any local one behind 0.0.0.0', (t) => {
  const loop = (upstreamDns: string[], listen: string[]) => dnsLoopProblems(testConfig({ upstreamDns, dns: { listen } }), ROUTER);
  const [p] = loop(['203.0.113.53', '192.0.2.1'], ['0.0.0.0:53']);
  t.like(p, { check: 'dns loop', code: 'E_UNSAFE', key: 'upstreamDns[1]' });
  t.regex(p!.message, /^192\.0\.2\.1:53 is our own DNS listener \(dns\.listen\[0\] 0\.0\.0\.0:53, every local address\): forwarded queries would loop back to us/);
  t.is(loop(['127.0.0.53'], ['0.0.0.0:53']).length, 1, 'all of 127.0.0.0/8 is local');
  t.is(loop(['[2001:db8::1]:53'], ['[::]:53']).length, 1);
  t.is(loop(['192.0.2.1'], ['[::]:53']).length, 1, ':: is dual stack');
  t.is(loop(['[2001:db8::1]:53'], ['0.0.0.0:53']).length, 0, '0.0.0.0 is IPv4 only');
  t.is(loop(['192.0.2.1:5353'], ['0.0.0.0:53']).length, 0, 'another port');
  t.is(loop(['203.0.113.53'], ['0.0.0.0:53']).length, 0, 'not a local address');
  t.is(loop(['192.0.2.1'], ['203.0.113.1:53']).length, 0, 'listening elsewhere');
});

test('every problem is reported, not only the first', async (t) => {
  const p = clean();
  p.tableOwner = async () => 'foreign';
  p.ipRoutes = async () => '[{"dst":"default","gateway":"198.51.100.1","dev":"r1","flags":[]}]';
  const cfg = testConfig({ vipPrefix: '203.0.113.0/24', allowedUpstreamNets: ['17.0.0.0/8'], upstreamDns: ['127.0.0.1'] });
  t.deepEqual((await preflight(cfg, p, { for: 'run' })).map((x) => x.key), ['nft.table', 'fallback.table', 'vipPrefix', 'upstreamDns[0]']);
});

test('parseAddresses reads ip -j addr show, both families, down links included', (t) => {
  const json = JSON.stringify([
    { ifindex: 1, ifname: 'lo', flags: ['LOOPBACK', 'UP'], addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8 }, { family: 'inet6', local: '::1', prefixlen: 128 }] },
    { ifindex: 2, ifname: 'r0', flags: ['BROADCAST'], addr_info: [{ family: 'inet', local: '192.0.2.1', prefixlen: 24, broadcast: '192.0.2.255' }] },
    { ifindex: 3, ifname: 'r1', flags: [], addr_info: [] },
  ]);
  t.deepEqual(parseAddresses(json), [
    { ifname: 'lo', family: 4, address: '127.0.0.1', prefixlen: 8 },
    { ifname: 'lo', family: 6, address: '::1', prefixlen: 128 },
    { ifname: 'r0', family: 4, address: '192.0.2.1', prefixlen: 24 },
  ]);
});
