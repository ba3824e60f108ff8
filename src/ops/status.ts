// `apns-proxy status` (pure): joins the state file with the live kernel map, one row per name of
// every enabled set (the production couriers first, as always).
import type { Config } from '../core/config.js';
import { PRODUCTION_SET } from '../core/namesets.js';
import { absentReason, type CourierState, type NameView, namesOf } from '../sync/mapping.js';
import type { LiveMap } from '../nft/runner.js';
import { type StateFile, recordsOf } from '../sync/state.js';

export interface StatusRow {
  readonly set: string;                       // the name set's id ("couriers": the production couriers)
  readonly name: string;
  readonly courier: number | null;            // N, for numbered sets
  readonly vip: string;
  readonly state: CourierState | 'unknown';
  readonly addresses: readonly string[];      // what the last refresh decided to program
  readonly kernel: readonly string[] | null;  // distinct addresses in the live map (null: not readable)
  readonly connections: number | null;        // new connections since the daemon started (element counters + its offsets); null: unknown
  readonly ageSeconds: number | null;         // since the answer that gave these addresses
  readonly ttl: number | null;
  readonly note: string;                      // why absent, last error, or a kernel/state mismatch
}

export function statusRows(config: Config, state: StateFile | null, live: LiveMap | null | undefined, now: number): StatusRow[] {
  const byName = recordsOf(state, config.couriers.template);
  const kernelByVip = new Map<string, Set<string>>();
  const packetsByName = new Map<string, number>();
  for (const e of live?.elements.values() ?? []) {
    if (!kernelByVip.has(e.vip)) kernelByVip.set(e.vip, new Set());
    kernelByVip.get(e.vip)!.add(e.address);
    if (e.name !== undefined && e.packets !== undefined) packetsByName.set(e.name, (packetsByName.get(e.name) ?? 0) + e.packets);
  }
  const offsets = state?.connections ?? {};
  const { entries } = namesOf(config, new Map(Object.entries(state?.pool ?? {})));
  return entries.map((entry) => {
    const c: NameView | undefined = byName.get(entry.name);
    const vip = entry.vip;
    const kernel = live === undefined ? null : [...(kernelByVip.get(vip) ?? [])].sort();
    let state: StatusRow['state'] = c?.state ?? 'unknown';
    if (c && state !== 'absent' && c.resolvedAt !== null && now - c.resolvedAt > config.refresh.maxStaleSeconds * 1000) state = 'absent';
    const programmed = c?.programmed ?? [];
    const notes: string[] = [];
    const why = state === 'absent' && c ? absentReason(c) : '';
    if (why) notes.push(why);
    if (c?.error && !why.includes(c.error)) notes.push(`last error: ${c.error}`);
    if (kernel && kernel.join(',') !== [...programmed].sort().join(',')) notes.push('kernel map differs from state');
    // Unknown without a readable map; a name without elements has had none since its last re-creation.
    const counted = packetsByName.get(entry.name);
    const connections = live == null ? null : counted === undefined && kernel?.length ? null : (counted ?? 0) + (offsets[entry.name] ?? 0);
    return {
      set: entry.set, name: entry.name, courier: entry.n, vip, state, addresses: programmed, kernel, connections,
      ageSeconds: c?.resolvedAt != null ? Math.max(0, Math.round((now - c.resolvedAt) / 1000)) : null,
      ttl: c?.ttl ?? null, note: notes.join('; '),
    };
  });
}

export function formatAge(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return `${rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')}\n`;
}

const conns = (r: StatusRow) => (r.connections === null ? '-' : String(r.connections));

/**
 * The text form. Default: the production couriers' table as it always was (COURIER VIP STATE AGE
 * ADDRESSES NOTE: scripts and tests read it), then every other set's names with their connections,
 * then the couriers' connections in one line. `wide`: one table of every name with every column.
 */
export function formatStatus(rows: readonly StatusRow[], wide = false): string {
  if (wide) {
    const out = [['SET', 'NAME', 'VIP', 'STATE', 'AGE', 'CONNS', 'ADDRESSES', 'NOTE']];
    for (const r of rows) out.push([r.set, r.name, r.vip, r.state, formatAge(r.ageSeconds), conns(r), (r.kernel ?? r.addresses).join(',') || '-', r.note]);
    return table(out);
  }
  const couriers = rows.filter((r) => r.set === PRODUCTION_SET);
  const others = rows.filter((r) => r.set !== PRODUCTION_SET);
  const first = [['COURIER', 'VIP', 'STATE', 'AGE', 'ADDRESSES', 'NOTE']];
  for (const r of couriers) first.push([String(r.courier), r.vip, r.state, formatAge(r.ageSeconds), (r.kernel ?? r.addresses).join(',') || '-', r.note]);
  let text = table(first);
  if (others.length > 0) {
    const second = [['SET', 'NAME', 'VIP', 'STATE', 'AGE', 'CONNS', 'ADDRESSES', 'NOTE']];
    for (const r of others) second.push([r.set, r.name, r.vip, r.state, formatAge(r.ageSeconds), conns(r), (r.kernel ?? r.addresses).join(',') || '-', r.note]);
    text += `\n${table(second)}`;
  }
  const counted = couriers.filter((r) => r.connections !== null && r.connections > 0);
  if (couriers.some((r) => r.connections !== null)) {
    const total = counted.reduce((sum, r) => sum + r.connections!, 0);
    text += `\nnew connections since start, couriers: ${total}${counted.length ? ` (${counted.map((r) => `${r.courier}: ${r.connections}`).join(', ')})` : ''}\n`;
  }
  return text;
}
