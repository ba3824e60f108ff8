// `apns-proxy status` (pure): joins the state file with the live kernel map.
import type { Config } from '../core/config.js';
import { courierNumbers, vipFor } from '../core/couriers.js';
import { absentReason, type CourierState, type CourierView } from '../sync/mapping.js';
import type { LiveMap } from '../nft/runner.js';
import type { StateFile } from '../sync/state.js';

export interface StatusRow {
  readonly courier: number;
  readonly vip: string;
  readonly state: CourierState | 'unknown';
  readonly addresses: readonly string[];      // what the last refresh decided to program
  readonly kernel: readonly string[] | null;  // distinct addresses in the live map (null: not readable)
  readonly ageSeconds: number | null;         // since the answer that gave these addresses
  readonly ttl: number | null;
  readonly note: string;                      // why absent, last error, or a kernel/state mismatch
}

export function statusRows(config: Config, state: StateFile | null, live: LiveMap | null | undefined, now: number): StatusRow[] {
  const byN = new Map<number, CourierView>((state?.couriers ?? []).map((c) => [c.n, c]));
  const kernelByVip = new Map<string, Set<string>>();
  for (const e of live?.elements.values() ?? []) {
    if (!kernelByVip.has(e.vip)) kernelByVip.set(e.vip, new Set());
    kernelByVip.get(e.vip)!.add(e.address);
  }
  return courierNumbers(config).map((n) => {
    const c = byN.get(n);
    const vip = vipFor(config, n);
    const kernel = live === undefined ? null : [...(kernelByVip.get(vip) ?? [])].sort();
    let state: StatusRow['state'] = c?.state ?? 'unknown';
    if (c && state !== 'absent' && c.resolvedAt !== null && now - c.resolvedAt > config.refresh.maxStaleSeconds * 1000) state = 'absent';
    const programmed = c?.programmed ?? [];
    const notes: string[] = [];
    const why = state === 'absent' && c ? absentReason(c) : '';
    if (why) notes.push(why);
    if (c?.error && !why.includes(c.error)) notes.push(`last error: ${c.error}`);
    if (kernel && kernel.join(',') !== [...programmed].sort().join(',')) notes.push('kernel map differs from state');
    return {
      courier: n, vip, state, addresses: programmed, kernel,
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

export function formatStatus(rows: readonly StatusRow[]): string {
  const table = [['COURIER', 'VIP', 'STATE', 'AGE', 'ADDRESSES', 'NOTE']];
  for (const r of rows) {
    const addrs = r.kernel ?? r.addresses;
    table.push([String(r.courier), r.vip, r.state, formatAge(r.ageSeconds), addrs.join(',') || '-', r.note]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return `${table.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')}\n`;
}
