// The couriers4 map's elements, typed. Only nft/ spells them as nft text ("VIP . slot : address");
// everything else reads the fields.

/** Connections to a VIP are spread over this many map slots (numgen random mod SLOTS). */
export const SLOTS = 8;

export interface MapElement {
  readonly vip: string;      // dotted quad
  readonly slot: number;     // 0..SLOTS-1
  readonly address: string;  // where the kernel DNATs it
  readonly name?: string;    // the element's comment: the name the VIP stands for
  readonly packets?: number; // its counter, read back from the kernel (new connections: NAT sees only the first packet)
}

/** What the vipports and direct sets hold beside an address: a protocol and a port. */
interface Service {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
}

/** One element of the vipports set: traffic to this VIP, protocol and port is forwarded. */
export interface PortElement extends Service {
  readonly vip: string;
}

/**
 * One element of the direct set: a device's new connection straight to this upstream address (one
 * a name maps to now), protocol and port (its set's) is forwarded like a VIP connection.
 */
export interface DirectElement extends Service {
  readonly address: string;
}

/** nft's spelling of an "address . protocol . port" element, which is also its identity. */
function serviceKey(address: string, s: Service): string {
  return `${address} . ${s.proto} . ${s.port}`;
}

export const portKey = (p: PortElement): string => serviceKey(p.vip, p);
export const directKey = (d: DirectElement): string => serviceKey(d.address, d);

/** Stable order (address, protocol, port) for scripts and golden files, each element once. */
function sortedServices<T extends Service>(elements: Iterable<T>, address: (e: T) => string): T[] {
  const num = (a: string) => a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  // ordinal, not localeCompare: a collator pages in megabytes of ICU data for two ASCII words
  const ord = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  const once = new Map([...elements].map((e) => [serviceKey(address(e), e), e]));
  return [...once.values()].sort((a, b) => num(address(a)) - num(address(b)) || ord(a.proto, b.proto) || a.port - b.port);
}

export const sortedPorts = (ports: Iterable<PortElement>): PortElement[] => sortedServices(ports, (p) => p.vip);
export const sortedDirect = (elements: Iterable<DirectElement>): DirectElement[] => sortedServices(elements, (d) => d.address);

/** What to delete and what to add to turn `applied` into `desired` (elements compared by `key`), each in stable order. */
export function serviceDiff<T>(applied: readonly T[], desired: readonly T[], key: (e: T) => string, sorted: (e: Iterable<T>) => T[]): { remove: T[]; add: T[] } {
  const had = new Set(applied.map(key));
  const want = new Set(desired.map(key));
  return { remove: sorted(applied.filter((e) => !want.has(key(e)))), add: sorted(desired.filter((e) => !had.has(key(e)))) };
}

/** Same element for the kernel (what a transaction writes): address and comment; counters aside. */
export function sameElement(a: MapElement | undefined, b: MapElement | undefined): boolean {
  return a !== undefined && b !== undefined && a.address === b.address && (a.name ?? null) === (b.name ?? null);
}

/** Elements by identity (VIP and slot): the key is opaque outside nft/, use elementKey to build one. */
export type ElementMap = ReadonlyMap<string, MapElement>;

export function elementKey(vip: string, slot: number): string {
  return `${vip} . ${slot}`;
}

export function elementMap(elements: Iterable<MapElement>): Map<string, MapElement> {
  return new Map([...elements].map((e) => [elementKey(e.vip, e.slot), e]));
}

/** Stable order (by VIP, then slot) so scripts and golden files are deterministic. */
export function sortedElements(elements: Iterable<MapElement>): MapElement[] {
  const order = (e: MapElement) => e.vip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0) * 1024 + e.slot;
  return [...elements].sort((a, b) => order(a) - order(b));
}

/** "VIP . slot" → address, as `nft list map` prints them (for people and for tests that compare listings). */
export function addressByKey(elements: ElementMap): Map<string, string> {
  return new Map([...elements].map(([key, e]) => [key, e.address]));
}

/** The inverse of addressByKey: elements from "VIP . slot" → address text. */
export function elementsFromText(byKey: Iterable<readonly [string, string]>): Map<string, MapElement> {
  return elementMap([...byKey].map(([key, address]) => {
    const [vip, slot] = key.split(' . ') as [string, string];
    return { vip, slot: Number(slot), address };
  }));
}
