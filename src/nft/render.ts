// Renders nft scripts (pure): the static ruleset from the template, full syncs, element deltas.
import { createHash } from 'node:crypto';
import type { Config } from '../core/config.js';
import { type ElementMap, type MapElement, SLOTS, elementKey, sortedElements } from './elements.js';
import { rulesetTemplate } from './template.js';

export type { ElementMap, MapElement } from './elements.js';

export const MAP_NAME = 'couriers4';

/** Every stamp renderRuleset writes starts with this: the mark that says a table is ours. */
export const STAMP_PREFIX = 'apns-proxy ';

export interface ElementDiff {
  readonly remove: readonly MapElement[];  // as the kernel holds them now
  readonly add: readonly MapElement[];
}

type RulesetConfig = Pick<Config, 'vipPrefix' | 'ports' | 'nft' | 'fallback'>;

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

/** nft's spelling of elements: "VIP . slot : address" (keys only, for a delete). */
function elementList(elements: readonly MapElement[], withValues = true): string {
  return elements.map((e) => `${e.vip} . ${e.slot}${withValues ? ` : ${e.address}` : ''}`).join(', ');
}

/**
 * A full sync: replace our table wholesale in one transaction ("add" first so "delete" cannot fail
 * on a missing table). Established flows keep their conntrack NAT state across the swap.
 */
export function renderFullSync(ruleset: string, table: string, elements: ElementMap, dropTables: readonly string[] = []): string {
  const out: string[] = [];
  for (const old of dropTables) out.push(`add table inet ${old}`, `delete table inet ${old}`);
  out.push(`add table inet ${table}`, `delete table inet ${table}`, ruleset.trimEnd());
  if (elements.size > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(sortedElements(elements.values()))} }`);
  return `${out.join('\n')}\n`;
}

/** Steady state: only the elements that changed. Empty string when nothing did. */
export function renderDelta(table: string, diff: ElementDiff): string {
  const out: string[] = [];
  if (diff.remove.length > 0) out.push(`delete element inet ${table} ${MAP_NAME} { ${elementList(diff.remove, false)} }`);
  if (diff.add.length > 0) out.push(`add element inet ${table} ${MAP_NAME} { ${elementList(diff.add)} }`);
  return out.length ? `${out.join('\n')}\n` : '';
}

/** Removes our table and nothing else; succeeds whether or not it exists. */
export function renderFlush(table: string): string {
  return `add table inet ${table}\ndelete table inet ${table}\n`;
}

/** Elements whose address changed are deleted and re-added (nft has no in-place replace for map data). */
export function diffElements(applied: ElementMap, desired: ElementMap): ElementDiff {
  const remove = sortedElements([...applied].filter(([key, e]) => desired.get(key)?.address !== e.address).map(([, e]) => e));
  const add = sortedElements([...desired].filter(([key, e]) => applied.get(key)?.address !== e.address).map(([, e]) => e));
  return { remove, add };
}

export { elementKey };
