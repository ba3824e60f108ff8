// Desired state (pure): from the previous records, this cycle's resolutions and the clock,
// decide per courier which addresses the kernel should map and in which state it is.
import type { Config } from '../core/config.js';
import { type NameEntry, PRODUCTION_SET, allocatePool, exactNames, nameEntries } from '../core/namesets.js';
import { cidrContains, inAnyCidr, parseIPv4, sortUniqueIPv4 } from '../core/net.js';
import { type DirectElement, type ElementMap, type MapElement, type PortElement, SLOTS, elementMap, sortedDirect } from '../nft/elements.js';
import type { Resolution } from '../dns/client/resolver.js';


export type CourierState = 'fresh' | 'stale' | 'absent';

/** What is remembered about one name across refreshes (persisted in the state file). */
export interface NameRecord {
  readonly name: string;                  // lower case, no trailing dot
  readonly set: string;                   // its name set's id ("couriers": the production couriers)
  readonly n: number | null;              // N in a numbered set; null for an exact name
  readonly addresses: readonly string[];  // last-known-good, sorted, inside allowedUpstreamNets
  readonly resolvedAt: number | null;     // ms epoch of the answer that gave `addresses` (or NXDOMAIN)
  readonly ttl: number | null;            // smallest TTL on the CNAME chain of that answer
  readonly exists: boolean | null;        // false: upstream said NXDOMAIN; null: never heard
  readonly checkedAt: number | null;      // ms epoch of the last attempt, successful or not
  readonly error: string | null;          // why the last attempt failed; null when it succeeded
}

/** One name as the rest of the program sees it after a cycle. */
export interface NameView extends NameRecord {
  readonly vip: string;
  readonly state: CourierState;
  readonly programmed: readonly string[];  // addresses in the kernel map (empty unless fresh/stale)
}

/** A production courier (set "couriers", n a number). */
export type CourierRecord = NameRecord;
export type CourierView = NameView;

/** Published after the kernel accepted a cycle; DNS and the fallback read it. Frozen. */
export interface Snapshot {
  readonly at: number;
  readonly names: ReadonlyMap<string, NameView>;     // every name of every enabled set, in set order
  readonly couriers: ReadonlyMap<number, NameView>;  // the production couriers by N (the same views)
  readonly pool: ReadonlyMap<string, string>;        // exact name → its pool VIP (stable)
}

/**
 * What the kernel accepted, with the configuration it was made under: the one frozen object that
 * DNS, the fallback and metrics read, so they never mix a new config with an old map.
 */
export interface Generation {
  readonly config: Config;
  readonly snapshot: Snapshot;
}

export type MappingConfig = Pick<Config, 'sets' | 'vipPrefix' | 'vipPool' | 'allowedUpstreamNets' | 'refresh'>;

export interface MappingInput {
  readonly config: MappingConfig;
  readonly previous: ReadonlyMap<string, NameRecord>;   // by name
  readonly results?: ReadonlyMap<string, Resolution>;   // by name; absent: program from state only (start-up)
  readonly pool?: ReadonlyMap<string, string>;          // the pool VIPs exact names had (state file): kept
  readonly now: number;
}

export interface MappingOutput {
  readonly snapshot: Snapshot;
  readonly warnings: readonly string[];  // addresses dropped because outside allowedUpstreamNets
}

/**
 * The one rule for every address the kernel or the fallback may get, whatever its origin (a fresh
 * answer, the state file, the live map): inside allowedUpstreamNets (the set's own, when it narrows
 * them) and never one of our own VIPs (any set's prefix, the pool).
 */
export function allowedAddress(config: Pick<Config, 'allowedUpstreamNets' | 'vipPrefix'> & Partial<Pick<Config, 'sets' | 'vipPool'>>, address: string, setId?: string): boolean {
  const a = parseIPv4(address);
  if (a === undefined || cidrContains(config.vipPrefix, a) || (config.vipPool !== undefined && cidrContains(config.vipPool, a))) return false;
  const set = setId === undefined ? undefined : config.sets?.find((s) => s.id === setId);
  for (const s of config.sets ?? []) if (s.kind === 'numbered' && cidrContains(s.prefix, a)) return false;
  return inAnyCidr(set?.allowedUpstreamNets ?? config.allowedUpstreamNets, address);
}

export function emptyRecord(entry: Pick<NameEntry, 'name' | 'set' | 'n'>): NameRecord {
  return { name: entry.name, set: entry.set, n: entry.n, addresses: [], resolvedAt: null, ttl: null, exists: null, checkedAt: null, error: null };
}

/** How logs name a name: "courier 5" for the production couriers (as always), else the name. */
export function label(r: Pick<NameRecord, 'name' | 'set' | 'n'>): string {
  return r.set === PRODUCTION_SET && r.n !== null ? `courier ${r.n}` : r.name;
}

/** Every name of the config's sets with its VIP, exact names taking stable pool VIPs (kept from `pool`). */
export function namesOf(config: Pick<Config, 'sets' | 'vipPool'>, pool: ReadonlyMap<string, string> = new Map()): { entries: NameEntry[]; pool: ReadonlyMap<string, string> } {
  const names = exactNames(config.sets);
  const allocated = allocatePool(config.vipPool, names, pool);
  // config validation refuses a pool too small; should it happen all the same, exact names get no VIP
  const assigned = allocated.ok ? allocated.assigned : new Map<string, string>();
  return { entries: nameEntries(config.sets, assigned), pool: assigned };
}

export function desiredMapping(input: MappingInput): MappingOutput {
  const { config, previous, results, now } = input;
  const warnings: string[] = [];
  const names = new Map<string, NameView>();
  const couriers = new Map<number, NameView>();
  const { entries, pool } = namesOf(config, input.pool);
  for (const entry of entries) {
    const { name, set, n } = entry;
    const before = previous.get(name);
    const prev = sanitized(before && before.set === set ? { ...before, n } : emptyRecord(entry), config, warnings);
    const res = results?.get(name);
    let record: NameRecord = prev;
    let freshNow = false;
    if (res?.kind === 'ok') {
      const sorted = sortUniqueIPv4(res.addresses);
      const allowed = sorted.filter((a) => allowedAddress(config, a, set));
      const dropped = sorted.filter((a) => !allowed.includes(a));
      if (dropped.length > 0) {
        warnings.push(`${label(entry)}: ignored ${dropped.join(',')} (outside allowedUpstreamNets)`);
      }
      if (allowed.length > 0) {
        record = { name, set, n, addresses: allowed, resolvedAt: now, ttl: res.ttl, exists: true, checkedAt: now, error: null };
        freshNow = true;
      } else {
        // A wholly foreign answer is treated as a failure: keep last-known-good, program nothing new.
        record = { ...prev, checkedAt: now, exists: true, error: `E_NOT_ALLOWED: every address (${dropped.join(',')}) is outside allowedUpstreamNets` };
      }
    } else if (res?.kind === 'nxdomain') {
      record = { name, set, n, addresses: [], resolvedAt: now, ttl: null, exists: false, checkedAt: now, error: null };
    } else if (res?.kind === 'nodata') {
      record = { name, set, n, addresses: [], resolvedAt: now, ttl: null, exists: true, checkedAt: now, error: null };
    } else if (res?.kind === 'error') {
      record = { ...prev, checkedAt: now, error: `${res.code}: ${res.message}` };
    }
    const state = stateOf(record, freshNow, now, config.refresh.maxStaleSeconds);
    const view: NameView = Object.freeze({
      ...record,
      vip: entry.vip,
      state,
      programmed: state === 'absent' ? [] : record.addresses.slice(0, SLOTS),
    });
    names.set(name, view);
    if (set === PRODUCTION_SET && n !== null) couriers.set(n, view);
  }
  return { snapshot: Object.freeze({ at: now, names, couriers, pool }), warnings };
}

/** Last-known-good passes the current allow-list too (a reload may have narrowed it; a state file may lie). */
function sanitized(record: NameRecord, config: MappingConfig, warnings: string[]): NameRecord {
  const kept = record.addresses.filter((a) => allowedAddress(config, a, record.set));
  if (kept.length === record.addresses.length) return record;
  const dropped = record.addresses.filter((a) => !kept.includes(a));
  warnings.push(`${label(record)}: dropped last-known-good ${dropped.join(',')} (outside allowedUpstreamNets)`);
  return { ...record, addresses: kept };
}

function stateOf(record: CourierRecord, freshNow: boolean, now: number, maxStaleSeconds: number): CourierState {
  if (record.addresses.length === 0 || record.resolvedAt === null) return 'absent';
  if (freshNow) return 'fresh';
  return now - record.resolvedAt <= maxStaleSeconds * 1000 ? 'stale' : 'absent';
}

/** The couriers4 elements the kernel should hold: each slot round-robin over the name's addresses, its name the comment. */
export function desiredElements(snapshot: Snapshot): ElementMap {
  const elements: MapElement[] = [];
  for (const c of snapshot.names.values()) {
    if (c.programmed.length === 0) continue;
    for (let slot = 0; slot < SLOTS; slot++) elements.push({ vip: c.vip, slot, address: c.programmed[slot % c.programmed.length]!, name: c.name });
  }
  return elementMap(elements);
}

/** Each name of the snapshot with its set's ports (TCP, then UDP); names of a set no longer configured are skipped. */
function* namePorts(config: Pick<Config, 'sets'>, snapshot: Snapshot): Generator<{ view: NameView; proto: 'tcp' | 'udp'; port: number }> {
  const bySet = new Map(config.sets.map((s) => [s.id, s]));
  for (const view of snapshot.names.values()) {
    const s = bySet.get(view.set);
    if (!s) continue;
    for (const port of s.tcp) yield { view, proto: 'tcp', port };
    for (const port of s.udp) yield { view, proto: 'udp', port };
  }
}

/** The vipports elements: every name's VIP with its set's TCP and UDP ports (whether mapped yet or not: misses go to the fallback). */
export function desiredPorts(config: Pick<Config, 'sets'>, snapshot: Snapshot): PortElement[] {
  return [...namePorts(config, snapshot)].map(({ view, proto, port }) => ({ vip: view.vip, proto, port }));
}

/**
 * The direct elements: every address the kernel maps some name to now, with that name's set's TCP
 * and UDP ports (once each, sorted). Exactly the couriers4 addresses: none while a name is absent.
 */
export function desiredDirect(config: Pick<Config, 'sets'>, snapshot: Snapshot): DirectElement[] {
  const out: DirectElement[] = [];
  for (const { view, proto, port } of namePorts(config, snapshot)) {
    for (const address of view.programmed) out.push({ address, proto, port });
  }
  return sortedDirect(out);
}

/** Human lines for what changed between two snapshots, for the info log. */
export function describeChanges(before: Snapshot | undefined, after: Snapshot): string[] {
  const lines: string[] = [];
  for (const c of after.names.values()) {
    const old = before?.names.get(c.name);
    const was = old?.programmed.join(',') ?? '';
    const now = c.programmed.join(',');
    if (was === now) continue;
    const why = c.state === 'absent' ? ` (absent: ${absentReason(c)})` : '';
    lines.push(`${label(c)}: ${was || 'none'} → ${now || 'none'}${why}`);
  }
  return lines;
}

export function absentReason(c: CourierView): string {
  if (c.exists === false) return 'NXDOMAIN';
  if (c.resolvedAt === null) return c.error ? `never resolved, ${c.error}` : 'never resolved';
  if (c.addresses.length === 0) return 'no A records';
  return 'last-known-good older than refresh.maxStaleSeconds';
}
