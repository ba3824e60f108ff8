import test from 'ava';
import { type DoctorProbes, type Finding, type Level, droppingDirectChains, droppingForwardChains, formatFindings, runDoctor } from '../../src/ops/doctor.js';
import type { HostPort } from '../../src/core/net.js';
import type { Resolution } from '../../src/dns/client/resolver.js';
import { fail, ok, testConfig } from '../helpers/fixtures.js';

const config = testConfig({ dns: { listen: ['192.0.2.1:53'] } });

/** A healthy router; each test breaks one thing. */
function healthy(): DoctorProbes & { answers: Map<string, Resolution> } {
  const answers = new Map<string, Resolution>();
  return {
    answers,
    nftCheck: async () => null,
    sysctl: async (key) => ({ 'net.ipv4.ip_forward': '1', 'net.netfilter.nf_conntrack_max': '262144' } as Record<string, string>)[key] ?? null,
    ipRules: async () => '[{"priority":0,"src":"all","table":"local"},{"priority":32765,"src":"all","fwmark":"0x2a","table":"42"}]',
    ipRoutes: async () => '[{"type":"local","dst":"default","dev":"lo","scope":"host","flags":[]}]',
    tableOwner: async () => 'ours',
    localAddresses: async () => [
      { ifname: 'lo', family: 4, address: '127.0.0.1', prefixlen: 8 },
      { ifname: 'r0', family: 4, address: '192.0.2.1', prefixlen: 24 },
      { ifname: 'r1', family: 4, address: '203.0.113.1', prefixlen: 24 },
    ],
    nftRuleset: async () => '{"nftables":[{"metainfo":{}}]}',
    bindable: async () => 'free',
    daemonRunning: async () => false,
    resolve: async (server: HostPort) => answers.get(server.host) ?? ok(['203.0.113.10']),
    native: () => null,
  };
}

const levels = (f: Finding[]) => Object.fromEntries(f.map((x) => [x.check, x.level]));
const find = (f: Finding[], check: string) => f.find((x) => x.check === check)!;

test('a healthy router: every check ok', async (t) => {
  const f = await runDoctor(config, healthy(), { devices: 5000 });
  t.deepEqual(levels(f), { nftables: 'ok', 'nft table': 'ok', 'vip prefix': 'ok', 'dns loop': 'ok', ip_forward: 'ok', conntrack: 'ok', 'policy routing': 'ok', 'fallback helper': 'ok', 'forward chain': 'ok', direct: 'ok', 'dns port': 'ok', 'upstream dns': 'ok' });
  t.regex(formatFindings(f), /\nno problems\n$/);
  t.regex(find(f, 'direct').message, /forwarded \(ct mark 0x20000000\) and no forward chain drops them; other new connections to allowedUpstreamNets on 5223 are reset$/);
});

test('nftables: a missing expression is named with the modules to load', async (t) => {
  const p = healthy();
  p.nftCheck = async (script) => (script.includes('tproxy') ? 'Error: Could not process rule: No such file or directory' : null);
  const n = find(await runDoctor(config, p, { devices: 5000 }), 'nftables');
  t.is(n.level, 'fail');
  t.regex(n.message, /tproxy \(the fallback\) \(Error: Could not process rule/);
  t.is(n.fix, 'modprobe -a nft_tproxy  # or install a kernel with these nftables modules');
});

test('nftables: tproxy and socket are not required when the fallback is off', async (t) => {
  const p = healthy();
  p.nftCheck = async (script) => (/tproxy|socket/.test(script) ? 'missing' : null);
  const f = await runDoctor(testConfig({ fallback: { enabled: false } }), p, { devices: 5000 });
  t.is(find(f, 'nftables').level, 'ok');
  t.is(f.find((x) => x.check === 'policy routing'), undefined);
});

test('ip_forward off is a failure with the sysctl that fixes it', async (t) => {
  const p = healthy();
  p.sysctl = async (key) => (key === 'net.ipv4.ip_forward' ? '0' : '262144');
  const n = find(await runDoctor(config, p, { devices: 5000 }), 'ip_forward');
  t.is(n.level, 'fail');
  t.regex(n.fix!, /^sysctl -w net\.ipv4\.ip_forward=1/);
});

test('conntrack max below twice the devices warns; not loaded warns differently', async (t) => {
  const p = healthy();
  p.sysctl = async (key) => (key === 'net.ipv4.ip_forward' ? '1' : '65536');
  const low = find(await runDoctor(config, p, { devices: 50000 }), 'conntrack');
  t.is(low.level, 'warn');
  t.regex(low.message, /nf_conntrack_max = 65536, below 100000 for 50000 devices/);
  t.is(low.fix, 'sysctl -w net.netfilter.nf_conntrack_max=200000  # and persist it in /etc/sysctl.d/');
  p.sysctl = async (key) => (key === 'net.ipv4.ip_forward' ? '1' : null);
  t.regex(find(await runDoctor(config, p, { devices: 5 }), 'conntrack').message, /not loaded yet/);
});

test('policy routing: a missing rule or route is named', async (t) => {
  const p = healthy();
  p.ipRules = async () => '[]';
  const r = find(await runDoctor(config, p, { devices: 1 }), 'policy routing');
  t.is(r.level, 'warn');
  t.regex(r.message, /^missing ip rule fwmark 0x2a lookup 42:/);
  p.ipRules = healthy().ipRules;
  p.ipRoutes = async () => '[]';
  t.regex(find(await runDoctor(config, p, { devices: 1 }), 'policy routing').message, /^missing local route in table 42/);
});

test('native helper missing fails with the build command', async (t) => {
  const p = healthy();
  p.native = () => 'the fallback needs the native helper, which is not built';
  const n = find(await runDoctor(config, p, { devices: 1 }), 'fallback helper');
  t.is(n.level, 'fail');
  t.regex(n.fix!, /^npm run build:native/);
});

const DROPPING = JSON.stringify({ nftables: [
  { chain: { family: 'inet', table: 'filter', name: 'forward', hook: 'forward', policy: 'drop' } },
  { chain: { family: 'ip', table: 'fw', name: 'FORWARD', hook: 'forward', policy: 'drop' } },
  { rule: { family: 'ip', table: 'fw', chain: 'FORWARD', expr: [{ match: { op: 'in', left: { ct: { key: 'status' } }, right: 'dnat' } }, { accept: null }] } },
  { chain: { family: 'inet', table: 'apns_proxy', name: 'x', hook: 'forward', policy: 'drop' } },
  { chain: { family: 'inet', table: 'open', name: 'forward', hook: 'forward', policy: 'accept' } },
] });

test('forward chains that drop DNATed flows are found; one with ct status dnat accept is fine', async (t) => {
  t.deepEqual(droppingForwardChains(DROPPING, 'apns_proxy'), ['inet filter forward']);
  const p = healthy();
  p.nftRuleset = async () => DROPPING;
  const n = find(await runDoctor(config, p, { devices: 1 }), 'forward chain');
  t.is(n.level, 'fail');
  t.is(n.fix, 'nft insert rule inet filter forward ct status dnat accept');
});

test('direct: forward chains with policy drop must accept the direct mark; the fix says what to add', async (t) => {
  const mark = (value: number, chain = 'forward', table = 'filter') => ({ rule: { family: 'inet', table, chain, expr: [
    { match: { op: '==', left: { '&': [{ ct: { key: 'mark' } }, value] }, right: value } }, { accept: null }] } });
  t.deepEqual(droppingDirectChains(DROPPING, 'apns_proxy', 0x20000000), ['inet filter forward', 'ip fw FORWARD'], 'ct status dnat accept is not enough');
  const withMark = JSON.stringify({ nftables: [...(JSON.parse(DROPPING) as { nftables: unknown[] }).nftables, mark(0x20000000)] });
  t.deepEqual(droppingDirectChains(withMark, 'apns_proxy', 0x20000000), ['ip fw FORWARD']);
  t.deepEqual(droppingDirectChains(withMark, 'apns_proxy', 0x100), ['inet filter forward', 'ip fw FORWARD'], 'another mark is not ours');
  const p = healthy();
  p.nftRuleset = async () => DROPPING;
  const n = find(await runDoctor(config, p, { devices: 1 }), 'direct');
  t.is(n.level, 'fail');
  t.regex(n.message, /no "ct mark & 0x20000000 == 0x20000000 accept": inet filter forward, ip fw FORWARD; devices that connect to a courier address directly will be dropped/);
  t.is(n.fix, 'nft insert rule inet filter forward ct mark and 0x20000000 == 0x20000000 accept; nft insert rule ip fw FORWARD ct mark and 0x20000000 == 0x20000000 accept');
  const off = find(await runDoctor(testConfig({ direct: { forward: false, reset5223: false } }), p, { devices: 1 }), 'direct');
  t.is(off.level, 'ok', 'direct.forward off: nothing of ours to drop');
  t.regex(off.message, /left to this router's own forwarding; nothing is reset/);
  p.nftRuleset = async () => '{"nftables":[{"metainfo":{}}]}';
  t.regex(find(await runDoctor(testConfig({ direct: { reset443: true } }), p, { devices: 1 }), 'direct').message, /on 5223 and 443 are reset$/);
  p.nftCheck = async (script) => (script.includes('reject with tcp reset') ? 'Error: Could not process rule: No such file or directory' : null);
  const nf = find(await runDoctor(config, p, { devices: 1 }), 'nftables');
  t.is(nf.level, 'fail');
  t.is(nf.fix, 'modprobe -a nft_ct nft_reject_inet  # or install a kernel with these nftables modules');
});

test('dns port: free, ours, taken by another program, permission, not local', async (t) => {
  const p = healthy();
  const states: [Awaited<ReturnType<DoctorProbes['bindable']>>, boolean, Level, RegExp][] = [
    ['in-use', true, 'ok', /in use by the running apns-proxy/],
    ['in-use', false, 'fail', /taken by another program/],
    ['denied', false, 'fail', /permission denied/],
    ['not-local', false, 'fail', /192\.0\.2\.1 is not an address of this router/],
  ];
  for (const [state, running, level, re] of states) {
    p.bindable = async () => state;
    p.daemonRunning = async () => running;
    const n = find(await runDoctor(config, p, { devices: 1 }), 'dns port');
    t.is(n.level, level, state);
    t.regex(n.message, re);
  }
});

test('upstream dns: each server checked; NXDOMAIN still counts as reachable', async (t) => {
  const p = healthy();
  const cfg = testConfig({ upstreamDns: ['203.0.113.53', '203.0.113.54'], dns: { listen: [] } });
  p.answers.set('203.0.113.53', { kind: 'nxdomain', chain: [] });
  p.answers.set('203.0.113.54', fail());
  const f = (await runDoctor(cfg, p, { devices: 1 })).filter((x) => x.check === 'upstream dns');
  t.is(f.length, 2);
  t.is(f[0]!.level, 'ok');
  t.regex(f[0]!.message, /answers 1-courier\.push\.apple\.com: NXDOMAIN/);
  t.is(f[1]!.level, 'fail');
  t.regex(f[1]!.fix!, /dig @203\.0\.113\.54 -p 53 1-courier\.push\.apple\.com/);
  t.regex(formatFindings(f), /FAIL  upstream dns: 203\.0\.113\.54:53 gave no usable answer.*\n      fix: .*\n1 problem\(s\), 0 warning\(s\)\n$/);
});

// What `run` refuses (preflight.ts) is a FAIL in doctor, each with its fix.
test('nft table: a table of that name that is not ours fails', async (t) => {
  const p = healthy();
  p.tableOwner = async () => 'foreign';
  const n = find(await runDoctor(testConfig({ nft: { table: 'filter' }, dns: { listen: [] } }), p, { devices: 1 }), 'nft table');
  t.is(n.level, 'fail');
  t.regex(n.message, /^nft\.table: table inet filter exists and is not ours/);
  t.regex(n.fix!, /^set nft\.table to a name no other table uses/);
  p.tableOwner = async () => 'absent';
  t.is(find(await runDoctor(config, p, { devices: 1 }), 'nft table').level, 'ok');
});

test('policy routing: a fallback table used by other routes fails (not merely "missing")', async (t) => {
  const p = healthy();
  p.ipRules = async () => '[]';
  p.ipRoutes = async () => '[{"dst":"203.0.113.0/24","dev":"r1","scope":"link","flags":[]}]';
  const f = (await runDoctor(config, p, { devices: 1 })).filter((x) => x.check === 'policy routing');
  t.is(f.length, 1);
  t.is(f[0]!.level, 'fail');
  t.regex(f[0]!.message, /^fallback\.table: routing table 42 is in use by routes that are not ours \(203\.0\.113\.0\/24 dev r1 scope link\)/);
  t.regex(f[0]!.fix!, /set fallback\.table/);
});

test('policy routing: our fwmark sent elsewhere fails with the rule named', async (t) => {
  const p = healthy();
  p.ipRules = async () => '[{"priority":100,"src":"all","fwmark":"0x2a","table":"7"},{"priority":32765,"src":"all","fwmark":"0x2a","table":"42"}]';
  const n = find(await runDoctor(config, p, { devices: 1 }), 'policy routing');
  t.is(n.level, 'fail');
  t.regex(n.message, /^fallback\.mark: ip rule "priority 100 fwmark 0x2a lookup 7"/);
  t.regex(n.fix!, /ip rule del priority 100 fwmark 0x2a lookup 7$/);
});

test('vip prefix on a local network and a DNS loop fail', async (t) => {
  const f = await runDoctor(testConfig({ vipPrefix: '192.0.2.0/24', upstreamDns: ['192.0.2.1'], dns: { listen: ['0.0.0.0:53'] } }), healthy(), { devices: 1 });
  t.is(find(f, 'vip prefix').level, 'fail');
  t.regex(find(f, 'vip prefix').message, /^vipPrefix: 192\.0\.2\.0\/24 overlaps 192\.0\.2\.1\/24 on r0/);
  t.truthy(find(f, 'vip prefix').fix);
  t.is(find(f, 'dns loop').level, 'fail');
  t.regex(find(f, 'dns loop').message, /^upstreamDns\[0\]: 192\.0\.2\.1:53 is our own DNS listener/);
  t.truthy(find(f, 'dns loop').fix);
});

test('a probe that cannot run is a warning, not a crash', async (t) => {
  const p = healthy();
  p.tableOwner = async () => { throw new Error('nft list table inet apns_proxy failed: Operation not permitted'); };
  const n = find(await runDoctor(config, p, { devices: 1 }), 'nft table');
  t.is(n.level, 'warn');
  t.regex(n.message, /^could not check: .*Operation not permitted/);
});
