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

/** One element of the vipports set: traffic to this VIP, protocol and port is forwarded. */
export interface PortElement {
  readonly vip: string;
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
}

export function portKey(p: PortElement): string {
  return `${p.vip} . ${p.proto} . ${p.port}`;
}

/**
 * One element of the direct set: a device's new connection straight to this upstream address (one
 * a name maps to now), protocol and port (its set's) is forwarded like a VIP connection.
 */
export interface DirectElement {
  readonly address: string;
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
}

export function directKey(d: DirectElement): string {
  return `${d.address} . ${d.proto} . ${d.port}`;
}

/** Stable order (address, protocol, port), each element once. */
export function sortedDirect(elements: Iterable<DirectElement>): DirectElement[] {
  const byKey = new Map([...elements].map((d) => [directKey(d), d]));
  return sortedPorts([...byKey.values()].map((d) => ({ vip: d.address, proto: d.proto, port: d.port })))
    .map((p) => ({ address: p.vip, proto: p.proto, port: p.port }));
}

/** Stable order (VIP, protocol, port) for scripts and golden files. */
export function sortedPorts(ports: Iterable<PortElement>): PortElement[] {
  const num = (vip: string) => vip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  // ordinal, not localeCompare: a collator pages in megabytes of ICU data for two ASCII words
  const ord = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return [...ports].sort((a, b) => num(a.vip) - num(b.vip) || ord(a.proto, b.proto) || a.port - b.port);
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
