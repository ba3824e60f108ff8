import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../src/core/errors.js';
import { DEFAULTS, defaultConfigText, parseConfig, parseConfigText } from '../../src/core/config.js';
import { ConfigSchema, contractModuleText, publishedSchemaText } from '../../src/core/config-schema.js';
import { DEFAULTS as GENERATED_DEFAULTS, checkConfig, configSchema } from '../../src/core/config-contract.generated.js';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Errors } from '@sinclair/typebox/errors';
import { parseCidr4, parseHostPort } from '../../src/core/net.js';

test('defaults fill every key of the contract', (t) => {
  const c = parseConfig({});
  t.is(c.vipPrefix.text, DEFAULTS.vipPrefix);
  t.deepEqual(c.ports, [5223, 443]);
  t.deepEqual(c.couriers, { template: '{n}-courier.push.apple.com', first: 0, last: 200 });
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
  t.deepEqual(c.couriers, { template: '{n}-courier.push.apple.com', first: 0, last: 60 });
  t.deepEqual(c.upstreamDns, [{ host: '203.0.113.53', port: 5353, family: 4 }, { host: '2001:db8::1', port: 53, family: 6 }]);
  t.is(c.dns.ttl, 5);
  t.deepEqual(c.dns.listen, [{ host: '0.0.0.0', port: 53, family: 4 }]);
  t.deepEqual(c.nft, { table: 'apns_proxy', masquerade: false, snat: null });
});

// Each row: the bad input, the key the error must name, and the value it must show.
const bad: [string, unknown, string, string][] = [
  ['unknown top-level key', { vipPrefx: '10.0.0.0/24' }, 'vipPrefx', '"10.0.0.0/24"'],
  ['unknown nested key', { dns: { listn: [] } }, 'dns.listn', '[]'],
  ['prefix wider than /16', { vipPrefix: '10.100.0.0/15' }, 'vipPrefix', '"10.100.0.0/15"'],
  ['prefix narrower than /30', { vipPrefix: '10.100.100.0/31' }, 'vipPrefix', '"10.100.100.0/31"'],
  ['prefix with host bits', { vipPrefix: '10.100.100.7/24' }, 'vipPrefix', '"10.100.100.7/24"'],
  ['prefix not an address', { vipPrefix: '10.100.300.0/24' }, 'vipPrefix', '"10.100.300.0/24"'],
  ['prefix wrong type', { vipPrefix: 10 }, 'vipPrefix', '10'],
  ['first below 0', { couriers: { first: -1 } }, 'couriers.first', '-1'],
  ['last beyond what the /24 holds with courier 0', { couriers: { last: 254 } }, 'couriers.last', '254'],
  ['last beyond what the /24 holds', { couriers: { first: 1, last: 255 } }, 'couriers.last', '255'],
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
  ['$schema not a string', { $schema: 5 }, '$schema', '5'],
  ['unknown key with / and ~ in it', { 'a/b~c': 1 }, 'a/b~c', '1'],
  ['unknown numeric key in a section', { dns: { 0: 1 } }, 'dns.0', '1'],
  ['metrics listener not an address', { metrics: { listen: ['127.0.0.1:9523', 'localhost:9523'] } }, 'metrics.listen[1]', '"localhost:9523"'],
  ['log level not a string', { log: { level: 3 } }, 'log.level', '3'],
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

// Cross-field checks: each value is valid alone, the combination is unsafe.
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

// One TypeBox schema is the contract; config.schema.json is it, published.

const REPO = new URL('../../../', import.meta.url);
const readmeBlocks = (): string[] => [...readFileSync(new URL('README.md', REPO), 'utf8').matchAll(/```json\n([\s\S]*?)```/g)]
  .map((m) => m[1]!).filter((b) => b.includes('"vipPrefix"'));
const shipped = (): Schema => JSON.parse(readFileSync(new URL('config.schema.json', REPO), 'utf8')) as Schema;

test('the error messages keep their words', (t) => {
  const message = (input: unknown): string => t.throws(() => parseConfig(input), { instanceOf: ConfigError })!.message;
  t.is(message({ couriers: { last: 70000 } }), 'config: couriers.last: must be an integer in 0..65534, got 70000');
  t.is(message({ couriers: { last: 300 } }), 'config: couriers.last: does not fit vipPrefix 10.100.100.0/24: 0..253 at most (no VIP may be the network or broadcast address; N = 0 takes broadcast − 1), got 300');
  t.is(message({ dns: { ttl: 90000 } }), 'config: dns.ttl: must be an integer in 0..86400, got 90000');
  t.is(message({ dns: { ttl: '30' } }), 'config: dns.ttl: must be an integer in 0..86400, got "30"');
  t.is(message({ fallback: { mark: 0 } }), 'config: fallback.mark: must be an integer in 1..4294967295, got 0');
  t.is(message({ dns: { listn: [] } }), 'config: dns.listn: unknown key (known here: listen, allowClients, ttl, rateLimit, forwardTimeoutMs, maxForwards, tcpMaxConnections, tcpIdleTimeoutMs, tcpMaxPerClient, tcpFrameTimeoutMs), got []');
  t.regex(message({ vipPrefx: '10.0.0.0/24' }), /^config: vipPrefx: unknown key \(known here: \$schema, vipPrefix, ports, couriers, .*, stateDir, log\), got "10\.0\.0\.0\/24"$/);
  t.is(message({ dns: [] }), 'config: dns: must be an object, got []');
  t.is(message({ ports: 5223 }), 'config: ports: must be a list, got 5223');
  t.is(message({ allowedUpstreamNets: [] }), 'config: allowedUpstreamNets: must not be empty, got []');
  t.is(message({ ports: [443, 5223, 443] }), 'config: ports: lists 443 twice, got [443,5223,443]');
  t.is(message({ fallback: { enabled: 'yes' } }), 'config: fallback.enabled: must be true or false, got "yes"');
  t.is(message({ refresh: { schedule: '' } }), 'config: refresh.schedule: must be a non-empty string, got ""');
  t.is(message({ refresh: { schedule: 'every minute' } }), 'config: refresh.schedule: must be a cron expression like "* * * * *" (expression "every minute": expected 5 or 6 fields, got 2), got "every minute"');
  t.is(message({ refresh: { schedule: '61 * * * *' } }), 'config: refresh.schedule: must be a cron expression like "* * * * *" (minute "61": 61 is outside 0-59), got "61 * * * *"');
  t.is(message({ refresh: { schedule: '0 0 31 2 *' } }), 'config: refresh.schedule: must be a cron expression like "* * * * *" (day of month "31": no listed month (2) has that day), got "0 0 31 2 *"');
  t.is(message({ nft: { table: 'apns-proxy' } }), 'config: nft.table: must be a letter followed by up to 31 letters, digits or underscores, got "apns-proxy"');
  t.is(message({ stateDir: 'var/lib' }), 'config: stateDir: must be an absolute path, got "var/lib"');
  t.is(message({ log: { level: 'verbose' } }), 'config: log.level: must be one of error, warn, info, debug, got "verbose"');
  t.is(message({ log: { format: 'xml' } }), 'config: log.format: must be "text" or "json", got "xml"');
  t.is(message({ couriers: { template: '{n}.{n}.push.apple.com' } }), 'config: couriers.template: must contain "{n}" exactly once, got "{n}.{n}.push.apple.com"');
  t.is(message({ couriers: { template: '{n}_courier.push.apple.com' } }), 'config: couriers.template: must be a DNS name such as "{n}-courier.push.apple.com", got "{n}_courier.push.apple.com"');
  t.is(message({ upstreamDns: ['8.8.8.8:99999'] }), 'config: upstreamDns[0]: must be an IP address with optional port, like 192.0.2.1 or 192.0.2.1:53, got "8.8.8.8:99999"');
  t.is(message({ metrics: { listen: ['localhost'] } }), 'config: metrics.listen[0]: must be an IP address with optional port, like 192.0.2.1 or 192.0.2.1:9523, got "localhost"');
  t.is(message({ vipPrefix: '10.100.100.7/24' }), 'config: vipPrefix: has host bits set after the prefix length, got "10.100.100.7/24"');
  t.is(message({ vipPrefix: '10.100.0.0/15' }), 'config: vipPrefix: must be an IPv4 network /16../30 like 10.100.100.0/24 (one VIP per courier: network + N, courier 0 at broadcast − 1), got "10.100.0.0/15"');
  t.is(message({ dns: { allowClients: ['fd00::/200'] } }), 'config: dns.allowClients[0]: must be an IPv4 or IPv6 CIDR like 192.168.0.0/16 or fd00::/8, got "fd00::/200"');
  t.is(message({ allowedUpstreamNets: ['17.0.0.0/33'] }), 'config: allowedUpstreamNets[0]: must be an IPv4 CIDR like 17.0.0.0/8, got "17.0.0.0/33"');
});

test('"$schema" is accepted and ignored', (t) => {
  t.deepEqual(parseConfig({ $schema: 'file:///opt/apns-proxy/config.schema.json' }), parseConfig({}));
  t.deepEqual(parseConfig({ $schema: 'https://example.org/s.json', dns: { ttl: 5 } }), parseConfig({ dns: { ttl: 5 } }));
  t.false('$schema' in parseConfig({ $schema: 'x' }));
  t.false('$schema' in DEFAULTS);
});

test('DEFAULTS are the schema\'s defaults, frozen, and parse to the defaults', (t) => {
  for (const [key, s] of Object.entries(ConfigSchema.properties)) {
    if (key !== '$schema') t.deepEqual((DEFAULTS as Record<string, unknown>)[key], (s as { default?: unknown }).default, key);
  }
  t.deepEqual(Object.keys(DEFAULTS), Object.keys(ConfigSchema.properties).filter((k) => k !== '$schema'));
  t.true(Object.isFrozen(DEFAULTS) && Object.isFrozen(DEFAULTS.dns) && Object.isFrozen(DEFAULTS.dns.listen));
  t.deepEqual(parseConfig(JSON.parse(JSON.stringify(DEFAULTS))), parseConfig({}));
});

test('defaultConfigText: "$schema" first, then every key at its default', (t) => {
  const text = defaultConfigText('file:///opt/apns-proxy/config.schema.json');
  t.true(text.startsWith('{\n  "$schema": "file:///opt/apns-proxy/config.schema.json",\n  "vipPrefix": '), text.slice(0, 120));
  t.true(text.endsWith('}\n'));
  const { $schema, ...rest } = JSON.parse(text) as Record<string, unknown>;
  t.is($schema, 'file:///opt/apns-proxy/config.schema.json');
  t.deepEqual(rest, JSON.parse(JSON.stringify(DEFAULTS)));
  t.deepEqual(parseConfigText(text, 'config.json'), parseConfig({}));
});

test('config.schema.json is exactly what the TypeBox schema generates (npm run build && npm run schema)', (t) => {
  t.is(readFileSync(new URL('config.schema.json', REPO), 'utf8'), publishedSchemaText());
  const s = shipped();
  t.is(s.$schema, 'http://json-schema.org/draft-07/schema#');
  t.is(s.type, 'object');
  t.false(s.additionalProperties);
});

// config.ts loads config-contract.generated.ts instead of TypeBox: it must be what the schema generates,
// and its check must say what TypeBox's says.

test('config-contract.generated.ts is exactly what the TypeBox schema generates (npm run build && npm run schema)', (t) => {
  t.is(readFileSync(new URL('src/core/config-contract.generated.ts', REPO), 'utf8'), contractModuleText());
  t.deepEqual(GENERATED_DEFAULTS, JSON.parse(JSON.stringify(DEFAULTS)));
  const schema = configSchema() as typeof ConfigSchema;
  const kind = Symbol.for('TypeBox.Kind');
  t.is((schema as unknown as Record<symbol, unknown>)[kind], 'Object');
  t.is((schema.properties.log.properties.level as unknown as Record<symbol, unknown>)[kind], 'Union');
  t.false('description' in schema.properties.dns);
  t.is(schema.properties.vipPrefix.errorMessage, ConfigSchema.properties.vipPrefix.errorMessage);
});

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

test('the generated check agrees with TypeBox\'s (compiled and Errors) on thousands of mutated configs', (t) => {
  const compiled = TypeCompiler.Compile(ConfigSchema);
  const rnd = random(20261130);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const values: unknown[] = [0, -1, 1.5, 65535, 65536, 4294967296, '', 'x', '10.0.0.0/24', '17.0.0.0/8', '1.2.3.4:53', '[fd00::1]:53',
    '{n}.push.apple.com', '/abs', 'info', 'json', true, false, null, [], [1], [443, 443], ['a', 'a'], ['8.8.8.8'], {}, { enabled: false }];
  const base = (): Record<string, unknown> => JSON.parse(JSON.stringify({ $schema: 'x', ...DEFAULTS })) as Record<string, unknown>;
  let refused = 0;
  for (let i = 0; i < 4000; i++) {
    const value = base();
    for (let n = 1 + Math.floor(rnd() * 3); n > 0; n--) {
      // walk to a random object or list in the config, then set, add or delete one of its entries
      let at: Record<string, unknown> = value;
      for (let depth = 0; depth < 3; depth++) {
        const children = Object.entries(at).filter(([, v]) => typeof v === 'object' && v !== null);
        if (children.length === 0 || rnd() < 0.3) break;
        at = pick(children)[1] as Record<string, unknown>;
      }
      const keys = Object.keys(at);
      const key = rnd() < 0.15 || keys.length === 0 ? pick(['extra', 'enabled', '0', 'names', 'template']) : pick(keys);
      if (rnd() < 0.1 && !Array.isArray(at)) delete at[key];
      else at[key] = structuredClone(pick(values));
    }
    const expected = compiled.Check(value);
    t.is(checkConfig(value), expected, JSON.stringify(value));
    t.is(Errors(ConfigSchema, value).First() === undefined, expected);
    t.is(Errors(configSchema() as typeof ConfigSchema, value).First()?.path, Errors(ConfigSchema, value).First()?.path);
    if (!expected) refused++;
  }
  t.true(refused > 1000 && refused < 3900, `refused ${refused} of 4000: the mutations should yield both kinds`);
});

// A small JSON Schema (draft-07) validator for the keywords the published schema uses. It refuses a
// keyword it does not know, so the schema cannot grow a rule these tests would silently skip. It reads
// the published file as an editor does: no TypeBox involved.
type Schema = Record<string, unknown>;
const ANNOTATIONS = new Set(['$schema', 'title', 'description', 'default', 'errorMessage']);
function validate(s: Schema, v: unknown, at = ''): string[] {
  const errors: string[] = [];
  const fail = (why: string): string[] => [...errors, `${at || '/'}: ${why}`];
  for (const k of Object.keys(s)) {
    if (!ANNOTATIONS.has(k) && !['type', 'properties', 'additionalProperties', 'items', 'minItems', 'uniqueItems', 'minimum', 'maximum', 'minLength', 'maxLength', 'pattern', 'anyOf', 'const', 'patternProperties'].includes(k)) {
      throw new Error(`${at}: keyword ${k} is not known to this test's validator`);
    }
  }
  const type = s.type as string | undefined;
  const isObject = typeof v === 'object' && v !== null && !Array.isArray(v);
  if (type === 'object' && !isObject) return fail('not an object');
  if (type === 'array' && !Array.isArray(v)) return fail('not an array');
  if (type === 'string' && typeof v !== 'string') return fail('not a string');
  if (type === 'integer' && !Number.isInteger(v)) return fail('not an integer');
  if (type === 'boolean' && typeof v !== 'boolean') return fail('not a boolean');
  if (type === 'null' && v !== null) return fail('not null');
  if (type !== undefined && !['object', 'array', 'string', 'integer', 'boolean', 'null'].includes(type)) throw new Error(`${at}: type ${type}`);
  if ('const' in s && v !== s.const) return fail('not the constant');
  if (s.anyOf && !(s.anyOf as Schema[]).some((alt) => validate(alt, v, at).length === 0)) return fail('no alternative matches');
  if (isObject) {
    const props = (s.properties ?? {}) as Record<string, Schema>;
    const patterns = Object.entries((s.patternProperties ?? {}) as Record<string, Schema>);
    for (const [k, x] of Object.entries(v as object)) {
      const byPattern = patterns.find(([re]) => new RegExp(re, 'u').test(k));
      if (props[k]) errors.push(...validate(props[k], x, `${at}/${k}`));
      else if (byPattern) errors.push(...validate(byPattern[1], x, `${at}/${k}`));
      else if (s.additionalProperties === false || patterns.length > 0) errors.push(`${at}/${k}: unknown key`);
    }
  }
  if (Array.isArray(v)) {
    if (typeof s.minItems === 'number' && v.length < s.minItems) errors.push(`${at}: too few items`);
    if (s.uniqueItems === true && new Set(v.map((x) => JSON.stringify(x))).size !== v.length) errors.push(`${at}: items repeat`);
    if (s.items) v.forEach((x, i) => errors.push(...validate(s.items as Schema, x, `${at}/${i}`)));
  }
  if (typeof v === 'number') {
    if (typeof s.minimum === 'number' && v < s.minimum) errors.push(`${at}: below minimum`);
    if (typeof s.maximum === 'number' && v > s.maximum) errors.push(`${at}: above maximum`);
  }
  if (typeof v === 'string') {
    if (typeof s.minLength === 'number' && [...v].length < s.minLength) errors.push(`${at}: too short`);
    if (typeof s.maxLength === 'number' && [...v].length > s.maxLength) errors.push(`${at}: too long`);
    if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) errors.push(`${at}: does not match ${s.pattern}`);
  }
  return errors;
}

test('the published schema accepts the default config.json and the README example, and rejects bad ones', (t) => {
  const schema = shipped();
  t.deepEqual(validate(schema, JSON.parse(defaultConfigText('file:///opt/apns-proxy/config.schema.json'))), []);
  t.deepEqual(validate(schema, JSON.parse(defaultConfigText('file:///usr/lib/apns-proxy/config.schema.json'))), []);
  t.deepEqual(validate(schema, {}), []);
  const blocks = readmeBlocks();
  t.true(blocks.length > 0);
  for (const b of blocks) t.deepEqual(validate(schema, JSON.parse(b)), []);
  t.deepEqual(validate(schema, { couriers: { last: 70000 } }), ['/couriers/last: above maximum']);
  t.deepEqual(validate(schema, { $schema: 'x', dns: { listn: [] } }), ['/dns/listn: unknown key']);
  t.deepEqual(validate(schema, { log: { level: 'verbose' } }), ['/log/level: no alternative matches']);
  // the validator is not a yes-machine: the same defaults with one bad value fail
  const bad = JSON.parse(defaultConfigText('file:///x')) as { dns: { ttl: unknown } };
  bad.dns.ttl = -1;
  t.deepEqual(validate(schema, bad), ['/dns/ttl: below minimum']);
});

// What only the code checks (after the schema): host bits, cron syntax, DNS names, cross-field rules.
const CODE_ONLY = new Set([
  'prefix with host bits', 'first after last', 'CIDR with host bits', 'bad schedule',
  'last beyond what the /24 holds with courier 0', 'last beyond what the /24 holds',
  ...unsafe.map(([title]) => title),
]);

test('the published schema rejects every bad config of the tables except the code-only checks, which it accepts', (t) => {
  const schema = shipped();
  for (const [title, input, key] of [...bad, ...unsafe]) {
    const errors = validate(schema, input);
    if (CODE_ONLY.has(title)) t.deepEqual(errors, [], `${title}: the schema leaves it to the code`);
    else t.true(errors.length > 0, `${title}: the schema rejects it (${key})`);
  }
  t.true(validate(schema, { couriers: { template: '{n}_courier.push.apple.com' } }).length === 0, 'DNS names: code only');
});

test('the schema\'s address patterns agree with the code\'s parsers (net.ts): never stricter, as strict where they can be', (t) => {
  const samples = [
    '', '10.100.100.0/24', '10.100.100.7/24', '10.100.100.0', '0.0.0.0/0', '255.255.255.255/32', '256.1.1.0/24', '010.1.1.0/24',
    '10.1.1.0/016', '17.0.0.0/08', '17.1.2.3', '1.2.3.4/33', '1.2.3/24', 'fd00::/8', 'FD00::/64', 'fd00::/064', 'fd00::/0064',
    'fd00::/128', 'fd00::/129', '::/0', 'fe80::1%eth0/64', '::1', '[::1]:53', '[::1]', '::ffff:1.2.3.4', '[fe80::1%eth0]:53',
    'fe80::1%eth0', '1.2.3.4:0', '1.2.3.4:1', '1.2.3.4:65535', '1.2.3.4:65536', '1.2.3.4:99999', '1.2.3.4:053', 'dns.google',
    '1.2.3.4:', '[1.2.3.4]:53', '1:2:3:4:5:6:7:8:9', 'g::1', '2001:db8::1', '[2001:db8::1]:853', '1.2.3.4:5/8', ' 1.2.3.4',
  ];
  const schema = shipped();
  const props = schema.properties as Record<string, Schema>;
  const dns = (props.dns!.properties as Record<string, Schema>);
  const matches = (s: Schema, v: string): boolean => validate(s, v).length === 0;
  for (const v of samples) {
    const cidr = parseCidr4(v);
    const hp = parseHostPort(v, 53);
    // IPv4 networks: exactly the code's syntax (host bits are the code's to report)
    t.is(matches(props.vipPrefix!, v), cidr !== 'syntax' && /\/(?:1[6-9]|2\d|30)$/.test(v), `vipPrefix ${JSON.stringify(v)}`);
    t.is(matches(props.allowedUpstreamNets!.items as Schema, v), cidr !== 'syntax', `allowedUpstreamNets ${JSON.stringify(v)}`);
    // addresses: never stricter; exactly the code's for everything but bare IPv6 (left to node:net)
    const hostPortSchema = props.upstreamDns!.items as Schema;
    if (hp) t.true(matches(hostPortSchema, v), `upstreamDns ${JSON.stringify(v)}`);
    if (!/:.*:/.test(v)) t.is(matches(hostPortSchema, v), hp !== undefined, `upstreamDns ${JSON.stringify(v)}`);
    // client networks: never stricter than the code (IPv4 as above, IPv6 by node:net and a length 0..128)
    const v6 = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(v);
    const client = v.includes(':') ? v6 !== null && parseHostPort(v6[1]!, 0)?.family === 6 && Number(v6[2]) <= 128 : cidr !== 'syntax';
    if (client) t.true(matches(dns.allowClients!.items as Schema, v), `dns.allowClients ${JSON.stringify(v)}`);
    if (!v.includes(':')) t.is(matches(dns.allowClients!.items as Schema, v), client, `dns.allowClients ${JSON.stringify(v)}`);
  }
});

test('an editor sees a description and a default for every key, and a message for every pattern', (t) => {
  const walk = (s: Schema, at: string): void => {
    const props = (s.properties ?? {}) as Record<string, Schema>;
    t.false(s.additionalProperties, `${at || '(top level)'}: unknown keys are errors`);
    for (const [key, p] of Object.entries(props)) {
      const path = at ? `${at}.${key}` : key;
      t.true(typeof p.description === 'string' && (p.description as string).length > 10, `${path} has a description`);
      if (key === '$schema') continue;
      t.true('default' in p, `${path} has a default`);
      t.deepEqual(validate(p, p.default), [], `${path}'s default is valid`);
      for (const node of [p, p.items as Schema | undefined]) {
        if (node?.pattern) t.true(typeof node.errorMessage === 'string', `${path}: a pattern has an errorMessage`);
      }
      if (p.type === 'object' && p.properties) walk(p, path);
    }
  };
  const schema = shipped();
  walk(schema, '');
  t.deepEqual(Object.fromEntries(Object.entries(schema.properties as Record<string, Schema>).filter(([k]) => k !== '$schema').map(([k, p]) => [k, p.default])),
    JSON.parse(JSON.stringify(DEFAULTS)));
});
