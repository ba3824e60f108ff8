// Parses, validates and fills defaults for config.json (pure: the caller reads the file).
// Every problem is reported as one ConfigError naming the dotted key and the bad value.
// The contract is the TypeBox schema in config-schema.ts: it gives the types, the defaults and the
// published JSON Schema, and is checked first; what JSON Schema cannot say is checked here after it.
// TypeBox itself is not loaded on the way to a valid config (its modules cost ~8 MB of memory):
// config-contract.generated.ts, written from the schema by `npm run schema`, holds the check
// TypeBox compiles and the defaults; only a config that fails the check loads TypeBox's Errors (its
// CommonJS build, so parseConfig stays synchronous) to name the first problem.
import { createRequire } from 'node:module';
import type { TSchema } from '@sinclair/typebox';
import type { ValueError } from '@sinclair/typebox/errors';
import type { ConfigFile } from './config-schema.js';
import { DEFAULTS as SCHEMA_DEFAULTS, checkConfig, configSchema } from './config-contract.generated.js';
import { parseCron } from './cron.js';
import { ConfigError, errorMessage } from './errors.js';
import { type NameSet, PRODUCTION_SET, maxNumber, nameSetProblems } from './namesets.js';
import { type Cidr4, type HostPort, formatHostPort, parseCidr4, parseHostPort } from './net.js';

/** Every key present (the file's shape with the defaults filled in), deeply read-only. */
type Filled<T> = {
  readonly [K in keyof T]-?: Exclude<T[K], undefined> extends infer V
    ? V extends readonly (infer I)[] ? readonly I[] : V extends object ? Filled<V> : V
    : never;
};
/** T with the string values named in P replaced by what the code parses them into. */
type Parsed<T, P> = {
  readonly [K in keyof T]: K extends keyof P ? (T[K] extends string | readonly unknown[] ? P[K] : Parsed<T[K], P[K]>) : T[K];
};

/** config.json with every key at its value or default (the shape of DEFAULTS). */
export type ConfigValues = Filled<Omit<ConfigFile, '$schema'>>;

/** One entry of nameSets as config.json may write it (every key optional; merged over the default set). */
export type NameSetValues = NonNullable<ConfigFile['nameSets']>[string];

/**
 * The validated configuration: the schema's values, addresses and networks parsed. `sets` is every
 * enabled name set, the production couriers first (id "couriers", from vipPrefix, ports, couriers).
 */
export type Config = Parsed<Omit<ConfigValues, 'nameSets' | 'vipPool'>, {
  vipPrefix: Cidr4;                          // the production couriers' prefix, /16../30
  upstreamDns: readonly HostPort[];
  allowedUpstreamNets: readonly Cidr4[];
  dns: { listen: readonly HostPort[] };      // dns.allowClients stay CIDR text, IPv4 or IPv6, validated
  metrics: { listen: readonly HostPort[] };  // Prometheus /metrics and /healthz; [] = off
}> & {
  readonly nameSets: Readonly<Record<string, NameSetValues>>;  // as merged over the defaults, disabled ones included
  readonly vipPool: Cidr4;
  readonly sets: readonly NameSet[];
};

export type LogLevel = ConfigValues['log']['level'];

export const DEFAULT_CONFIG_PATH = '/etc/apns-proxy/config.json';

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** The documented defaults, in the shape of the JSON file (README, Configuration): the schema's. */
export const DEFAULTS: ConfigValues = deepFreeze(SCHEMA_DEFAULTS as unknown as ConfigValues);

/**
 * The text of a default config.json (scripts/install.sh and the Debian package write it): "$schema"
 * first, naming where config.schema.json is installed, then every key at its default.
 */
export function defaultConfigText(schemaUrl: string): string {
  return `${JSON.stringify({ $schema: schemaUrl, ...DEFAULTS }, null, 2)}\n`;
}

/** The dotted key of a TypeBox error path: /dns/listen/0 -> dns.listen[0] (walking the value). */
function dottedKey(pointer: string, raw: unknown): string {
  let key = '';
  let at: unknown = raw;
  for (const part of pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))) {
    key = Array.isArray(at) ? `${key}[${part}]` : key ? `${key}.${part}` : part;
    at = isObj(at) || Array.isArray(at) ? (at as Obj)[part] : undefined;
  }
  return key || '(top level)';
}

type TypeBoxErrors = typeof import('@sinclair/typebox/errors');
let typeboxErrors: TypeBoxErrors | undefined;

/** TypeBox's error iterator, loaded on first use (the package's CommonJS build: require is synchronous). */
function loadErrors(): TypeBoxErrors {
  return typeboxErrors ??= createRequire(import.meta.url)('@sinclair/typebox/errors') as TypeBoxErrors;
}

/** The first problem TypeBox's Errors finds with a value the generated check refused. */
function firstSchemaError(raw: unknown): ValueError | undefined {
  return loadErrors().Errors(configSchema() as TSchema, raw).First();
}

/** The problem a schema error names, in the words the hand-written checks always used. */
function problem(e: ValueError): string {
  const s = e.schema as Record<string, unknown>;
  const { ValueErrorType } = loadErrors();
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      if (s.properties === undefined) return typeof s.errorMessage === 'string' ? s.errorMessage : 'unknown key';
      return `unknown key (known here: ${Object.keys(s.properties as object).join(', ')})`;
    case ValueErrorType.Object: return 'must be an object';
    case ValueErrorType.Array: return 'must be a list';
    case ValueErrorType.ArrayMinItems: return 'must not be empty';
    case ValueErrorType.ArrayUniqueItems: {
      const seen = (e.value as unknown[]).map((x) => JSON.stringify(x));
      return `lists ${seen.find((x, i) => seen.indexOf(x) !== i)} twice`;
    }
    case ValueErrorType.Integer:
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.IntegerMaximum:
      return `must be an integer in ${s.minimum}..${s.maximum}`;
    case ValueErrorType.Boolean: return 'must be true or false';
    case ValueErrorType.String:
    case ValueErrorType.StringMinLength:
      return 'must be a non-empty string';
    case ValueErrorType.StringPattern:
    case ValueErrorType.Union:
      if (typeof s.errorMessage === 'string') return s.errorMessage;
  }
  return `is not valid here (${e.message})`;
}

/** A section's keys: those given, else their defaults (an explicit null was already refused). */
function fill(defaults: Obj, given: Obj): Obj {
  return Object.fromEntries(Object.entries(defaults).map(([key, def]) => {
    const v = given[key];
    return [key, v === undefined ? def : isObj(def) ? fill(def, v as Obj) : v];
  }));
}

function cidr4(v: string, key: string): Cidr4 {
  const parsed = parseCidr4(v);
  if (parsed === 'syntax') throw new ConfigError(key, v, 'must be an IPv4 CIDR like 17.0.0.0/8');
  if (parsed === 'host-bits') throw new ConfigError(key, v, 'has host bits set after the prefix length');
  return parsed;
}

/** IPv4 or IPv6 CIDR (DNS clients may come over IPv6). */
function anyCidr(text: string, key: string): string {
  if (!text.includes(':')) return cidr4(text, key).text;
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text);
  const len = m ? Number(m[2]) : NaN;
  if (!m || parseHostPort(m[1]!, 0)?.family !== 6 || len > 128) {
    throw new ConfigError(key, text, 'must be an IPv4 or IPv6 CIDR like 192.168.0.0/16 or fd00::/8');
  }
  return text.toLowerCase();
}

function hostPort(text: string, key: string, defaultPort: number): HostPort {
  const hp = parseHostPort(text, defaultPort);
  if (!hp) throw new ConfigError(key, text, `must be an IP address with optional port, like 192.0.2.1 or 192.0.2.1:${defaultPort}`);
  return hp;
}

const HOSTNAME_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** The schema saw "{n}" exactly once; the name around it must be a DNS name for every n. */
function template(t: string, key: string): string {
  const sample = t.replace('{n}', '254').replace(/\.$/, '');
  if (sample.length > 253 || !sample.split('.').every((l) => HOSTNAME_LABEL.test(l)) || !sample.includes('.')) {
    throw new ConfigError(key, t, 'must be a DNS name such as "{n}-courier.push.apple.com"');
  }
  return t.replace(/\.$/, '').toLowerCase();
}

/** Validates the parsed JSON object and returns a complete Config. Throws ConfigError. */
export function parseConfig(raw: unknown): Config {
  if (!isObj(raw)) throw new ConfigError('(top level)', raw, 'must be a JSON object');
  // The schema first: unknown keys, types, ranges and patterns, in the file's order (the first problem).
  if (!checkConfig(raw)) {
    const first = firstSchemaError(raw);
    if (!first) throw new ConfigError('(top level)', raw, 'fails the schema check, yet TypeBox names no problem (a bug: please report it)');
    throw new ConfigError(dottedKey(first.path, raw), first.value, problem(first));
  }
  const v = fill(DEFAULTS as unknown as Obj, raw) as unknown as ConfigValues;

  // Then what JSON Schema cannot say.
  const vipPrefix = cidr4(v.vipPrefix, 'vipPrefix');
  const { first: firstCourier, last } = v.couriers;
  if (firstCourier > last) throw new ConfigError('couriers.first', firstCourier, `must not exceed couriers.last (${last})`);
  const couriers = { template: template(v.couriers.template, 'couriers.template'), first: firstCourier, last };
  const upstreamDns = v.upstreamDns.map((x, i) => hostPort(x, `upstreamDns[${i}]`, 53));
  const allowedUpstreamNets = v.allowedUpstreamNets.map((x, i) => cidr4(x, `allowedUpstreamNets[${i}]`));
  const dns = {
    ...v.dns,
    listen: v.dns.listen.map((x, i) => hostPort(x, `dns.listen[${i}]`, 53)),
    allowClients: v.dns.allowClients.map((x, i) => anyCidr(x, `dns.allowClients[${i}]`)),
  };
  try {
    parseCron(v.refresh.schedule);
  } catch (err) {
    throw new ConfigError('refresh.schedule', v.refresh.schedule, `must be a cron expression like "* * * * *" (${errorMessage(err)})`);
  }
  const metrics = { listen: v.metrics.listen.map((x, i) => hostPort(x, `metrics.listen[${i}]`, 9523)) };

  const vipPool = cidr4(v.vipPool, 'vipPool');
  const { merged: nameSets, sets: extra } = parseNameSets(isObj(raw.nameSets) ? raw.nameSets : {}, allowedUpstreamNets);
  const sets: NameSet[] = [
    { kind: 'numbered', id: PRODUCTION_SET, template: couriers.template, first: couriers.first, last: couriers.last, prefix: vipPrefix, tcp: [...v.ports], udp: [] },
    ...extra,
  ];
  for (const s of sets) {
    if (s.kind !== 'numbered' || s.last <= maxNumber(s.prefix, s.first)) continue;
    const prod = s.id === PRODUCTION_SET;
    throw new ConfigError(prod ? 'couriers.last' : `nameSets.${s.id}.last`, s.last,
      `does not fit ${prod ? 'vipPrefix' : `nameSets.${s.id}.vipPrefix`} ${s.prefix.text}: ${s.first}..${maxNumber(s.prefix, s.first)} at most (no VIP may be the network or broadcast address; N = 0 takes broadcast − 1)`);
  }
  const problems = nameSetProblems(sets, vipPool);
  if (problems.length > 0) {
    // the first set the sentence names; a problem of the pool alone (too small) is vipPool's
    const id = firstSetNamed(problems[0]!, sets);
    const key = id === undefined ? 'vipPool' : id === PRODUCTION_SET ? 'vipPrefix' : `nameSets.${id}`;
    throw new ConfigError(key, id === undefined ? v.vipPool : id === PRODUCTION_SET ? v.vipPrefix : nameSets[id], problems[0]!);
  }

  checkCrossFields({ vipPrefix, upstreamDns, allowedUpstreamNets, dns, sets, vipPool }, v.upstreamDns, v.allowedUpstreamNets);

  return Object.freeze({
    vipPrefix, ports: [...v.ports], couriers, nameSets, vipPool, sets,
    upstreamDns, allowedUpstreamNets, resolver: { ...v.resolver }, dns,
    refresh: { ...v.refresh }, fallback: { ...v.fallback }, direct: { ...v.direct }, nft: { ...v.nft }, ha: { ...v.ha }, metrics,
    stateDir: v.stateDir.replace(/\/+$/, '') || '/', log: { ...v.log },
  });
}

const NUMBERED_KEYS = ['template', 'first', 'last', 'vipPrefix'] as const;

/**
 * nameSets merged over the defaults (a given set's keys win; a set that turns from numbered into
 * exact, or back, drops the other kind's default keys), then each enabled set checked and parsed.
 */
function parseNameSets(given: Obj, globalNets: readonly Cidr4[]): { merged: Record<string, NameSetValues>; sets: NameSet[] } {
  const defaults = DEFAULTS.nameSets as unknown as Record<string, NameSetValues>;
  const merged: Record<string, NameSetValues> = {};
  const sets: NameSet[] = [];
  for (const id of [...new Set([...Object.keys(defaults), ...Object.keys(given)])]) {
    const key = `nameSets.${id}`;
    if (id === PRODUCTION_SET) throw new ConfigError(key, given[id], 'is the production couriers\' set: configure it with vipPrefix, ports and couriers');
    const own = (given[id] ?? {}) as NameSetValues;
    const base = { ...(defaults[id] ?? {}) } as Record<string, unknown>;
    if (own.names !== undefined) for (const k of NUMBERED_KEYS) delete base[k];
    if (own.template !== undefined || own.vipPrefix !== undefined) delete base.names;
    const m = { ...base, ...own } as NameSetValues;
    merged[id] = m;
    if (m.enabled === false) continue;
    const tcp = [...(m.tcp ?? [])];
    const udp = [...(m.udp ?? [])];
    if (tcp.length + udp.length === 0) throw new ConfigError(`${key}.tcp`, tcp, 'must list at least one port (tcp or udp)');
    const nets = m.allowedUpstreamNets?.map((x, i) => {
      const net = cidr4(x, `${key}.allowedUpstreamNets[${i}]`);
      if (!globalNets.some((g) => g.length <= net.length && cidrsOverlap(g, net))) {
        throw new ConfigError(`${key}.allowedUpstreamNets[${i}]`, x, `must lie inside allowedUpstreamNets (${globalNets.map((g) => g.text).join(', ')}): a set may narrow it, never widen it`);
      }
      return net;
    });
    const common = { id, tcp, udp, ...(nets ? { allowedUpstreamNets: nets } : {}) };
    if (m.names !== undefined) {
      if (m.template !== undefined || m.vipPrefix !== undefined) throw new ConfigError(key, m, 'has both names (an exact set) and template/vipPrefix (a numbered set): choose one');
      const names = m.names.map((n, i) => hostname(n, `${key}.names[${i}]`));
      sets.push({ kind: 'names', names, ...common });
    } else {
      if (m.template === undefined || m.vipPrefix === undefined) throw new ConfigError(key, m, 'needs either names (an exact set) or template and vipPrefix (a numbered set)');
      const first = m.first ?? 0;
      const last = m.last ?? 200;
      if (first > last) throw new ConfigError(`${key}.first`, first, `must not exceed ${key}.last (${last})`);
      sets.push({ kind: 'numbered', template: template(m.template, `${key}.template`), first, last, prefix: cidr4(m.vipPrefix, `${key}.vipPrefix`), ...common });
    }
  }
  return { merged, sets };
}

function hostname(text: string, key: string): string {
  const name = text.replace(/\.$/, '').toLowerCase();
  if (name.length > 253 || !name.includes('.') || !name.split('.').every((l) => HOSTNAME_LABEL.test(l))) {
    throw new ConfigError(key, text, 'must be a DNS name like init.push.apple.com');
  }
  return name;
}

/** The set a nameSetProblems sentence names first. */
function firstSetNamed(problem: string, sets: readonly NameSet[]): string | undefined {
  let best: { id: string; at: number } | undefined;
  for (const s of sets) {
    const at = new RegExp(`(?:^|[ (])${s.id.replace(/[-]/g, '\\-')}(?=[ :(])`).exec(problem)?.index;
    if (at !== undefined && (best === undefined || at < best.at)) best = { id: s.id, at };
  }
  return best?.id;
}

/** Two IPv4 networks overlap when the shorter one contains the other's first address. */
function cidrsOverlap(a: Cidr4, b: Cidr4): boolean {
  const mask = a.length <= b.length ? a.mask : b.mask;
  return ((a.network & mask) >>> 0) === ((b.network & mask) >>> 0);
}

/** Cross-field checks: combinations that are each valid alone but unsafe together. */
function checkCrossFields(c: Pick<Config, 'vipPrefix' | 'upstreamDns' | 'allowedUpstreamNets' | 'dns' | 'sets' | 'vipPool'>, rawDns: readonly string[], rawNets: readonly string[]): void {
  c.allowedUpstreamNets.forEach((net, i) => {
    // Shorter than /8 reaches beyond any one operator's space: a poisoned answer could point anywhere.
    if (net.length < 8) {
      throw new ConfigError(`allowedUpstreamNets[${i}]`, rawNets[i], 'is wider than a /8: it would let a wrong or poisoned DNS answer make the router a relay to almost anywhere (APNs lives in 17.0.0.0/8)');
    }
    if (cidrsOverlap(net, c.vipPrefix)) {
      throw new ConfigError(`allowedUpstreamNets[${i}]`, rawNets[i], `overlaps vipPrefix ${c.vipPrefix.text}: a VIP could be programmed as a courier address (VIP → VIP)`);
    }
    for (const [what, prefix] of vipPrefixes(c)) {
      if (cidrsOverlap(net, prefix)) {
        throw new ConfigError(`allowedUpstreamNets[${i}]`, rawNets[i], `overlaps ${what} ${prefix.text}: a VIP could be programmed as an upstream address (VIP → VIP)`);
      }
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

/** Every prefix our VIPs come from, named as an operator reads it: vipPrefix, each numbered set's, the pool. */
export function vipPrefixes(c: Pick<Config, 'vipPrefix' | 'sets' | 'vipPool'>): [string, Cidr4][] {
  const out: [string, Cidr4][] = [['vipPrefix', c.vipPrefix]];
  for (const s of c.sets) if (s.kind === 'numbered' && s.id !== PRODUCTION_SET) out.push([`nameSets.${s.id}.vipPrefix`, s.prefix]);
  out.push(['vipPool', c.vipPool]);
  return out;
}
