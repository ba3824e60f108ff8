import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../src/core/errors.js';
import { DEFAULTS, parseConfig, parseConfigText } from '../../src/core/config.js';

test('defaults fill every key of the contract', (t) => {
  const c = parseConfig({});
  t.is(c.vipPrefix.text, DEFAULTS.vipPrefix);
  t.deepEqual(c.ports, [5223, 443]);
  t.deepEqual(c.couriers, { template: '{n}-courier.push.apple.com', first: 1, last: 200 });
  t.deepEqual(c.upstreamDns, [{ host: '8.8.8.8', port: 53, family: 4 }]);
  t.deepEqual(c.allowedUpstreamNets.map((n) => n.text), ['17.0.0.0/8']);
  t.deepEqual(c.dns.listen, [{ host: '0.0.0.0', port: 53, family: 4 }]);
  t.deepEqual(c.dns.allowClients, DEFAULTS.dns.allowClients);
  t.is(c.dns.ttl, 30);
  t.deepEqual(
    { forwardTimeoutMs: c.dns.forwardTimeoutMs, maxForwards: c.dns.maxForwards, tcpMaxConnections: c.dns.tcpMaxConnections, tcpIdleTimeoutMs: c.dns.tcpIdleTimeoutMs },
    { forwardTimeoutMs: 2000, maxForwards: 512, tcpMaxConnections: 256, tcpIdleTimeoutMs: 10000 },
  );
  t.deepEqual({ tcpMaxPerClient: c.dns.tcpMaxPerClient, tcpFrameTimeoutMs: c.dns.tcpFrameTimeoutMs }, { tcpMaxPerClient: 16, tcpFrameTimeoutMs: 2000 });
  t.deepEqual(c.refresh, { schedule: '* * * * *', maxStaleSeconds: 86400 });
  t.deepEqual(c.fallback, {
    enabled: true, port: 15223, mark: 42, table: 42,
    resolveTimeoutMs: 1000, connectTimeoutMs: 3000, idleTimeoutSeconds: 14400, maxConnections: 8192,
  });
  t.deepEqual(c.nft, { table: 'apns_proxy', masquerade: true, snat: null });
  t.is(c.stateDir, '/var/lib/apns-proxy');
  t.deepEqual(c.log, { level: 'info', format: 'text' });
});

test('values given replace defaults, sections merge key by key', (t) => {
  const c = parseConfig({
    vipPrefix: '198.18.100.0/24', couriers: { last: 60 }, upstreamDns: ['203.0.113.53:5353', '[2001:db8::1]:53'],
    dns: { ttl: 5, tcpMaxPerClient: 1, tcpFrameTimeoutMs: 60000 }, nft: { masquerade: false },
  });
  t.like(c.dns, { tcpMaxPerClient: 1, tcpFrameTimeoutMs: 60000, tcpIdleTimeoutMs: 10000 });
  t.is(c.vipPrefix.text, '198.18.100.0/24');
  t.deepEqual(c.couriers, { template: '{n}-courier.push.apple.com', first: 1, last: 60 });
  t.deepEqual(c.upstreamDns, [{ host: '203.0.113.53', port: 5353, family: 4 }, { host: '2001:db8::1', port: 53, family: 6 }]);
  t.is(c.dns.ttl, 5);
  t.deepEqual(c.dns.listen, [{ host: '0.0.0.0', port: 53, family: 4 }]);
  t.deepEqual(c.nft, { table: 'apns_proxy', masquerade: false, snat: null });
});

// Each row: the bad input, the key the error must name, and the value it must show.
const bad: [string, unknown, string, string][] = [
  ['unknown top-level key', { vipPrefx: '10.0.0.0/24' }, 'vipPrefx', '"10.0.0.0/24"'],
  ['unknown nested key', { dns: { listn: [] } }, 'dns.listn', '[]'],
  ['prefix not a /24', { vipPrefix: '10.100.0.0/16' }, 'vipPrefix', '"10.100.0.0/16"'],
  ['prefix with host bits', { vipPrefix: '10.100.100.7/24' }, 'vipPrefix', '"10.100.100.7/24"'],
  ['prefix not an address', { vipPrefix: '10.100.300.0/24' }, 'vipPrefix', '"10.100.300.0/24"'],
  ['prefix wrong type', { vipPrefix: 10 }, 'vipPrefix', '10'],
  ['first below 1', { couriers: { first: 0 } }, 'couriers.first', '0'],
  ['last above 254', { couriers: { last: 255 } }, 'couriers.last', '255'],
  ['first after last', { couriers: { first: 60, last: 50 } }, 'couriers.first', '60'],
  ['last not an integer', { couriers: { last: 50.5 } }, 'couriers.last', '50.5'],
  ['last as string', { couriers: { last: '50' } }, 'couriers.last', '"50"'],
  ['template without {n}', { couriers: { template: 'courier.push.apple.com' } }, 'couriers.template', '"courier.push.apple.com"'],
  ['bad CIDR', { allowedUpstreamNets: ['17.0.0.0/33'] }, 'allowedUpstreamNets[0]', '"17.0.0.0/33"'],
  ['CIDR with host bits', { allowedUpstreamNets: ['17.0.0.0/8', '17.1.0.0/8'] }, 'allowedUpstreamNets[1]', '"17.1.0.0/8"'],
  ['empty allowedUpstreamNets', { allowedUpstreamNets: [] }, 'allowedUpstreamNets', '[]'],
  ['bad client CIDR', { dns: { allowClients: ['192.168.0.0/16', 'fd00::/200'] } }, 'dns.allowClients[1]', '"fd00::/200"'],
  ['upstream not an IP', { upstreamDns: ['dns.google'] }, 'upstreamDns[0]', '"dns.google"'],
  ['upstream bad port', { upstreamDns: ['8.8.8.8:99999'] }, 'upstreamDns[0]', '"8.8.8.8:99999"'],
  ['null is not a default', { dns: { ttl: null } }, 'dns.ttl', 'null'],
  ['forward timeout too short', { dns: { forwardTimeoutMs: 10 } }, 'dns.forwardTimeoutMs', '10'],
  ['max forwards zero', { dns: { maxForwards: 0 } }, 'dns.maxForwards', '0'],
  ['tcp connections fractional', { dns: { tcpMaxConnections: 1.5 } }, 'dns.tcpMaxConnections', '1.5'],
  ['tcp idle as string', { dns: { tcpIdleTimeoutMs: '10s' } }, 'dns.tcpIdleTimeoutMs', '"10s"'],
  ['tcp per client zero', { dns: { tcpMaxPerClient: 0 } }, 'dns.tcpMaxPerClient', '0'],
  ['tcp per client above 65535', { dns: { tcpMaxPerClient: 65536 } }, 'dns.tcpMaxPerClient', '65536'],
  ['tcp frame timeout too short', { dns: { tcpFrameTimeoutMs: 99 } }, 'dns.tcpFrameTimeoutMs', '99'],
  ['tcp frame timeout too long', { dns: { tcpFrameTimeoutMs: 60001 } }, 'dns.tcpFrameTimeoutMs', '60001'],
  ['port out of range', { ports: [5223, 70000] }, 'ports[1]', '70000'],
  ['port twice', { ports: [5223, 5223] }, 'ports', '[5223,5223]'],
  ['bad schedule', { refresh: { schedule: 'every minute' } }, 'refresh.schedule', '"every minute"'],
  ['negative staleness', { refresh: { maxStaleSeconds: -1 } }, 'refresh.maxStaleSeconds', '-1'],
  ['fallback table main', { fallback: { table: 254 } }, 'fallback.table', '254'],
  ['mark zero', { fallback: { mark: 0 } }, 'fallback.mark', '0'],
  ['idle timeout zero', { fallback: { idleTimeoutSeconds: 0 } }, 'fallback.idleTimeoutSeconds', '0'],
  ['max connections as string', { fallback: { maxConnections: '100' } }, 'fallback.maxConnections', '"100"'],
  ['bool as string', { fallback: { enabled: 'yes' } }, 'fallback.enabled', '"yes"'],
  ['nft table name', { nft: { table: 'apns-proxy' } }, 'nft.table', '"apns-proxy"'],
  ['relative stateDir', { stateDir: 'var/lib' }, 'stateDir', '"var/lib"'],
  ['snat not an address', { nft: { snat: '203.0.113.0/24' } }, 'nft.snat', '"203.0.113.0/24"'],
  ['snat a number', { nft: { snat: 1 } }, 'nft.snat', '1'],
  ['ha relative path', { ha: { conntrackdConfig: 'conntrackd.conf' } }, 'ha.conntrackdConfig', '"conntrackd.conf"'],
  ['ha unknown key', { ha: { keepalived: true } }, 'ha.keepalived', 'true'],
  ['log level', { log: { level: 'verbose' } }, 'log.level', '"verbose"'],
  ['log format', { log: { format: 'xml' } }, 'log.format', '"xml"'],
  ['section not an object', { dns: [] }, 'dns', '[]'],
  ['top level not an object', [1], '(top level)', '[1]'],
];

for (const [title, input, key, shown] of bad) {
  test(`config error: ${title}`, (t) => {
    const err = t.throws(() => parseConfig(input), { instanceOf: ConfigError });
    t.is(err?.code, 'E_CONFIG');
    t.is(err?.key, key);
    t.true(err?.message.startsWith(`config: ${key}: `), err?.message);
    t.true(err?.message.endsWith(`got ${shown}`), err?.message);
  });
}

test('invalid JSON names the file', (t) => {
  const err = t.throws(() => parseConfigText('{"vipPrefix": ', '/etc/apns-proxy/config.json'), { instanceOf: ConfigError });
  t.regex(err!.message, /^config: \/etc\/apns-proxy\/config\.json: is not valid JSON/);
});

// Cross-field checks (issue 10): each value is valid alone, the combination is unsafe.
const unsafe: [string, unknown, string, string, RegExp][] = [
  ['allowed net covering the VIP prefix', { vipPrefix: '198.18.100.0/24', allowedUpstreamNets: ['17.0.0.0/8', '198.18.0.0/15'] }, 'allowedUpstreamNets[1]', '"198.18.0.0/15"', /overlaps vipPrefix 198\.18\.100\.0\/24: a VIP could be programmed as a courier address \(VIP → VIP\)/],
  ['allowed net inside the VIP prefix', { vipPrefix: '198.18.100.0/24', allowedUpstreamNets: ['198.18.100.128/25'] }, 'allowedUpstreamNets[0]', '"198.18.100.128/25"', /overlaps vipPrefix/],
  ['allowed net equal to the VIP prefix (default prefix)', { allowedUpstreamNets: ['10.100.100.0/24'] }, 'allowedUpstreamNets[0]', '"10.100.100.0/24"', /overlaps vipPrefix 10\.100\.100\.0\/24/],
  ['0.0.0.0/0 as an allowed net', { allowedUpstreamNets: ['0.0.0.0/0'] }, 'allowedUpstreamNets[0]', '"0.0.0.0/0"', /is wider than a \/8: .* relay to almost anywhere/],
  ['an allowed net shorter than /8', { allowedUpstreamNets: ['17.0.0.0/8', '0.0.0.0/7'] }, 'allowedUpstreamNets[1]', '"0.0.0.0/7"', /is wider than a \/8/],
  ['upstreamDns equal to a dns.listen entry', { upstreamDns: ['203.0.113.53', '192.0.2.1'], dns: { listen: ['127.0.0.1:5353', '192.0.2.1:53'] } }, 'upstreamDns[1]', '"192.0.2.1"', /is our own DNS listener \(dns\.listen\[1\] 192\.0\.2\.1:53\): forwarded queries would loop back to us/],
  ['upstreamDns equal to a dns.listen entry, IPv6', { upstreamDns: ['[2001:DB8::1]:53'], dns: { listen: ['[2001:db8::1]:53'] } }, 'upstreamDns[0]', '"[2001:DB8::1]:53"', /is our own DNS listener/],
];

for (const [title, input, key, shown, why] of unsafe) {
  test(`config error (cross-field): ${title}`, (t) => {
    const err = t.throws(() => parseConfig(input), { instanceOf: ConfigError });
    t.is(err?.code, 'E_CONFIG');
    t.is(err?.key, key);
    t.true(err?.message.startsWith(`config: ${key}: `), err?.message);
    t.true(err?.message.endsWith(`got ${shown}`), err?.message);
    t.regex(err!.message, why);
  });
}

test('cross-field checks accept what is safe: /8 nets, neighbouring prefixes, the same host on another port', (t) => {
  t.notThrows(() => parseConfig({ vipPrefix: '198.18.100.0/24', allowedUpstreamNets: ['17.0.0.0/8', '198.18.101.0/24', '198.18.99.0/24'] }));
  t.notThrows(() => parseConfig({ upstreamDns: ['192.0.2.1:5353'], dns: { listen: ['192.0.2.1:53'] } }));
  t.notThrows(() => parseConfig({ upstreamDns: ['192.0.2.2'], dns: { listen: ['192.0.2.1:53'] } }));
});

test('the README default config is still valid', (t) => {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  const blocks = [...readme.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => b.includes('"vipPrefix"'));
  t.true(blocks.length > 0, 'the README shows a config');
  for (const b of blocks) t.notThrows(() => parseConfig(JSON.parse(b)));
});

test('a router pair: nft.snat and the ha section (defaults: no shared address, no pair)', (t) => {
  const d = parseConfig({});
  t.is(d.nft.snat, null);
  t.deepEqual(d.ha, { enabled: false, conntrackdConfig: '/etc/conntrackd/conntrackd.conf', stateFile: '/run/apns-proxy/ha-state' });
  t.is(parseConfig({ nft: { snat: null } }).nft.snat, null);
  const c = parseConfig({ nft: { snat: '203.0.113.1' }, ha: { enabled: true, stateFile: '/tmp/x/state' } });
  t.deepEqual(c.nft, { table: 'apns_proxy', masquerade: true, snat: '203.0.113.1' });
  t.deepEqual(c.ha, { enabled: true, conntrackdConfig: '/etc/conntrackd/conntrackd.conf', stateFile: '/tmp/x/state' });
});
