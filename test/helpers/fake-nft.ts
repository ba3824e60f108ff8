// An in-memory nft for tests: understands the scripts render.ts writes and commits them
// all-or-nothing, failing where the kernel would (delete of a missing element, add over a different value).
import { ApnsProxyError } from '../../src/core/errors.js';
import { STAMP_PREFIX } from '../../src/nft/render.js';
import type { LiveMap, LiveTable, NftRunner, TableOwner } from '../../src/nft/runner.js';
import { elementsFromText } from '../../src/nft/elements.js';

interface FakeTable {
  stamp: string | null;
  rules: string;
  elements: Map<string, string>;        // couriers4: "VIP . slot" → address
  names: Map<string, string>;           // couriers4: "VIP . slot" → its comment
  packets: Map<string, number>;         // couriers4: "VIP . slot" → its counter (bump() adds)
  sets: Map<string, Set<string>>;       // vipports, vips, direct, upstream: their elements as nft writes them
  handle: number;
}

const emptyTable = (handle: number, stamp: string | null = null, rules = ''): FakeTable =>
  ({ stamp, rules, elements: new Map(), names: new Map(), packets: new Map(), sets: new Map([['vipports', new Set()], ['vips', new Set()], ['direct', new Set()]]), handle });

export class FakeNft implements NftRunner {
  tables = new Map<string, FakeTable>();
  /** Every script apply() was called with, successful or not. */
  readonly scripts: string[] = [];
  /** When set, the next apply() fails with this message after validating nothing. */
  failNext: string | null = null;
  private handles = 0;

  async apply(script: string): Promise<void> {
    this.scripts.push(script);
    if (this.failNext !== null) {
      const msg = this.failNext;
      this.failNext = null;
      throw new ApnsProxyError('E_NFT', `nft rejected the transaction (kernel unchanged): ${msg}`);
    }
    const next = new Map([...this.tables].map(([k, t]) => [k, {
      ...t, elements: new Map(t.elements), names: new Map(t.names), packets: new Map(t.packets),
      sets: new Map([...t.sets].map(([n, set]) => [n, new Set(set)])),
    }]));
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === '') continue;
      let m: RegExpExecArray | null;
      if ((m = /^add table inet (\w+)$/.exec(line))) {
        if (!next.has(m[1]!)) next.set(m[1]!, emptyTable(++this.handles));
      } else if ((m = /^delete table inet (\w+)$/.exec(line))) {
        if (!next.delete(m[1]!)) this.fail(`delete table ${m[1]}: No such file or directory`);
      } else if ((m = /^table inet (\w+) \{$/.exec(line))) {
        const start = i;
        let depth = 1;
        while (depth > 0 && ++i < lines.length) depth += count(lines[i]!, '{') - count(lines[i]!, '}');
        const block = lines.slice(start, i + 1).join('\n');
        if (next.has(m[1]!)) this.fail(`table ${m[1]} already exists with content (fake supports declare-after-delete only)`);
        const declared = emptyTable(++this.handles, /comment "([^"]*)"/.exec(block)?.[1] ?? null, block);
        // the upstream interval set is declared with its elements inside the rules
        const upstream = /set upstream \{[^}]*?elements = \{ ([^}]*) \}/.exec(block);
        if (upstream) declared.sets.set('upstream', new Set(upstream[1]!.split(', ')));
        next.set(m[1]!, declared);
      } else if ((m = /^(add|delete) element inet (\w+) couriers4 \{ (.*) \}$/.exec(line))) {
        const t = next.get(m[2]!);
        if (!t) this.fail(`${m[1]} element: table ${m[2]}: No such file or directory`);
        for (const item of m[3]!.split(', ')) {
          const e = /^(\S+ \. \d+)(?: comment "([^"]*)")?(?: : (\S+))?$/.exec(item);
          if (!e) this.fail(`fake nft does not understand the element ${item}`);
          const [, key, name, value] = e as unknown as [string, string, string | undefined, string | undefined];
          if (m[1] === 'delete') {
            if (!t!.elements.delete(key)) this.fail(`delete element ${key}: No such file or directory`);
            t!.names.delete(key);
            t!.packets.delete(key);
          } else {
            const have = t!.elements.get(key);
            if (value === undefined) this.fail(`add element ${key}: no value`);
            if (have !== undefined && have !== value) this.fail(`add element ${key}: File exists`);
            if (have === undefined) t!.packets.set(key, 0);
            t!.elements.set(key, value!);
            if (name !== undefined) t!.names.set(key, name);
          }
        }
      } else if ((m = /^(add|delete) element inet (\w+) (vipports|vips|direct|upstream) \{ (.*) \}$/.exec(line))) {
        const set = next.get(m[2]!)?.sets.get(m[3]!);
        if (!set) this.fail(`${m[1]} element: set ${m[2]} ${m[3]}: No such file or directory`);
        for (const item of m[4]!.split(', ')) {
          if (m[3] !== 'vips' && m[3] !== 'upstream' && !/^\d+\.\d+\.\d+\.\d+ \. (tcp|udp) \. \d+$/.test(item)) this.fail(`fake nft does not understand the ${m[3]} element ${item}`);
          if (m[1] === 'delete' && !set!.delete(item)) this.fail(`delete element ${item}: No such file or directory`);
          if (m[1] === 'add') set!.add(item);
        }
      } else {
        this.fail(`fake nft does not understand: ${line}`);
      }
    }
    this.tables = next;
  }

  async readMap(table: string): Promise<LiveMap | null> {
    return this.liveMap(table);
  }

  private liveMap(table: string): LiveMap | null {
    const t = this.tables.get(table);
    if (!t) return null;
    const elements = elementsFromText(t.elements);
    for (const [key, e] of elements) {
      const name = t.names.get(key);
      elements.set(key, { ...e, ...(name !== undefined ? { name } : {}), packets: t.packets.get(key) ?? 0 });
    }
    return { stamp: t.stamp, elements };
  }

  /** The whole table in one read, like `nft -j list table` (sets hold what apply() or a test put there). */
  async readTable(table: string): Promise<LiveTable | null> {
    const t = this.tables.get(table);
    if (!t) return null;
    const triples = (name: string) => {
      const set = t.sets.get(name);
      return set ? [...set].map((item) => item.split(' . ') as [string, 'tcp' | 'udp', string]) : null;
    };
    const list = (name: string) => { const set = t.sets.get(name); return set ? [...set] : null; };
    return {
      handle: t.handle,
      map: this.liveMap(table),
      ports: triples('vipports')?.map(([vip, proto, port]) => ({ vip, proto, port: Number(port) })) ?? null,
      vips: list('vips'),
      direct: triples('direct')?.map(([address, proto, port]) => ({ address, proto, port: Number(port) })) ?? null,
      upstream: list('upstream'),
    };
  }

  /** New connections through one element (the kernel's per-element counter). */
  bump(table: string, key: string, packets = 1): void {
    const t = this.tables.get(table)!;
    t.packets.set(key, (t.packets.get(key) ?? 0) + packets);
  }

  async tableOwner(table: string): Promise<TableOwner> {
    const t = this.tables.get(table);
    if (!t) return 'absent';
    return t.stamp?.startsWith(STAMP_PREFIX) ? 'ours' : 'foreign';
  }

  /** A table somebody else owns (the operator's `inet filter`, say), for tests that it is never touched. */
  addForeignTable(name: string, rules = `table inet ${name} { }`): void {
    this.tables.set(name, emptyTable(++this.handles, null, rules));
  }

  async tableHandle(table: string): Promise<number | null> {
    return this.tables.get(table)?.handle ?? null;
  }

  private fail(message: string): never {
    throw new ApnsProxyError('E_NFT', `nft rejected the transaction (kernel unchanged): ${message}`);
  }
}

function count(s: string, ch: string): number {
  return s.split(ch).length - 1;
}
