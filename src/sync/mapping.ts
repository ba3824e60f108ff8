// Desired state (pure): from the previous records, this cycle's resolutions and the clock,
// decide per courier which addresses the kernel should map and in which state it is.
import type { Config } from '../core/config.js';
import { courierNumbers, vipFor } from '../core/couriers.js';
import { cidrContains, inAnyCidr, parseIPv4, sortUniqueIPv4 } from '../core/net.js';
import { type ElementMap, type MapElement, SLOTS, elementMap } from '../nft/elements.js';
import type { Resolution } from '../dns/client/resolver.js';


export type CourierState = 'fresh' | 'stale' | 'absent';

/** What is remembered about one courier across refreshes (persisted in the state file). */
export interface CourierRecord {
  readonly n: number;
  readonly addresses: readonly string[];  // last-known-good, sorted, inside allowedUpstreamNets
  readonly resolvedAt: number | null;     // ms epoch of the answer that gave `addresses` (or NXDOMAIN)
  readonly ttl: number | null;            // smallest TTL on the CNAME chain of that answer
  readonly exists: boolean | null;        // false: upstream said NXDOMAIN; null: never heard
  readonly checkedAt: number | null;      // ms epoch of the last attempt, successful or not
  readonly error: string | null;          // why the last attempt failed; null when it succeeded
}

/** One courier as the rest of the program sees it after a cycle. */
export interface CourierView extends CourierRecord {
  readonly vip: string;
  readonly state: CourierState;
  readonly programmed: readonly string[];  // addresses in the kernel map (empty unless fresh/stale)
}

/** Published after the kernel accepted a cycle; DNS and the fallback read it. Frozen. */
export interface Snapshot {
  readonly at: number;
  readonly couriers: ReadonlyMap<number, CourierView>;
}

/**
 * What the kernel accepted, with the configuration it was made under: the one frozen object that
 * DNS, the fallback and metrics read, so they never mix a new config with an old map.
 */
export interface Generation {
  readonly config: Config;
  readonly snapshot: Snapshot;
}

export interface MappingInput {
  readonly config: Pick<Config, 'couriers' | 'vipPrefix' | 'allowedUpstreamNets' | 'refresh'>;
  readonly previous: ReadonlyMap<number, CourierRecord>;
  readonly results?: ReadonlyMap<number, Resolution>;  // absent: program from state only (start-up)
  readonly now: number;
}

export interface MappingOutput {
  readonly snapshot: Snapshot;
  readonly warnings: readonly string[];  // addresses dropped because outside allowedUpstreamNets
}

/**
 * The one rule for every address the kernel or the fallback may get, whatever its origin (a fresh
 * answer, the state file, the live map): inside allowedUpstreamNets and never one of our own VIPs.
 */
export function allowedAddress(config: Pick<Config, 'allowedUpstreamNets' | 'vipPrefix'>, address: string): boolean {
  const a = parseIPv4(address);
  return a !== undefined && inAnyCidr(config.allowedUpstreamNets, address) && !cidrContains(config.vipPrefix, a);
}

export function emptyRecord(n: number): CourierRecord {
  return { n, addresses: [], resolvedAt: null, ttl: null, exists: null, checkedAt: null, error: null };
}

export function desiredMapping(input: MappingInput): MappingOutput {
  const { config, previous, results, now } = input;
  const warnings: string[] = [];
  const couriers = new Map<number, CourierView>();
  for (const n of courierNumbers(config)) {
    const prev = sanitized(previous.get(n) ?? emptyRecord(n), config, warnings);
    const res = results?.get(n);
    let record: CourierRecord = prev;
    let freshNow = false;
    if (res?.kind === 'ok') {
      const sorted = sortUniqueIPv4(res.addresses);
      const allowed = sorted.filter((a) => allowedAddress(config, a));
      const dropped = sorted.filter((a) => !allowed.includes(a));
      if (dropped.length > 0) {
        warnings.push(`courier ${n}: ignored ${dropped.join(',')} (outside allowedUpstreamNets)`);
      }
      if (allowed.length > 0) {
        record = { n, addresses: allowed, resolvedAt: now, ttl: res.ttl, exists: true, checkedAt: now, error: null };
        freshNow = true;
      } else {
        // A wholly foreign answer is treated as a failure: keep last-known-good, program nothing new.
        record = { ...prev, checkedAt: now, exists: true, error: `E_NOT_ALLOWED: every address (${dropped.join(',')}) is outside allowedUpstreamNets` };
      }
    } else if (res?.kind === 'nxdomain') {
      record = { n, addresses: [], resolvedAt: now, ttl: null, exists: false, checkedAt: now, error: null };
    } else if (res?.kind === 'nodata') {
      record = { n, addresses: [], resolvedAt: now, ttl: null, exists: true, checkedAt: now, error: null };
    } else if (res?.kind === 'error') {
      record = { ...prev, checkedAt: now, error: `${res.code}: ${res.message}` };
    }
    const state = stateOf(record, freshNow, now, config.refresh.maxStaleSeconds);
    couriers.set(n, Object.freeze({
      ...record,
      vip: vipFor(config, n),
      state,
      programmed: state === 'absent' ? [] : record.addresses.slice(0, SLOTS),
    }));
  }
  return { snapshot: Object.freeze({ at: now, couriers }), warnings };
}

/** Last-known-good passes the current allow-list too (a reload may have narrowed it; a state file may lie). */
function sanitized(record: CourierRecord, config: MappingInput['config'], warnings: string[]): CourierRecord {
  const kept = record.addresses.filter((a) => allowedAddress(config, a));
  if (kept.length === record.addresses.length) return record;
  const dropped = record.addresses.filter((a) => !kept.includes(a));
  warnings.push(`courier ${record.n}: dropped last-known-good ${dropped.join(',')} (outside allowedUpstreamNets)`);
  return { ...record, addresses: kept };
}

function stateOf(record: CourierRecord, freshNow: boolean, now: number, maxStaleSeconds: number): CourierState {
  if (record.addresses.length === 0 || record.resolvedAt === null) return 'absent';
  if (freshNow) return 'fresh';
  return now - record.resolvedAt <= maxStaleSeconds * 1000 ? 'stale' : 'absent';
}

/** The couriers4 elements the kernel should hold: each slot round-robin over the courier's addresses. */
export function desiredElements(snapshot: Snapshot): ElementMap {
  const elements: MapElement[] = [];
  for (const c of snapshot.couriers.values()) {
    if (c.programmed.length === 0) continue;
    for (let slot = 0; slot < SLOTS; slot++) elements.push({ vip: c.vip, slot, address: c.programmed[slot % c.programmed.length]! });
  }
  return elementMap(elements);
}

/** Human lines for what changed between two snapshots, for the info log. */
export function describeChanges(before: Snapshot | undefined, after: Snapshot): string[] {
  const lines: string[] = [];
  for (const c of after.couriers.values()) {
    const old = before?.couriers.get(c.n);
    const was = old?.programmed.join(',') ?? '';
    const now = c.programmed.join(',');
    if (was === now) continue;
    const why = c.state === 'absent' ? ` (absent: ${absentReason(c)})` : '';
    lines.push(`courier ${c.n}: ${was || 'none'} → ${now || 'none'}${why}`);
  }
  return lines;
}

export function absentReason(c: CourierView): string {
  if (c.exists === false) return 'NXDOMAIN';
  if (c.resolvedAt === null) return c.error ? `never resolved, ${c.error}` : 'never resolved';
  if (c.addresses.length === 0) return 'no A records';
  return 'last-known-good older than refresh.maxStaleSeconds';
}
