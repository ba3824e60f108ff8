// Name sets (pure): the names a router carries and where their VIPs come from. A numbered set maps
// N ⇄ "{n}-courier…" ⇄ an address of its own prefix; an exact-name set takes stable addresses from a
// pool. Validation names the set and the value, like every configuration error.
import { type Cidr4, formatIPv4 } from './net.js';

/** Couriers 0..N-like names: a template with "{n}" and a range, each N with an address of `prefix`. */
export interface NumberedSet {
  readonly kind: 'numbered';
  readonly id: string;
  readonly template: string;   // lower case, no trailing dot, "{n}" once
  readonly first: number;
  readonly last: number;
  readonly prefix: Cidr4;
  readonly tcp: readonly number[];
  readonly udp: readonly number[];
  readonly allowedUpstreamNets?: readonly Cidr4[];  // narrower than the global list; absent: the global one
}

/** A list of host names, each with a VIP from the pool that stays with it. */
export interface ExactSet {
  readonly kind: 'names';
  readonly id: string;
  readonly names: readonly string[];  // lower case, no trailing dot
  readonly tcp: readonly number[];
  readonly udp: readonly number[];
  readonly allowedUpstreamNets?: readonly Cidr4[];
}

export type NameSet = NumberedSet | ExactSet;

/**
 * N → VIP inside a prefix, never its network or broadcast address: N ≥ 1 is `network + N` (so
 * courier 5 of 10.100.100.0/24 stays 10.100.100.5), and N = 0 takes the last usable address
 * (broadcast − 1: 10.100.100.254). With 0 in the range, the largest N is therefore size − 3.
 */
export function vipForNumber(prefix: Cidr4, n: number): number | undefined {
  const size = prefixSize(prefix);
  if (!Number.isInteger(n) || n < 0 || size < 4) return undefined;
  if (n === 0) return prefix.network + size - 2;
  return n <= size - 2 ? prefix.network + n : undefined;
}

/** The N a VIP stands for in a numbered set, or undefined when it is not one of its VIPs. */
export function numberForVip(set: Pick<NumberedSet, 'prefix' | 'first' | 'last'>, address: number): number | undefined {
  const size = prefixSize(set.prefix);
  if (((address & set.prefix.mask) >>> 0) !== set.prefix.network) return undefined;
  const offset = address - set.prefix.network;
  const n = set.first === 0 && offset === size - 2 ? 0 : offset;
  if (n < set.first || n > set.last) return undefined;
  return vipForNumber(set.prefix, n) === address ? n : undefined;
}

/** The largest `last` a numbered set of this prefix can have. */
export function maxNumber(prefix: Cidr4, first: number): number {
  const size = prefixSize(prefix);
  return first === 0 ? size - 3 : size - 2;
}

export function prefixSize(prefix: Cidr4): number {
  return 2 ** (32 - prefix.length);
}

export function numberedName(template: string, n: number): string {
  return template.replace('{n}', String(n));
}

/** Usable pool addresses in order (network and broadcast excluded). */
function poolAddresses(pool: Cidr4): number[] {
  const size = prefixSize(pool);
  return Array.from({ length: Math.max(0, size - 2) }, (_, i) => pool.network + 1 + i);
}

export type PoolResult =
  | { readonly ok: true; readonly assigned: ReadonlyMap<string, string> }
  | { readonly ok: false; readonly problem: string };

/**
 * Stable VIPs for exact names: a name keeps the VIP it had (`previous`, from the state file) while
 * that VIP is in the pool and not taken; new names take the lowest free address. Adding or removing
 * a name never moves another name's VIP.
 */
export function allocatePool(pool: Cidr4, names: readonly string[], previous: ReadonlyMap<string, string>): PoolResult {
  const free = poolAddresses(pool);
  if (names.length > free.length) {
    return { ok: false, problem: `pool ${pool.text} holds ${free.length} addresses, ${names.length} names need one each` };
  }
  const inPool = new Set(free.map(formatIPv4));
  const taken = new Set<string>();
  const assigned = new Map<string, string>();
  for (const name of names) {
    const had = previous.get(name);
    if (had !== undefined && inPool.has(had) && !taken.has(had)) {
      assigned.set(name, had);
      taken.add(had);
    }
  }
  let next = 0;
  for (const name of names) {
    if (assigned.has(name)) continue;
    while (taken.has(formatIPv4(free[next]!))) next++;
    const vip = formatIPv4(free[next]!);
    assigned.set(name, vip);
    taken.add(vip);
  }
  return { ok: true, assigned };
}

/** Problems across sets (each a sentence naming the sets and values); empty when they fit together. */
export function nameSetProblems(sets: readonly NameSet[], pool: Cidr4 | undefined): string[] {
  const problems: string[] = [];
  const prefixes: { id: string; prefix: Cidr4 }[] = sets.flatMap((s) => (s.kind === 'numbered' ? [{ id: s.id, prefix: s.prefix }] : []));
  if (pool !== undefined) prefixes.push({ id: '(the exact-name pool)', prefix: pool });
  for (let i = 0; i < prefixes.length; i++) {
    for (let j = i + 1; j < prefixes.length; j++) {
      const a = prefixes[i]!;
      const b = prefixes[j]!;
      if (overlaps(a.prefix, b.prefix)) problems.push(`${a.id} (${a.prefix.text}) and ${b.id} (${b.prefix.text}) overlap: every VIP must stand for one name`);
    }
  }
  for (const s of sets) {
    if (s.kind !== 'numbered') continue;
    const max = maxNumber(s.prefix, s.first);
    if (s.last > max) problems.push(`${s.id}: ${s.first}..${s.last} does not fit ${s.prefix.text} (at most ${s.first}..${max}: no VIP may be its network or broadcast address)`);
  }
  const owner = new Map<string, string>();
  for (const s of sets) {
    for (const name of exampleNames(s)) {
      const other = owner.get(name);
      if (other !== undefined && other !== s.id) problems.push(`${name} is in both ${other} and ${s.id}: a name has one VIP`);
      owner.set(name, s.id);
    }
  }
  const exact = sets.filter((s) => s.kind === 'names').reduce((sum, s) => sum + (s as ExactSet).names.length, 0);
  if (exact > 0 && pool === undefined) problems.push('exact-name sets need a pool prefix for their VIPs');
  else if (pool !== undefined && exact > Math.max(0, prefixSize(pool) - 2)) {
    problems.push(`the pool ${pool.text} holds ${Math.max(0, prefixSize(pool) - 2)} addresses, the exact-name sets have ${exact} names`);
  }
  return problems;
}

/** Names to compare across sets: every exact name; a numbered set's names only where they could clash. */
function exampleNames(s: NameSet): string[] {
  if (s.kind === 'names') return [...s.names];
  const out: string[] = [];
  for (let n = s.first; n <= s.last; n++) out.push(numberedName(s.template, n));
  return out;
}

function overlaps(a: Cidr4, b: Cidr4): boolean {
  const mask = a.length < b.length ? a.mask : b.mask;
  return ((a.network & mask) >>> 0) === ((b.network & mask) >>> 0);
}

/** The production couriers' set id (configured by vipPrefix, ports and couriers). */
export const PRODUCTION_SET = 'couriers';

/** One name the router carries: its set, its N (numbered sets), its VIP. */
export interface NameEntry {
  readonly name: string;        // lower case, no trailing dot
  readonly set: string;
  readonly n: number | null;    // numbered sets only
  readonly vip: string;
}

/** The exact names of the sets, in set order (what allocatePool takes). */
export function exactNames(sets: readonly NameSet[]): string[] {
  return sets.flatMap((s) => (s.kind === 'names' ? [...s.names] : []));
}

/**
 * Every name of every set with its VIP: numbered names from their prefix, exact names from `pool`
 * (allocatePool's assignment). An exact name the pool has no VIP for is left out.
 */
export function nameEntries(sets: readonly NameSet[], pool: ReadonlyMap<string, string>): NameEntry[] {
  const out: NameEntry[] = [];
  for (const s of sets) {
    if (s.kind === 'numbered') {
      for (let n = s.first; n <= s.last; n++) {
        const vip = vipForNumber(s.prefix, n);
        if (vip !== undefined) out.push({ name: numberedName(s.template, n), set: s.id, n, vip: formatIPv4(vip) });
      }
    } else {
      for (const name of s.names) {
        const vip = pool.get(name);
        if (vip !== undefined) out.push({ name, set: s.id, n: null, vip });
      }
    }
  }
  return out;
}

/**
 * Whether `name` (lower case, no trailing dot) has the shape of a numbered set's names: the
 * template with a decimal number where {n} is. Returns the set and the number, in range or not.
 */
export function matchNumbered(sets: readonly NameSet[], name: string): { set: NumberedSet; n: number } | undefined {
  for (const s of sets) {
    if (s.kind !== 'numbered') continue;
    const at = s.template.indexOf('{n}');
    const head = s.template.slice(0, at);
    const tail = s.template.slice(at + 3);
    if (name.length <= head.length + tail.length || !name.startsWith(head) || !name.endsWith(tail)) continue;
    const digits = name.slice(head.length, name.length - tail.length);
    if (!/^(?:0|[1-9][0-9]{0,8})$/.test(digits)) continue;
    return { set: s, n: Number(digits) };
  }
  return undefined;
}
