// The couriers4 map's elements, typed. Only nft/ spells them as nft text ("VIP . slot : address");
// everything else reads the fields.

/** Connections to a VIP are spread over this many map slots (numgen random mod SLOTS). */
export const SLOTS = 8;

export interface MapElement {
  readonly vip: string;      // dotted quad
  readonly slot: number;     // 0..SLOTS-1
  readonly address: string;  // where the kernel DNATs it
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
