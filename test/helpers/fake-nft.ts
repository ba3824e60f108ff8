// An in-memory nft for tests: understands the scripts render.ts writes and commits them
// all-or-nothing, failing where the kernel would (delete of a missing element, add over a different value).
import { ApnsProxyError } from '../../src/core/errors.js';
import { STAMP_PREFIX } from '../../src/nft/render.js';
import type { LiveMap, NftRunner, TableOwner } from '../../src/nft/runner.js';
import { elementsFromText } from '../../src/nft/elements.js';

interface FakeTable { stamp: string | null; rules: string; elements: Map<string, string>; handle: number }

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
    const next = new Map([...this.tables].map(([k, t]) => [k, { ...t, elements: new Map(t.elements) }]));
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === '') continue;
      let m: RegExpExecArray | null;
      if ((m = /^add table inet (\w+)$/.exec(line))) {
        if (!next.has(m[1]!)) next.set(m[1]!, { stamp: null, rules: '', elements: new Map(), handle: ++this.handles });
      } else if ((m = /^delete table inet (\w+)$/.exec(line))) {
        if (!next.delete(m[1]!)) this.fail(`delete table ${m[1]}: No such file or directory`);
      } else if ((m = /^table inet (\w+) \{$/.exec(line))) {
        const start = i;
        let depth = 1;
        while (depth > 0 && ++i < lines.length) depth += count(lines[i]!, '{') - count(lines[i]!, '}');
        const block = lines.slice(start, i + 1).join('\n');
        if (next.has(m[1]!)) this.fail(`table ${m[1]} already exists with content (fake supports declare-after-delete only)`);
        next.set(m[1]!, { stamp: /comment "([^"]*)"/.exec(block)?.[1] ?? null, rules: block, elements: new Map(), handle: ++this.handles });
      } else if ((m = /^(add|delete) element inet (\w+) couriers4 \{ (.*) \}$/.exec(line))) {
        const t = next.get(m[2]!);
        if (!t) this.fail(`${m[1]} element: table ${m[2]}: No such file or directory`);
        for (const item of m[3]!.split(', ')) {
          const [key, value] = item.split(' : ') as [string, string | undefined];
          if (m[1] === 'delete') {
            if (!t!.elements.delete(key)) this.fail(`delete element ${key}: No such file or directory`);
          } else {
            const have = t!.elements.get(key);
            if (have !== undefined && have !== value) this.fail(`add element ${key}: File exists`);
            t!.elements.set(key, value!);
          }
        }
      } else {
        this.fail(`fake nft does not understand: ${line}`);
      }
    }
    this.tables = next;
  }

  async readMap(table: string): Promise<LiveMap | null> {
    const t = this.tables.get(table);
    return t ? { stamp: t.stamp, elements: elementsFromText(t.elements) } : null;
  }

  async tableOwner(table: string): Promise<TableOwner> {
    const t = this.tables.get(table);
    if (!t) return 'absent';
    return t.stamp?.startsWith(STAMP_PREFIX) ? 'ours' : 'foreign';
  }

  /** A table somebody else owns (the operator's `inet filter`, say), for tests that it is never touched. */
  addForeignTable(name: string, rules = `table inet ${name} { }`): void {
    this.tables.set(name, { stamp: null, rules, elements: new Map(), handle: ++this.handles });
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
