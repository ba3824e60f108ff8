// Parses, validates and fills defaults for config.json (pure: the caller reads the file).
// Every problem is reported as one ConfigError naming the dotted key and the bad value.
import cron from 'node-cron';
import { ConfigError } from './errors.js';
import { type Cidr4, type HostPort, formatHostPort, parseCidr4, parseHostPort, parseIPv4 } from './net.js';

export interface Config {
  readonly vipPrefix: Cidr4;                 // always a /24
  readonly ports: readonly number[];
  readonly couriers: { readonly template: string; readonly first: number; readonly last: number };
  readonly upstreamDns: readonly HostPort[];
  readonly allowedUpstreamNets: readonly Cidr4[];
  readonly resolver: { readonly timeoutMs: number; readonly concurrency: number };
  readonly dns: {
    readonly listen: readonly HostPort[];
    readonly allowClients: readonly string[];  // CIDRs, IPv4 or IPv6, validated
    readonly ttl: number;
    readonly rateLimit: number;                // queries per second per client, 0 = off
    readonly forwardTimeoutMs: number;         // per upstream server, for forwarded (non-courier) queries
    readonly maxForwards: number;              // forwarded queries in flight; beyond it, SERVFAIL
    readonly tcpMaxConnections: number;
    readonly tcpIdleTimeoutMs: number;         // a TCP client silent this long is disconnected
    readonly tcpMaxPerClient: number;          // TCP connections per client address: one client cannot take every slot
    readonly tcpFrameTimeoutMs: number;        // a started TCP query frame must be complete within this
  };
  readonly refresh: { readonly schedule: string; readonly maxStaleSeconds: number };
  readonly fallback: {
    readonly enabled: boolean;
    readonly port: number;
    readonly mark: number;
    readonly table: number;
    readonly resolveTimeoutMs: number;    // resolving a courier while its client waits
    readonly connectTimeoutMs: number;    // per courier address tried
    readonly idleTimeoutSeconds: number;  // APNs connections are long-lived and mostly idle
    readonly maxConnections: number;
  };
  // snat: the shared upstream-side address of a router pair; when set, our flows are source-NATed to it
  // instead of masqueraded (it takes precedence over masquerade; README "Running a pair").
  readonly nft: { readonly table: string; readonly masquerade: boolean; readonly snat: string | null };
  // A router pair (keepalived + conntrackd): doctor checks the pair when enabled (src/ops/ha/doctor.ts).
  readonly ha: { readonly enabled: boolean; readonly conntrackdConfig: string; readonly stateFile: string };
  readonly metrics: { readonly listen: readonly HostPort[] };  // Prometheus /metrics and /healthz; [] = off
  readonly stateDir: string;
  readonly log: { readonly level: LogLevel; readonly format: 'text' | 'json' };
}

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export const DEFAULT_CONFIG_PATH = '/etc/apns-proxy/config.json';

/** The documented defaults, in the shape of the JSON file (README, Configuration). */
export const DEFAULTS = {
  vipPrefix: '10.100.100.0/24',
  ports: [5223, 443],
  couriers: { template: '{n}-courier.push.apple.com', first: 1, last: 200 },
  upstreamDns: ['8.8.8.8'],
  allowedUpstreamNets: ['17.0.0.0/8'],
  resolver: { timeoutMs: 2000, concurrency: 32 },
  dns: {
    listen: ['0.0.0.0:53'],
    allowClients: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '127.0.0.0/8'],
    ttl: 30,
    rateLimit: 2000,
    forwardTimeoutMs: 2000,
    maxForwards: 512,
    tcpMaxConnections: 256,
    tcpIdleTimeoutMs: 10000,
    tcpMaxPerClient: 16,
    tcpFrameTimeoutMs: 2000,
  },
  refresh: { schedule: '* * * * *', maxStaleSeconds: 86400 },
  fallback: {
    enabled: true, port: 15223, mark: 42, table: 42,
    resolveTimeoutMs: 1000, connectTimeoutMs: 3000, idleTimeoutSeconds: 4 * 3600, maxConnections: 8192,
  },
  nft: { table: 'apns_proxy', masquerade: true, snat: null as string | null },
  ha: { enabled: false, conntrackdConfig: '/etc/conntrackd/conntrackd.conf', stateFile: '/run/apns-proxy/ha-state' },
  metrics: { listen: ['127.0.0.1:9523'] },
  stateDir: '/var/lib/apns-proxy',
  log: { level: 'info', format: 'text' },
} as const;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Rejects keys the contract does not know: a typo must not silently fall back to a default. */
function checkKeys(obj: Obj, known: object, path: string): void {
  const allowed = Object.keys(known);
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) {
      const full = path ? `${path}.${key}` : key;
      throw new ConfigError(full, obj[key], `unknown key (known here: ${allowed.join(', ')})`);
    }
  }
}

function section(raw: Obj, key: string, path: string): Obj {
  const v = raw[key];
  if (v === undefined) return {};
  if (!isObj(v)) throw new ConfigError(path, v, 'must be an object');
  return v;
}

/** A key that is absent takes its default; an explicit null is a type error, not a default. */
function pick(obj: Obj, key: string, fallback: unknown): unknown {
  return obj[key] === undefined ? fallback : obj[key];
}

function int(v: unknown, key: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(key, v, `must be an integer in ${min}..${max}`);
  }
  return v;
}

function bool(v: unknown, key: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(key, v, 'must be true or false');
  return v;
}

function str(v: unknown, key: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(key, v, 'must be a non-empty string');
  return v;
}

function list<T>(v: unknown, key: string, item: (x: unknown, k: string) => T, allowEmpty = false): T[] {
  if (!Array.isArray(v)) throw new ConfigError(key, v, 'must be a list');
  if (v.length === 0 && !allowEmpty) throw new ConfigError(key, v, 'must not be empty');
  return v.map((x, i) => item(x, `${key}[${i}]`));
}

function cidr4(v: unknown, key: string): Cidr4 {
  const text = str(v, key);
  const parsed = parseCidr4(text);
  if (parsed === 'syntax') throw new ConfigError(key, v, 'must be an IPv4 CIDR like 17.0.0.0/8');
  if (parsed === 'host-bits') throw new ConfigError(key, v, 'has host bits set after the prefix length');
  return parsed;
}

/** IPv4 or IPv6 CIDR (DNS clients may come over IPv6). */
function anyCidr(v: unknown, key: string): string {
  const text = str(v, key);
  if (!text.includes(':')) return cidr4(v, key).text;
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text);
  const len = m ? Number(m[2]) : NaN;
  if (!m || parseHostPort(m[1]!, 0)?.family !== 6 || len > 128) {
    throw new ConfigError(key, v, 'must be an IPv4 or IPv6 CIDR like 192.168.0.0/16 or fd00::/8');
  }
  return text.toLowerCase();
}

function hostPort(v: unknown, key: string, defaultPort: number): HostPort {
  const text = str(v, key);
  const hp = parseHostPort(text, defaultPort);
  if (!hp) throw new ConfigError(key, v, `must be an IP address with optional port, like 192.0.2.1 or 192.0.2.1:${defaultPort}`);
  return hp;
}

const HOSTNAME_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

function template(v: unknown, key: string): string {
  const t = str(v, key);
  const parts = t.split('{n}');
  if (parts.length !== 2) throw new ConfigError(key, v, 'must contain "{n}" exactly once');
  const sample = t.replace('{n}', '254').replace(/\.$/, '');
  if (sample.length > 253 || !sample.split('.').every((l) => HOSTNAME_LABEL.test(l)) || !sample.includes('.')) {
    throw new ConfigError(key, v, 'must be a DNS name such as "{n}-courier.push.apple.com"');
  }
  return t.replace(/\.$/, '').toLowerCase();
}

/** Validates the parsed JSON object and returns a complete Config. Throws ConfigError. */
export function parseConfig(raw: unknown): Config {
  if (!isObj(raw)) throw new ConfigError('(top level)', raw, 'must be a JSON object');
  checkKeys(raw, DEFAULTS, '');
  const get = <K extends keyof typeof DEFAULTS>(k: K): unknown => (raw[k] === undefined ? DEFAULTS[k] : raw[k]);

  const vipPrefix = cidr4(get('vipPrefix'), 'vipPrefix');
  if (vipPrefix.length !== 24) throw new ConfigError('vipPrefix', get('vipPrefix'), 'must be an IPv4 /24 (one VIP per courier, PREFIX.N)');

  const ports = list(get('ports'), 'ports', (x, k) => int(x, k, 1, 65535));
  const dupPort = ports.find((p, i) => ports.indexOf(p) !== i);
  if (dupPort !== undefined) throw new ConfigError('ports', get('ports'), `lists port ${dupPort} twice`);

  const c = section(raw, 'couriers', 'couriers');
  checkKeys(c, DEFAULTS.couriers, 'couriers');
  const first = int(pick(c, 'first', DEFAULTS.couriers.first), 'couriers.first', 1, 254);
  const last = int(pick(c, 'last', DEFAULTS.couriers.last), 'couriers.last', 1, 254);
  if (first > last) throw new ConfigError('couriers.first', first, `must not exceed couriers.last (${last})`);
  const couriers = { template: template(pick(c, 'template', DEFAULTS.couriers.template), 'couriers.template'), first, last };

  const upstreamDns = list(get('upstreamDns'), 'upstreamDns', (x, k) => hostPort(x, k, 53));
  const allowedUpstreamNets = list(get('allowedUpstreamNets'), 'allowedUpstreamNets', cidr4);

  const r = section(raw, 'resolver', 'resolver');
  checkKeys(r, DEFAULTS.resolver, 'resolver');
  const resolver = {
    timeoutMs: int(pick(r, 'timeoutMs', DEFAULTS.resolver.timeoutMs), 'resolver.timeoutMs', 50, 60000),
    concurrency: int(pick(r, 'concurrency', DEFAULTS.resolver.concurrency), 'resolver.concurrency', 1, 256),
  };

  const d = section(raw, 'dns', 'dns');
  checkKeys(d, DEFAULTS.dns, 'dns');
  const dns = {
    listen: list(pick(d, 'listen', DEFAULTS.dns.listen), 'dns.listen', (x, k) => hostPort(x, k, 53), true),
    allowClients: list(pick(d, 'allowClients', DEFAULTS.dns.allowClients), 'dns.allowClients', anyCidr, true),
    ttl: int(pick(d, 'ttl', DEFAULTS.dns.ttl), 'dns.ttl', 0, 86400),
    rateLimit: int(pick(d, 'rateLimit', DEFAULTS.dns.rateLimit), 'dns.rateLimit', 0, 1_000_000),
    forwardTimeoutMs: int(pick(d, 'forwardTimeoutMs', DEFAULTS.dns.forwardTimeoutMs), 'dns.forwardTimeoutMs', 50, 60000),
    maxForwards: int(pick(d, 'maxForwards', DEFAULTS.dns.maxForwards), 'dns.maxForwards', 1, 65535),
    tcpMaxConnections: int(pick(d, 'tcpMaxConnections', DEFAULTS.dns.tcpMaxConnections), 'dns.tcpMaxConnections', 1, 65535),
    tcpIdleTimeoutMs: int(pick(d, 'tcpIdleTimeoutMs', DEFAULTS.dns.tcpIdleTimeoutMs), 'dns.tcpIdleTimeoutMs', 100, 3_600_000),
    tcpMaxPerClient: int(pick(d, 'tcpMaxPerClient', DEFAULTS.dns.tcpMaxPerClient), 'dns.tcpMaxPerClient', 1, 65535),
    tcpFrameTimeoutMs: int(pick(d, 'tcpFrameTimeoutMs', DEFAULTS.dns.tcpFrameTimeoutMs), 'dns.tcpFrameTimeoutMs', 100, 60000),
  };

  const rf = section(raw, 'refresh', 'refresh');
  checkKeys(rf, DEFAULTS.refresh, 'refresh');
  const schedule = str(pick(rf, 'schedule', DEFAULTS.refresh.schedule), 'refresh.schedule');
  if (!cron.validate(schedule)) throw new ConfigError('refresh.schedule', schedule, 'must be a cron expression like "* * * * *"');
  const refresh = {
    schedule,
    maxStaleSeconds: int(pick(rf, 'maxStaleSeconds', DEFAULTS.refresh.maxStaleSeconds), 'refresh.maxStaleSeconds', 0, 365 * 86400),
  };

  const fb = section(raw, 'fallback', 'fallback');
  checkKeys(fb, DEFAULTS.fallback, 'fallback');
  const fallback = {
    enabled: bool(pick(fb, 'enabled', DEFAULTS.fallback.enabled), 'fallback.enabled'),
    port: int(pick(fb, 'port', DEFAULTS.fallback.port), 'fallback.port', 1, 65535),
    mark: int(pick(fb, 'mark', DEFAULTS.fallback.mark), 'fallback.mark', 1, 0xffffffff),
    // 253..255 are the kernel's default, main and local tables.
    table: int(pick(fb, 'table', DEFAULTS.fallback.table), 'fallback.table', 1, 252),
    resolveTimeoutMs: int(pick(fb, 'resolveTimeoutMs', DEFAULTS.fallback.resolveTimeoutMs), 'fallback.resolveTimeoutMs', 50, 60000),
    connectTimeoutMs: int(pick(fb, 'connectTimeoutMs', DEFAULTS.fallback.connectTimeoutMs), 'fallback.connectTimeoutMs', 50, 60000),
    idleTimeoutSeconds: int(pick(fb, 'idleTimeoutSeconds', DEFAULTS.fallback.idleTimeoutSeconds), 'fallback.idleTimeoutSeconds', 1, 30 * 86400),
    maxConnections: int(pick(fb, 'maxConnections', DEFAULTS.fallback.maxConnections), 'fallback.maxConnections', 1, 1_000_000),
  };

  const n = section(raw, 'nft', 'nft');
  checkKeys(n, DEFAULTS.nft, 'nft');
  const tableName = str(pick(n, 'table', DEFAULTS.nft.table), 'nft.table');
  if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(tableName)) {
    throw new ConfigError('nft.table', tableName, 'must be a letter followed by up to 31 letters, digits or underscores');
  }
  const snatRaw = n['snat'] ?? null;  // null (the default) = no shared address
  if (snatRaw !== null && (typeof snatRaw !== 'string' || parseIPv4(snatRaw) === undefined)) {
    throw new ConfigError('nft.snat', snatRaw, 'must be null or an IPv4 address (the pair\'s shared upstream-side address), like 203.0.113.1');
  }
  const nft = { table: tableName, masquerade: bool(pick(n, 'masquerade', DEFAULTS.nft.masquerade), 'nft.masquerade'), snat: snatRaw };

  const h = section(raw, 'ha', 'ha');
  checkKeys(h, DEFAULTS.ha, 'ha');
  const absPath = (v: unknown, key: string): string => {
    const t = str(v, key);
    if (!t.startsWith('/')) throw new ConfigError(key, v, 'must be an absolute path');
    return t;
  };
  const ha = {
    enabled: bool(pick(h, 'enabled', DEFAULTS.ha.enabled), 'ha.enabled'),
    conntrackdConfig: absPath(pick(h, 'conntrackdConfig', DEFAULTS.ha.conntrackdConfig), 'ha.conntrackdConfig'),
    stateFile: absPath(pick(h, 'stateFile', DEFAULTS.ha.stateFile), 'ha.stateFile'),
  };

  const m = section(raw, 'metrics', 'metrics');
  checkKeys(m, DEFAULTS.metrics, 'metrics');
  const metrics = { listen: list(pick(m, 'listen', DEFAULTS.metrics.listen), 'metrics.listen', (x, k) => hostPort(x, k, 9523), true) };

  const stateDir = str(get('stateDir'), 'stateDir');
  if (!stateDir.startsWith('/')) throw new ConfigError('stateDir', stateDir, 'must be an absolute path');

  const l = section(raw, 'log', 'log');
  checkKeys(l, DEFAULTS.log, 'log');
  const level = pick(l, 'level', DEFAULTS.log.level);
  if (level !== 'error' && level !== 'warn' && level !== 'info' && level !== 'debug') {
    throw new ConfigError('log.level', level, 'must be one of error, warn, info, debug');
  }
  const format = pick(l, 'format', DEFAULTS.log.format);
  if (format !== 'text' && format !== 'json') throw new ConfigError('log.format', format, 'must be "text" or "json"');

  checkCrossFields({ vipPrefix, upstreamDns, allowedUpstreamNets, dns }, get('upstreamDns') as unknown[], get('allowedUpstreamNets') as unknown[]);

  return Object.freeze({
    vipPrefix, ports, couriers, upstreamDns, allowedUpstreamNets, resolver, dns, refresh, fallback, nft, ha, metrics,
    stateDir: stateDir.replace(/\/+$/, '') || '/', log: { level: level as LogLevel, format: format as 'text' | 'json' },
  });
}

/** Two IPv4 networks overlap when the shorter one contains the other's first address. */
function cidrsOverlap(a: Cidr4, b: Cidr4): boolean {
  const mask = a.length <= b.length ? a.mask : b.mask;
  return ((a.network & mask) >>> 0) === ((b.network & mask) >>> 0);
}

/** Cross-field checks: combinations that are each valid alone but unsafe together. */
function checkCrossFields(c: Pick<Config, 'vipPrefix' | 'upstreamDns' | 'allowedUpstreamNets' | 'dns'>, rawDns: unknown[], rawNets: unknown[]): void {
  c.allowedUpstreamNets.forEach((net, i) => {
    // Shorter than /8 reaches beyond any one operator's space: a poisoned answer could point anywhere.
    if (net.length < 8) {
      throw new ConfigError(`allowedUpstreamNets[${i}]`, rawNets[i], 'is wider than a /8: it would let a wrong or poisoned DNS answer make the router a relay to almost anywhere (APNs lives in 17.0.0.0/8)');
    }
    if (cidrsOverlap(net, c.vipPrefix)) {
      throw new ConfigError(`allowedUpstreamNets[${i}]`, rawNets[i], `overlaps vipPrefix ${c.vipPrefix.text}: a VIP could be programmed as a courier address (VIP → VIP)`);
    }
  });
  c.upstreamDns.forEach((up, i) => {
    const j = c.dns.listen.findIndex((l) => l.port === up.port && l.host.toLowerCase() === up.host.toLowerCase());
    if (j !== -1) {
      throw new ConfigError(`upstreamDns[${i}]`, rawDns[i], `is our own DNS listener (dns.listen[${j}] ${formatHostPort(c.dns.listen[j]!)}): forwarded queries would loop back to us`);
    }
  });
}

/** Parses config file text; JSON syntax errors become ConfigError naming the file. */
export function parseConfigText(text: string, path: string): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(path, text.length > 40 ? `${text.slice(0, 37)}...` : text, `is not valid JSON (${(err as Error).message})`);
  }
  return parseConfig(raw);
}
