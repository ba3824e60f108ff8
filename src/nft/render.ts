// Renders nft scripts (pure): the static ruleset from the template, full syncs, element deltas.
import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import { SLOTS } from '../mapping.js';

export const MAP_NAME = 'couriers4';

/** Every stamp renderRuleset writes starts with this: the mark that says a table is ours. */
export const STAMP_PREFIX = 'apns-proxy ';

/** Element key ("VIP . slot") → courier address. */
export type ElementMap = ReadonlyMap<string, string>;

export interface ElementDiff {
  readonly remove: readonly string[];                         // keys to delete
  readonly add: readonly (readonly [string, string])[];       // key, address
}

type RulesetConfig = Pick<Config, 'vipPrefix' | 'ports' | 'nft' | 'fallback'>;

/**
 * Fills the template. The map comment carries a stamp (hash of the rendered rules), so a later
 * process can tell from the live kernel whether the static part is exactly what it would write.
 */
export function renderRuleset(template: string, config: RulesetConfig): { text: string; stamp: string } {
  const snat = config.nft.snat;  // a shared source address takes precedence over masquerade
  const features: Record<string, boolean> = {
    masquerade: config.nft.masquerade && snat === null,
    snat: snat !== null,
    srcnat: config.nft.masquerade || snat !== null,
    fallback: config.fallback.enabled,
  };
  const values: Record<string, string> = {
    table: config.nft.table,
    prefix: config.vipPrefix.text,
    ports: config.ports.join(', '),
    slots: String(SLOTS),
    mark: `0x${config.fallback.mark.toString(16)}`,
    fallbackPort: String(config.fallback.port),
    snat: snat ?? '',
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

function elementList(entries: Iterable<readonly [string, string]>): string {
  return [...entries].map(([k, v]) => `${k} : ${v}`).join(', ');
}

/**
 * A full sync: replace our table wholesale in one transaction ("add" first so "delete" cannot fail
 * on a missing table). Established flows keep their conntrack NAT state across the swap.
 */
export function renderFullSync(ruleset: string, table: string, elements: ElementMap, dropTables: readonly string[] = []): string {
  const out: string[] = [];
  for (const old of dropTables) out.push(`add table inet ${old}`, `delete table inet ${old}`);
  out.push(`add table inet ${table}`, `delete table inet ${table}`, ruleset.trimEnd());
  if (elements.size > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(sortedEntries(elements))} }`);
  return `${out.join('\n')}\n`;
}

/** Steady state: only the elements that changed. Empty string when nothing did. */
export function renderDelta(table: string, diff: ElementDiff): string {
  const out: string[] = [];
  if (diff.remove.length > 0) out.push(`delete element inet ${table} ${MAP_NAME} { ${diff.remove.join(', ')} }`);
  if (diff.add.length > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(diff.add)} }`);
  return out.length ? `${out.join('\n')}\n` : '';
}

/** Removes our table and nothing else; succeeds whether or not it exists. */
export function renderFlush(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}

/** Keys whose value changed are deleted and re-added (nft has no in-place replace for map data). */
export function diffElements(applied: ElementMap, desired: ElementMap): ElementDiff {
  const remove: string[] = [];
  const add: [string, string][] = [];
  for (const [key, value] of sortedEntries(applied)) {
    const want = desired.get(key);
    if (want !== value) remove.push(key);
  }
  for (const [key, value] of sortedEntries(desired)) {
    if (applied.get(key) !== value) add.push([key, value]);
  }
  return { remove, add };
}

/** Stable order (by VIP, then slot) so scripts and golden files are deterministic. */
function sortedEntries(map: ElementMap): [string, string][] {
  const order = (key: string) => {
    const [vip, slot] = key.split(' . ') as [string, string];
    return vip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0) * 1024 + Number(slot);
  };
  return [...map.entries()].sort((a, b) => order(a[0]) - order(b[0]));
}
