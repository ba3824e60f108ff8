// What differs between the table a sync applied and the one in the kernel now (pure): the per-cycle
// drift check compares one `nft -j list table` with this, part by part.
import { formatIPv4, parseCidr4, parseIPv4 } from '../core/net.js';
import { type DirectElement, type ElementMap, type PortElement, directKey, portKey, sameElement } from './elements.js';
import { DIRECT_SET, MAP_NAME, PORTS_SET, UPSTREAM_SET, VIPS_SET, vipsOf } from './render.js';
import type { LiveTable } from './runner.js';

/** What the last sync gave the kernel (the full sync's table, plus every delta since). */
export interface AppliedTable {
  readonly handle: number | null;             // the table's handle after the full sync; null: unknown, not compared
  readonly stamp: string;                     // couriers4's comment
  readonly elements: ElementMap;              // couriers4
  readonly ports: readonly PortElement[];     // vipports (vips are their VIPs)
  readonly direct: readonly DirectElement[];
  readonly upstream: readonly string[];       // the rules' upstream set: upstreamNets(allowedUpstreamNets)
}

/**
 * Each part of the live table that differs from what was applied, one line per part ([] when none):
 * a removed or re-created table is one line (nothing in it is ours any more); otherwise the map, then
 * vipports, vips, direct and upstream, each with counts and a few of the differing elements.
 */
export function tableDrift(table: string, applied: AppliedTable, live: LiveTable | null): string[] {
  if (live === null) return [`table inet ${table} was removed behind our back`];
  if (applied.handle !== null && live.handle !== applied.handle) return [`table inet ${table} was re-created behind our back`];
  const out: string[] = [];
  if (live.map === null) out.push(`map ${table} ${MAP_NAME} is gone`);
  else if (live.map.stamp !== applied.stamp) out.push(`map ${table} ${MAP_NAME} carries another stamp (${live.map.stamp ?? 'none'})`);
  else {
    let missing = 0;
    let changed = 0;
    for (const [key, e] of applied.elements) {
      const have = live.map.elements.get(key);
      if (have === undefined) missing++;
      else if (!sameElement(have, e)) changed++;
    }
    const foreign = [...live.map.elements.keys()].filter((key) => !applied.elements.has(key)).length;
    if (missing + changed + foreign > 0) out.push(`the kernel map differs from what was applied (${missing} missing, ${changed} changed, ${foreign} foreign elements)`);
  }
  const sets: [string, readonly string[], readonly string[] | null][] = [
    [PORTS_SET, applied.ports.map(portKey), live.ports?.map(portKey) ?? null],
    [VIPS_SET, vipsOf(applied.ports), live.vips],
    [DIRECT_SET, applied.direct.map(directKey), live.direct?.map(directKey) ?? null],
  ];
  for (const [name, want, have] of sets) {
    const why = setDrift(name, want, have);
    if (why !== undefined) out.push(why);
  }
  const upstream = upstreamDrift(applied.upstream, live.upstream);
  if (upstream !== undefined) out.push(upstream);
  return out;
}

function setDrift(name: string, want: readonly string[], have: readonly string[] | null): string | undefined {
  if (have === null) return `set ${name} is gone`;
  const w = new Set(want);
  const h = new Set(have);
  const missing = [...w].filter((k) => !h.has(k));
  const foreign = [...h].filter((k) => !w.has(k));
  if (missing.length + foreign.length === 0) return undefined;
  const some = (label: string, keys: string[]) => (keys.length ? [`${label} ${keys.slice(0, 3).join(', ')}${keys.length > 3 ? ', …' : ''}`] : []);
  return `set ${name} differs from what was applied (${missing.length} missing, ${foreign.length} foreign elements: ${[...some('missing', missing), ...some('foreign', foreign)].join('; ')})`;
}

/** The interval set compared by the addresses it covers: nft may spell a /32 bare or keep adjacent prefixes apart. */
function upstreamDrift(want: readonly string[], have: readonly string[] | null): string | undefined {
  if (have === null) return `set ${UPSTREAM_SET} is gone`;
  const w = coverage(want);
  const h = coverage(have);
  if (w !== null && h !== null && w.join() === h.join()) return undefined;
  return `set ${UPSTREAM_SET} differs from allowedUpstreamNets (holds ${have.join(', ') || 'nothing'}; want ${want.join(', ')})`;
}

/** "a.b.c.d", "a.b.c.d/len" or "a-b" items as merged ranges "first-last", sorted; null when one is unreadable. */
export function coverage(items: readonly string[]): string[] | null {
  const ranges: [number, number][] = [];
  for (const item of items) {
    const dash = item.indexOf('-');
    let lo: number | undefined;
    let hi: number | undefined;
    if (dash >= 0) {
      lo = parseIPv4(item.slice(0, dash));
      hi = parseIPv4(item.slice(dash + 1));
    } else {
      // nft prints prefixes canonically: host bits would be as unreadable as any other bad item
      const cidr = parseCidr4(item);
      if (typeof cidr === 'string') return null;
      lo = cidr.network;
      hi = lo + 2 ** (32 - cidr.length) - 1;
    }
    if (lo === undefined || hi === undefined || hi < lo) return null;
    ranges.push([lo, hi]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const [lo, hi] of ranges) {
    const last = merged[merged.length - 1];
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return merged.map(([lo, hi]) => `${formatIPv4(lo)}-${formatIPv4(hi)}`);
}
