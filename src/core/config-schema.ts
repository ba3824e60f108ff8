// The configuration contract as one TypeBox schema: the source of the Config type (config.ts), of the
// defaults (each key's `default`), and of the published JSON Schema (config.schema.json, which
// config.json names in "$schema" so an editor completes and checks it). What JSON Schema cannot say
// (CIDR host bits, cron syntax, DNS label lengths, cross-field rules) stays as code in config.ts.
//
// Each string with a `pattern` carries `errorMessage` (a keyword editors such as VS Code show instead
// of "does not match pattern"); parseConfig uses the same text in its ConfigError.
//
// config.ts does not load this module (nor TypeBox: ~8 MB of the daemon's memory) at run time: it
// loads config-contract.generated.ts, which `npm run schema` writes from contractModuleText() below.
import { type Static, type TProperties, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

// A dotted quad as parseIPv4 takes it: decimal octets 0..255 without leading zeros.
const OCTET = '(?:0|[1-9]\\d?|1\\d\\d|2[0-4]\\d|25[0-5])';
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
// An IPv4 CIDR as parseCidr4 takes it: a prefix length 0..32 without leading zeros, or none (/32).
const CIDR4 = `${IPV4}(?:/(?:\\d|[12]\\d|3[0-2]))?`;
// IPv6 is left to the code (node:net isIP); the schema checks the characters, at least two colons
// (which tells it from IPv4:port) and, for a CIDR, the length 0..128.
const IPV6 = '[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*';
const PORT = '(?:[1-9]\\d{0,3}|[1-5]\\d{4}|6[0-4]\\d{3}|65[0-4]\\d\\d|655[0-2]\\d|6553[0-5])';
const ZONE = '(?:%[0-9A-Za-z.:-]+)?';

export const PATTERNS = {
  vipPrefix: `^${IPV4}/(?:1[6-9]|2\\d|30)$`,
  setId: '^[a-z][a-z0-9_-]{0,31}$',
  hostname: '^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\\.?$',
  cidr4: `^${CIDR4}$`,
  anyCidr: `^(?:${CIDR4}|${IPV6}/(?:0{0,2}\\d|0?[1-9]\\d|1[01]\\d|12[0-8]))$`,
  hostPort: `^(?:${IPV4}(?::${PORT})?|\\[${IPV6}${ZONE}\\](?::${PORT})?|${IPV6}${ZONE})$`,
  template: '^(?![\\s\\S]*\\{n\\}[\\s\\S]*\\{n\\})[\\s\\S]*\\{n\\}',
  nftTable: '^[A-Za-z][A-Za-z0-9_]{0,31}$',
  absolutePath: '^/',
} as const;

const int = (min: number, max: number, def: number, description: string) =>
  Type.Optional(Type.Integer({ description, default: def, minimum: min, maximum: max }));
const bool = (def: boolean, description: string) => Type.Optional(Type.Boolean({ description, default: def }));
const text = (def: string, description: string, pattern?: string, errorMessage?: string) =>
  Type.Optional(Type.String({ description, default: def, minLength: 1, ...(pattern ? { pattern, errorMessage } : {}) }));
const cidr4 = Type.String({ minLength: 1, pattern: PATTERNS.cidr4, errorMessage: 'must be an IPv4 CIDR like 17.0.0.0/8' });
const hostPort = (port: number) => Type.String({
  minLength: 1, pattern: PATTERNS.hostPort,
  errorMessage: `must be an IP address with optional port, like 192.0.2.1 or 192.0.2.1:${port}`,
});
const list = <T extends TSchema>(item: T, def: readonly Static<T>[], description: string, opts: { minItems?: number; uniqueItems?: boolean } = {}) =>
  Type.Optional(Type.Array(item, { description, default: def, ...opts }));
const oneOf = <const L extends string>(values: readonly [L, ...L[]], def: L, description: string, errorMessage: string) =>
  Type.Optional(Type.Union(values.map((v) => Type.Literal(v)), { description, default: def, errorMessage }));

/** An object with only these keys; its `default` is its keys' defaults (an editor inserts it whole). */
function section<P extends TProperties>(description: string, properties: P) {
  const def = Object.fromEntries(Object.entries(properties).map(([k, s]) => [k, (s as { default?: unknown }).default]));
  return Type.Optional(Type.Object(properties, { description, default: def, additionalProperties: false }));
}

const port = Type.Integer({ minimum: 1, maximum: 65535 });
const ports = (description: string) => Type.Optional(Type.Array(port, { description, uniqueItems: true }));

/**
 * One name set in config.json. Every key is optional here: a default set's missing keys come from
 * its default, and config.ts checks that a new set is complete (numbered: template + vipPrefix;
 * exact: names) and not both.
 */
const NameSetSchema = Type.Object({
  enabled: Type.Optional(Type.Boolean({ description: 'false turns the set off (default true).' })),
  template: Type.Optional(Type.String({ minLength: 1, pattern: PATTERNS.template, errorMessage: 'must contain "{n}" exactly once', description: 'A numbered set: the name with {n}.' })),
  first: Type.Optional(Type.Integer({ minimum: 0, maximum: 65534, description: 'A numbered set: first N (default 0).' })),
  last: Type.Optional(Type.Integer({ minimum: 0, maximum: 65534, description: 'A numbered set: last N (default 200).' })),
  vipPrefix: Type.Optional(Type.String({ minLength: 1, pattern: PATTERNS.vipPrefix, errorMessage: 'must be an IPv4 network /16../30 like 10.100.101.0/24', description: 'A numbered set: its prefix; N gets network + N, 0 broadcast − 1.' })),
  names: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 254, pattern: PATTERNS.hostname, errorMessage: 'must be a DNS name like init.push.apple.com' }), {
    description: 'An exact set: its host names (VIPs from vipPool).', minItems: 1, uniqueItems: true,
  })),
  tcp: ports('TCP ports forwarded to its names.'),
  udp: ports('UDP ports forwarded to its names.'),
  allowedUpstreamNets: Type.Optional(Type.Array(cidr4, { description: 'Narrows allowedUpstreamNets for this set (each inside one of them).', minItems: 1 })),
}, { additionalProperties: false });

const DEFAULT_NAME_SETS = {
  sandbox: { enabled: true, template: '{n}-courier.sandbox.push.apple.com', first: 0, last: 200, vipPrefix: '10.100.101.0/24', tcp: [5223, 443], udp: [] },
  bag: { enabled: true, names: ['init.push.apple.com', 'init-p01st.push.apple.com', 'init.sandbox.push.apple.com'], tcp: [80, 443], udp: [] },
  provider: { enabled: true, names: ['api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com'], tcp: [443, 2197], udp: [] },
};

export const ConfigSchema = Type.Object({
  $schema: Type.Optional(Type.String({ description: 'Where editors find this schema, e.g. file:///opt/apns-proxy/config.schema.json (apns-proxy ignores it).', minLength: 1 })),
  vipPrefix: text('10.100.100.0/24',
    'The production couriers\' prefix (/16../30): courier N ≥ 1 gets network + N, courier 0 the last usable address (broadcast − 1). Must be routed to this router. Any number of client networks share it.',
    PATTERNS.vipPrefix, 'must be an IPv4 network /16../30 like 10.100.100.0/24 (one VIP per courier: network + N, courier 0 at broadcast − 1)'),
  ports: list(port, [5223, 443], 'TCP ports forwarded to the production couriers (APNs: 5223, 443 as fallback).',
    { minItems: 1, uniqueItems: true }),
  couriers: section('The production courier names and their range (the name set "couriers").', {
    template: text('{n}-courier.push.apple.com',
      'Courier name with {n}; names are matched strictly (no leading zeros, first..last).',
      PATTERNS.template, 'must contain "{n}" exactly once'),
    first: int(0, 65534, 0, 'First courier number (apsd picks 0..count: 0 happens), at most couriers.last.'),
    last: int(0, 65534, 200, 'Last courier number; must fit vipPrefix (a /24 holds 0..253, a /23 0..509).'),
  }),
  nameSets: Type.Optional(Type.Record(Type.String({ pattern: PATTERNS.setId }), NameSetSchema, {
    description: 'Further name sets by id, merged over the defaults (sandbox couriers, the bag hosts, the provider API hosts): '
      + '{"sandbox": {"enabled": false}} turns one off; a new id adds a set. A numbered set has template/first/last/vipPrefix, an exact set names; both have tcp/udp.',
    default: DEFAULT_NAME_SETS, additionalProperties: false,
    errorMessage: 'set ids are a lower-case letter followed by up to 31 letters, digits, "-" or "_"',
  })),
  vipPool: text('10.100.102.0/24', 'IPv4 prefix the exact-name sets take their VIPs from: a name keeps its VIP across refreshes and restarts (state file).',
    PATTERNS.vipPrefix, 'must be an IPv4 network /16../30 like 10.100.102.0/24'),
  upstreamDns: list(hostPort(53), ['8.8.8.8'],
    'Resolvers tried in order (IP or IP:port, IPv4 or [IPv6]:port); the next is tried on failure. Used for courier names and for forwarded names.',
    { minItems: 1 }),
  allowedUpstreamNets: list(cidr4, ['17.0.0.0/8'],
    'IPv4 CIDRs (/8 or narrower, not overlapping vipPrefix) courier addresses must be in; others are never programmed or connected to.',
    { minItems: 1 }),
  resolver: section('The courier resolver.', {
    timeoutMs: int(50, 60000, 2000, 'Per-server timeout of one DNS query, ms.'),
    concurrency: int(1, 256, 32, 'Courier names resolved in parallel.'),
  }),
  dns: section('The DNS server devices query.', {
    listen: list(hostPort(53), ['0.0.0.0:53'], 'IP:port addresses the DNS server listens on, UDP and TCP; [] turns it off. Changes need a restart.'),
    allowClients: list(Type.String({
      minLength: 1, pattern: PATTERNS.anyCidr, errorMessage: 'must be an IPv4 or IPv6 CIDR like 192.168.0.0/16 or fd00::/8',
    }), ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8'],
    'IPv4/IPv6 CIDRs allowed to query; everyone else gets REFUSED over UDP, and their TCP connections are closed at accept.'),
    ttl: int(0, 86400, 30, 'TTL of the VIP answers, seconds.'),
    rateLimit: int(0, 1_000_000, 2000, 'Queries per second per client address; 0 = no limit.'),
    forwardTimeoutMs: int(50, 60000, 2000, 'Per upstream server, for forwarded (non-courier) names, ms; then SERVFAIL.'),
    maxForwards: int(1, 65535, 512, 'Forwarded queries in flight at most, one client address at most a quarter of them; beyond either, SERVFAIL.'),
    tcpMaxConnections: int(1, 65535, 256, 'DNS-over-TCP clients at once.'),
    tcpIdleTimeoutMs: int(100, 3_600_000, 10000, 'A DNS-over-TCP client that sends no complete query and gets no answer for this long (ms) is disconnected.'),
    tcpMaxPerClient: int(1, 65535, 16, 'DNS-over-TCP connections one client address may hold at once; more are closed at accept.'),
    tcpFrameTimeoutMs: int(100, 60000, 2000, 'A DNS-over-TCP query must arrive whole within this many ms of its first byte, else the connection is closed.'),
  }),
  refresh: section('Refresh cycles (resolving the couriers and updating the kernel map).', {
    schedule: text('* * * * *', 'Cron expression (5 fields, or 6 with seconds first; local time) for refresh cycles.'),
    maxStaleSeconds: int(0, 365 * 86400, 86400, 'How long last-known-good addresses stay mapped while resolution fails, seconds.'),
  }),
  fallback: section('The userspace fallback for couriers without a mapping (TPROXY + policy routing).', {
    enabled: bool(true, 'Run the fallback. Changes need a restart.'),
    port: int(1, 65535, 15223, 'Its transparent listener on 127.0.0.1. Changes need a restart.'),
    mark: int(1, 0xffffffff, 42, 'The packet mark of its policy routing (ip rule fwmark MARK lookup TABLE).'),
    // 253..255 are the kernel's default, main and local tables.
    table: int(1, 252, 42, 'The routing table of its policy routing (1..252: 253..255 are the kernel\'s).'),
    resolveTimeoutMs: int(50, 60000, 1000, 'How long a client waits while its courier is resolved, ms.'),
    connectTimeoutMs: int(50, 60000, 3000, 'Per courier address tried, ms.'),
    idleTimeoutSeconds: int(1, 30 * 86400, 4 * 3600, 'A relayed connection idle this long is closed, seconds (APNs connections are long-lived and mostly idle).'),
    maxConnections: int(1, 1_000_000, 8192, 'Relayed connections at once; beyond it, new ones are reset. Two descriptors each.'),
  }),
  direct: section('Devices that connect to an Apple address directly instead of a VIP (an address cached before they used this router, or one learnt some other way).', {
    forward: bool(true, 'A new connection to an address some name maps to now, on that name\'s set\'s ports, is forwarded and source-NATed like a VIP connection (its conntrack entry gets direct.mark; an operator forward chain with policy drop must accept that mark: doctor checks). false: such connections are left to the router\'s own forwarding, and never reset.'),
    reset5223: bool(true, 'Any other new TCP connection to allowedUpstreamNets on port 5223 is answered at once with a TCP reset, so the device gives up on that address and asks DNS instead of waiting for a timeout.'),
    reset443: bool(false, 'The same on port 443. Off by default: on a router that reaches the internet, 443 to allowedUpstreamNets carries every other Apple service too.'),
    mark: int(1, 0xffffffff, 0x20000000, 'The conntrack mark bits of direct flows: ORed into ct mark (other users of ct mark keep their bits), matched with ct mark & MARK == MARK.'),
  }),
  nft: section('The nftables table.', {
    table: text('apns_proxy', 'Our nftables table (family inet).',
      PATTERNS.nftTable, 'must be a letter followed by up to 31 letters, digits or underscores'),
    masquerade: bool(true, 'Source-NAT our forwarded flows to the router\'s address (turn off only when couriers route back through this router anyway).'),
    snat: Type.Optional(Type.Union([Type.Null(), Type.String({ pattern: `^${IPV4}$` })], {
      description: 'null, or the shared upstream-side address of a router pair: our flows are source-NATed to it instead of masqueraded (it takes precedence over masquerade).',
      default: null, errorMessage: 'must be null or an IPv4 address (the pair\'s shared upstream-side address), like 203.0.113.1',
    })),
  }),
  ha: section('This router as one of a pair (keepalived + conntrackd): doctor checks the pair.', {
    enabled: bool(false, 'This router is one of a pair: doctor checks conntrackd, keepalived\'s state, the shared address and the sysctls.'),
    conntrackdConfig: text('/etc/conntrackd/conntrackd.conf', 'The conntrackd configuration doctor reads (where scripts/install.sh --ha renders it).',
      PATTERNS.absolutePath, 'must be an absolute path'),
    stateFile: text('/run/apns-proxy/ha-state', 'Where the keepalived notify script writes this router\'s state (MASTER, BACKUP, FAULT).',
      PATTERNS.absolutePath, 'must be an absolute path'),
  }),
  metrics: section('Prometheus metrics and health.', {
    listen: list(hostPort(9523), ['127.0.0.1:9523'], 'Where /metrics and /healthz are served; [] turns it off.'),
  }),
  stateDir: text('/var/lib/apns-proxy', 'Last-known-good state, the control socket and the run lock. The service\'s StateDirectory= is /var/lib/apns-proxy.',
    PATTERNS.absolutePath, 'must be an absolute path'),
  log: section('What the daemon logs and how (to stderr: the journal under systemd).', {
    level: oneOf(['error', 'warn', 'info', 'debug'], 'info', 'error, warn, info or debug (debug logs every DNS query and every fallback connection).',
      'must be one of error, warn, info, debug'),
    format: oneOf(['text', 'json'], 'text', 'text for journald, json for log shippers.', 'must be "text" or "json"'),
  }),
}, {
  title: 'apns-proxy configuration',
  description: 'apns-proxy\'s /etc/apns-proxy/config.json. Every key is optional and defaults to the value shown; unknown keys are errors.',
  additionalProperties: false,
});

/** What config.json may hold (every key optional). */
export type ConfigFile = Static<typeof ConfigSchema>;

/** The published JSON Schema (config.schema.json): the TypeBox schema as plain JSON, draft-07. */
export function publishedSchema(): Record<string, unknown> {
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown> };
}

/** config.schema.json's text, as committed and shipped. */
export function publishedSchemaText(): string {
  return `${JSON.stringify(publishedSchema(), null, 2)}\n`;
}

/** The schema's defaults in the shape of config.json ($schema aside): each key's `default`. */
export function schemaDefaults(): Record<string, unknown> {
  return Object.fromEntries(Object.entries(ConfigSchema.properties)
    .filter(([key]) => key !== '$schema')
    .map(([key, s]) => [key, (s as { default?: unknown }).default]));
}

/** What TypeBox's Errors never reads: the schema literal leaves these keywords out. */
const DOCUMENTATION = new Set(['title', 'description', 'default']);

/**
 * A schema as a JavaScript literal, TypeBox's symbol keys (Symbol.for('TypeBox.Kind') and the like,
 * which JSON drops and TypeBox's Errors dispatches on) included, its documentation keywords not
 * (`names` says the object is a map of names, such as properties, whose keys all stay).
 */
function literal(v: unknown, indent: string, names = false): string {
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    return v.length === 0 ? '[]' : `[\n${v.map((x) => `${inner}${literal(x, inner)},\n`).join('')}${indent}]`;
  }
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string | symbol, unknown>;
    const entries = [
      ...Object.keys(o).filter((k) => names || !DOCUMENTATION.has(k))
        .map((k) => `${JSON.stringify(k)}: ${literal(o[k], inner, !names && (k === 'properties' || k === 'patternProperties'))}`),
      ...Object.getOwnPropertySymbols(o).map((sym) => {
        const key = Symbol.keyFor(sym);
        if (key === undefined) throw new Error(`a schema symbol that is not Symbol.for(): ${String(sym)}`);
        return `[Symbol.for(${JSON.stringify(key)})]: ${literal(o[sym], inner)}`;
      }),
    ];
    return entries.length === 0 ? '{}' : `{\n${entries.map((e) => `${inner}${e},\n`).join('')}${indent}}`;
  }
  if (typeof v === 'string' || typeof v === 'boolean' || v === null || (typeof v === 'number' && Number.isFinite(v))) return JSON.stringify(v);
  throw new Error(`cannot write ${typeof v} ${String(v)} as a literal`);
}

/**
 * src/core/config-contract.generated.ts, which config.ts loads instead of TypeBox (`npm run schema`
 * writes it; a unit test fails when the committed file differs): the check TypeCompiler generates
 * for the schema (plain JavaScript, no imports), the defaults as plain data, and the schema itself as
 * a literal that only the error path builds, to let TypeBox's Errors name the first problem.
 */
export function contractModuleText(): string {
  const code = TypeCompiler.Code(ConfigSchema, [], { language: 'javascript' });
  // Compile() passes kind (custom types) and format (string formats) in as well; this schema needs neither.
  if (/\b(?:kind|format)\(/.test(code)) throw new Error('the schema needs TypeBox\'s kind() or format() registries: the generated check cannot stand alone');
  // The JavaScript compiles as TypeScript inside a function typed (value: any) => boolean, but for
  // Object.entries(), whose entries TypeScript would type unknown (then not indexable once narrowed).
  const body = code.replace(/\bObject\.entries\(/g, 'Object.entries<any>(').split('\n').map((l) => `  ${l}`).join('\n');
  return `// Generated by \`npm run schema\` from src/core/config-schema.ts (the TypeBox schema); do not edit.
// config.ts loads this module instead of TypeBox (whose modules cost the daemon ~8 MB): checkConfig
// is TypeBox's TypeCompiler.Code(ConfigSchema), DEFAULTS each key's default, and configSchema() the
// schema itself, built only when checkConfig refuses a value, for TypeBox's Errors to name why.

/**
 * The key the generated check dedupes uniqueItems lists by (TypeBox's Compile passes Value.Hash): equal
 * for equal items, different for different ones (strings quoted, so no list of them reads as another).
 */
function hash(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return \`[\${value.map(hash).join(',')}]\`;
  if (typeof value === 'object' && value !== null) {
    return \`{\${Object.keys(value).sort().map((k) => \`\${JSON.stringify(k)}:\${hash((value as Record<string, unknown>)[k])}\`).join(',')}}\`;
  }
  return Object.is(value, -0) ? '-0' : \`\${typeof value}:\${String(value)}\`;
}

/** True when the value is what ConfigSchema describes (TypeBox's compiled check, as generated). */
export const checkConfig: (value: unknown) => boolean = (function (): (value: any) => boolean {
${body}
})();

/** Each key's default, in the shape of config.json ($schema aside). */
export const DEFAULTS = ${JSON.stringify(schemaDefaults(), null, 2)};

/** ConfigSchema as TypeBox builds it (its symbol keys included; title, description and default left out), for TypeBox's Errors. */
export function configSchema(): object {
  return ${literal(ConfigSchema, '  ')};
}
`;
}
