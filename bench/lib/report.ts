// Numbers → markdown, and bench/RESULTS.md maintenance.
//
// RESULTS.md is sectioned with markers: <!-- bench:ID --> ... <!-- /bench:ID -->. This benchmark
// owns the blocks "header", "hotpath", "scale", "refresh" and "fallback" and replaces only those;
// any other text (e.g. the DNS section bench/dns appends) is kept, after our blocks. A full run
// (no --only) starts the file afresh (the previous one is kept in bench/out/RESULTS.prev.md).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function median(values: readonly number[]): number {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** a / b as "0.93×" */
export function ratio(a: number, b: number, digits = 2): string {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(digits)}×` : 'n/a';
}

export function table(head: readonly string[], rows: readonly (readonly string[])[], align?: string): string {
  const sep = align ?? head.map((_, i) => (i === 0 ? '---' : '---:')).join('|');
  return [`| ${head.join(' | ')} |`, `|${sep}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export const pass = (ok: boolean) => (ok ? '**met**' : '**MISSED**');

export const SECTION_ORDER = ['header', 'hotpath', 'scale', 'refresh', 'fallback'] as const;
export type SectionId = (typeof SECTION_ORDER)[number];

const BLOCK_RE = /<!-- bench:([a-z]+) -->\n[\s\S]*?<!-- \/bench:\1 -->\n?/g;

/** Replaces our blocks in `old` (or builds a fresh file when `old` is undefined). */
export function mergeResults(old: string | undefined, blocks: Partial<Record<SectionId, string>>): string {
  const kept = new Map<string, string>();
  let foreign = '';
  if (old !== undefined) {
    foreign = old.replace(BLOCK_RE, (whole: string, id: string) => {
      kept.set(id, whole.trimEnd() + '\n');
      return '';
    });
    // a title written by another script when it created the file first: our header replaces it
    foreign = foreign.replace(/^\s*# Benchmark results\n(?:(?!\n## )[\s\S])*?(?=\n## |$)/, '').trim();
  }
  const out: string[] = [];
  for (const id of SECTION_ORDER) {
    const body = blocks[id];
    if (body !== undefined) out.push(`<!-- bench:${id} -->\n${body.trim()}\n<!-- /bench:${id} -->\n`);
    else if (kept.has(id)) out.push(kept.get(id)!);
  }
  for (const [id, whole] of kept) if (!(SECTION_ORDER as readonly string[]).includes(id)) out.push(whole);
  if (foreign) out.push(`${foreign}\n`);
  return out.join('\n');
}

export function writeResults(file: string, blocks: Partial<Record<SectionId, string>>, fresh: boolean): void {
  const exists = existsSync(file);
  if (fresh && exists) {
    const keep = path.join(path.dirname(file), 'out');
    mkdirSync(keep, { recursive: true });
    copyFileSync(file, path.join(keep, 'RESULTS.prev.md'));
  }
  const old = !fresh && exists ? readFileSync(file, 'utf8') : undefined;
  writeFileSync(file, mergeResults(old, blocks));
}
