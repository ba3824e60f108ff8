// What the status page (GET / and /status.json on metrics.listen) shows: the rows of
// `apns-proxy status --json`, built from the live generation and the live kernel map, with the
// health that /healthz reports, the last refresh reports and the DNS and fallback counters.
import type { Config } from '../core/config.js';
import type { LiveMap } from '../nft/runner.js';
import type { RefreshReport } from '../sync/controller.js';
import type { Generation } from '../sync/mapping.js';
import type { StateFile } from '../sync/state.js';
import type { Health } from './metrics.js';
import { type StatusRow, statusRows } from './status.js';

/** One refresh cycle, as the page lists it. */
export interface RefreshSummary {
  readonly at: string;            // ISO time the report arrived
  readonly durationMs: number;    // resolve plus nft
  readonly result: 'ok' | 'failed';
  readonly sync: string;
  readonly kernel: string;
  readonly changes: number;
  readonly failures: number;      // names whose resolution failed this cycle
  readonly error?: string;
}

/**
 * The page's data. The name-set arrays (today `couriers`) are exactly what `apns-proxy status
 * --json` prints; the page renders every top-level array of rows with a `vip` as a table, so new
 * name sets (and new columns such as per-element connection counters) need no page change.
 */
export interface StatusDocument {
  readonly generatedAt: string;
  readonly health: { readonly ok: boolean } & Record<string, unknown>;
  readonly savedAt: number | null;
  readonly kernelTable: 'present' | 'absent' | 'unreadable';
  readonly couriers: readonly StatusRow[];
  readonly refreshes: readonly RefreshSummary[];
  readonly dns: Record<string, unknown> | null;
  readonly fallback: Record<string, unknown> | null;
  readonly [nameSet: string]: unknown;
}

export interface StatusSourceDeps {
  readonly config: () => Config;                      // the running configuration (until a generation exists)
  readonly generation: () => Generation | undefined;  // what the kernel accepted
  readonly readMap: (table: string) => Promise<LiveMap | null>;
  readonly health: () => Health;
  readonly dns?: () => object | undefined;
  readonly fallback?: () => object | undefined;
  readonly clock: () => number;
  /** Counter offsets per name (connections counted by elements a sync re-created), as the state file keeps them. */
  readonly connectionOffsets?: () => ReadonlyMap<string, number>;
  /** Refresh reports kept (default 10). */
  readonly keep?: number;
  /** The live map is read at most this often (default 2000 ms): each read runs nft. */
  readonly mapCacheMs?: number;
}

export class StatusSource {
  private readonly reports: RefreshSummary[] = [];
  private live: { at: number; map: Promise<LiveMap | null | undefined> } | undefined;

  constructor(private readonly deps: StatusSourceDeps) {}

  /** Called with every refresh report (the controller's onReport). */
  recorded(r: RefreshReport): void {
    this.reports.unshift({
      at: new Date(this.deps.clock()).toISOString(), durationMs: r.resolveMs + r.nftMs, result: r.ok ? 'ok' : 'failed',
      sync: r.sync, kernel: r.kernel, changes: r.changes.length, failures: r.failed.length, ...(r.error ? { error: r.error } : {}),
    });
    this.reports.length = Math.min(this.reports.length, this.deps.keep ?? 10);
  }

  private liveMap(table: string): Promise<LiveMap | null | undefined> {
    const now = this.deps.clock();
    if (!this.live || now - this.live.at >= (this.deps.mapCacheMs ?? 2000)) {
      // undefined: unreadable (as in `status`)
      this.live = { at: now, map: this.deps.readMap(table).catch(() => undefined) };
    }
    return this.live.map;
  }

  async document(): Promise<StatusDocument> {
    const g = this.deps.generation();
    const config = g?.config ?? this.deps.config();
    const live = await this.liveMap(config.nft.table);
    // The generation stands in for the state file: what the daemon would write now.
    const state: StateFile | null = g ? {
      version: 2, savedAt: g.snapshot.at, names: [...g.snapshot.names.values()], pool: Object.fromEntries(g.snapshot.pool),
      connections: Object.fromEntries(this.deps.connectionOffsets?.() ?? []),
    } : null;
    const now = this.deps.clock();
    const h = this.deps.health();
    return {
      generatedAt: new Date(now).toISOString(),
      health: { ok: h.ok, ...h.body },
      savedAt: state?.savedAt ?? null,
      kernelTable: live === undefined ? 'unreadable' : live ? 'present' : 'absent',
      couriers: statusRows(config, state, live, now),
      refreshes: [...this.reports],
      dns: (this.deps.dns?.() as Record<string, unknown> | undefined) ?? null,
      fallback: (this.deps.fallback?.() as Record<string, unknown> | undefined) ?? null,
    };
  }
}
