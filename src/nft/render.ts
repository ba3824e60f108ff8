// Renders nft scripts (pure): the static ruleset from the template, full syncs, element deltas.
import { createHash } from 'node:crypto';
import type { Config } from '../core/config.js';
import { type DirectElement, type ElementMap, type MapElement, type PortElement, SLOTS, directKey, elementKey, portKey, sameElement, serviceDiff, sortedDirect, sortedElements, sortedPorts } from './elements.js';
import { rulesetTemplate } from './template.js';

export type { DirectElement, ElementMap, MapElement, PortElement } from './elements.js';

export const MAP_NAME = 'couriers4';
/** VIP . protocol . port: what is forwarded (DNAT, source NAT, fallback all key on it). */
export const PORTS_SET = 'vipports';
/** Every VIP that has at least one forwarded port. */
export const VIPS_SET = 'vips';
/** Upstream address . protocol . port of every programmed address of every name (direct connections). */
export const DIRECT_SET = 'direct';
/** allowedUpstreamNets (an interval set written with the rules, not as elements). */
export const UPSTREAM_SET = 'upstream';

/** Every stamp renderRuleset writes starts with this: the mark that says a table is ours. */
export const STAMP_PREFIX = 'apns-proxy ';

export interface ElementDiff {
  readonly remove: readonly MapElement[];  // as the kernel holds them now
  readonly add: readonly MapElement[];
  readonly removePorts?: readonly PortElement[];
  readonly addPorts?: readonly PortElement[];
  readonly removeVips?: readonly string[];
  readonly addVips?: readonly string[];
  readonly removeDirect?: readonly DirectElement[];
  readonly addDirect?: readonly DirectElement[];
}

type RulesetConfig = Pick<Config, 'nft' | 'fallback' | 'direct' | 'allowedUpstreamNets'>;

/** allowedUpstreamNets for an interval set: each once, none inside another (nft refuses overlaps). */
export function upstreamNets(nets: Pick<Config, 'allowedUpstreamNets'>['allowedUpstreamNets']): string[] {
  const inside = (a: (typeof nets)[number], b: (typeof nets)[number]) =>
    b.length <= a.length && ((a.network & b.mask) >>> 0) === ((b.network & b.mask) >>> 0);
  const kept = nets.filter((a, i) => !nets.some((b, j) => j !== i && inside(a, b) && (b.length < a.length || j < i)));
  return [...kept].sort((a, b) => (a.network >>> 0) - (b.network >>> 0)).map((n) => n.text);
}

/**
 * Fills the template. The map comment carries a stamp (hash of the rendered rules), so a later
 * process can tell from the live kernel whether the static part is exactly what it would write.
 */
export function renderRuleset(config: RulesetConfig, template: string = rulesetTemplate()): { text: string; stamp: string } {
  const snat = config.nft.snat;  // a shared source address takes precedence over masquerade
  const features: Record<string, boolean> = {
    masquerade: config.nft.masquerade && snat === null,
    snat: snat !== null,
    srcnat: config.nft.masquerade || snat !== null,
    fallback: config.fallback.enabled,
    directForward: config.direct.forward,
    directPass: !config.direct.forward,
    directMasquerade: config.direct.forward && config.nft.masquerade && snat === null,
    directSnat: config.direct.forward && snat !== null,
    reset5223: config.direct.reset5223,
    reset443: config.direct.reset443,
  };
  const values: Record<string, string> = {
    table: config.nft.table,
    slots: String(SLOTS),
    mark: `0x${config.fallback.mark.toString(16)}`,
    fallbackPort: String(config.fallback.port),
    snat: snat ?? '',
    directMark: `0x${config.direct.mark.toString(16)}`,
    upstreamNets: upstreamNets(config.allowedUpstreamNets).join(', '),
  };
  const lines: string[] = [];
  for (const line of template.split('\n')) {
    const tag = /^@(\w+)/.exec(line);
    if (tag) {
      if (!(tag[1]! in features)) throw new Error(`nft template: unknown feature tag @${tag[1]}`);
      if (features[tag[1]!]) lines.push(line.slice(tag[0].length));
      continue;
    }
    if (/^\s*#/.test(line)) continue;  // template comments are for readers of nft/, not the kernel
    lines.push(line);
  }
  const body = lines.join('\n').replace(/\n{3,}/g, '\n\n').trim();
  const fill = (text: string, extra: Record<string, string>) =>
    text.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
      const v = extra[name] ?? values[name];
      if (v === undefined) throw new Error(`nft template: unknown placeholder {{${name}}}`);
      return v;
    });
  const stamp = `${STAMP_PREFIX}${createHash('sha256').update(fill(body, { stamp: '' })).digest('hex').slice(0, 16)}`;
  return { text: `${fill(body, { stamp })}\n`, stamp };
}

/** nft's spelling of elements: "VIP . slot comment "name" : address" (keys only, for a delete). */
function elementList(elements: readonly MapElement[], withValues = true): string {
  return elements.map((e) => `${e.vip} . ${e.slot}${withValues ? `${e.name ? ` comment ${JSON.stringify(e.name)}` : ''} : ${e.address}` : ''}`).join(', ');
}

function portList(ports: readonly PortElement[]): string {
  return sortedPorts(ports).map(portKey).join(', ');
}

function directList(elements: readonly DirectElement[]): string {
  return sortedDirect(elements).map(directKey).join(', ');
}

/** The VIPs of these port elements, once each, in order. */
export function vipsOf(ports: Iterable<PortElement>): string[] {
  return [...new Set(sortedPorts(ports).map((p) => p.vip))];
}

/**
 * A full sync: replace our table wholesale in one transaction ("add" first so "delete" cannot fail
 * on a missing table). Established flows keep their conntrack NAT state across the swap.
 */
export function renderFullSync(ruleset: string, table: string, elements: ElementMap, dropTables: readonly string[] = [], ports: readonly PortElement[] = [], direct: readonly DirectElement[] = []): string {
  const out: string[] = [];
  for (const old of dropTables) out.push(`add table inet ${old}`, `delete table inet ${old}`);
  out.push(`add table inet ${table}`, `delete table inet ${table}`, ruleset.trimEnd());
  if (ports.length > 0) {
    out.push(`add element inet ${table} ${PORTS_SET} { ${portList(ports)} }`);
    out.push(`add element inet ${table} ${VIPS_SET} { ${vipsOf(ports).join(', ')} }`);
  }
  if (direct.length > 0) out.push(`add element inet ${table} ${DIRECT_SET} { ${directList(direct)} }`);
  if (elements.size > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(sortedElements(elements.values()))} }`);
  return `${out.join('\n')}\n`;
}

/**
 * Steady state: only the elements that changed. Empty string when nothing did. Removals first
 * (map, direct, ports, VIPs), additions after (VIPs, ports, direct, the map): one transaction, so a
 * direct address is forwardable exactly while some name maps to it.
 */
export function renderDelta(table: string, diff: ElementDiff): string {
  const out: string[] = [];
  if (diff.remove.length > 0) out.push(`delete element inet ${table} ${MAP_NAME} { ${elementList(diff.remove, false)} }`);
  if (diff.removeDirect?.length) out.push(`delete element inet ${table} ${DIRECT_SET} { ${directList(diff.removeDirect)} }`);
  if (diff.removePorts?.length) out.push(`delete element inet ${table} ${PORTS_SET} { ${portList(diff.removePorts)} }`);
  if (diff.removeVips?.length) out.push(`delete element inet ${table} ${VIPS_SET} { ${diff.removeVips.join(', ')} }`);
  if (diff.addVips?.length) out.push(`add element inet ${table} ${VIPS_SET} { ${diff.addVips.join(', ')} }`);
  if (diff.addPorts?.length) out.push(`add element inet ${table} ${PORTS_SET} { ${portList(diff.addPorts)} }`);
  if (diff.addDirect?.length) out.push(`add element inet ${table} ${DIRECT_SET} { ${directList(diff.addDirect)} }`);
  if (diff.add.length > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(diff.add)} }`);
  return out.length ? `${out.join('\n')}\n` : '';
}

/** Removes our table and nothing else; succeeds whether or not it exists. */
export function renderFlush(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}

/** Elements whose address changed are deleted and re-added (nft has no in-place replace for map data). */
export function diffElements(
  applied: ElementMap, desired: ElementMap, appliedPorts: readonly PortElement[] = [], desiredPorts: readonly PortElement[] = [],
  appliedDirect: readonly DirectElement[] = [], desiredDirect: readonly DirectElement[] = [],
): ElementDiff {
  const remove = sortedElements([...applied].filter(([key, e]) => !sameElement(desired.get(key), e)).map(([, e]) => e));
  const add = sortedElements([...desired].filter(([key, e]) => !sameElement(applied.get(key), e)).map(([, e]) => e));
  const { remove: removePorts, add: addPorts } = serviceDiff(appliedPorts, desiredPorts, portKey, sortedPorts);
  const hadVips = new Set(vipsOf(appliedPorts));
  const wantVips = new Set(vipsOf(desiredPorts));
  const removeVips = [...hadVips].filter((v) => !wantVips.has(v));
  const addVips = [...wantVips].filter((v) => !hadVips.has(v));
  const { remove: removeDirect, add: addDirect } = serviceDiff(appliedDirect, desiredDirect, directKey, sortedDirect);
  return { remove, add, removePorts, addPorts, removeVips, addVips, removeDirect, addDirect };
}

/** Elements a diff touches, all kinds (the report's and the log's count). */
export function diffSize(d: ElementDiff): number {
  return d.remove.length + d.add.length + (d.removePorts?.length ?? 0) + (d.addPorts?.length ?? 0) + (d.removeVips?.length ?? 0) + (d.addVips?.length ?? 0)
    + (d.removeDirect?.length ?? 0) + (d.addDirect?.length ?? 0);
}

export { elementKey };
