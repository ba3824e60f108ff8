// The refresh cycle (kube-proxy style): declare the whole desired state, diff it against what the
// kernel was last given, send one transaction; publish and persist only after the kernel accepted it.
import type { Config } from './config.js';
import { courierName, courierNumbers } from './couriers.js';
import { errorMessage } from './errors.js';
import type { Logger } from './log.js';
import { type CourierRecord, type Snapshot, describeChanges, desiredElements, desiredMapping } from './mapping.js';
import { type ElementMap, diffElements, renderDelta, renderFullSync, renderRuleset } from './nft/render.js';
import type { NftRunner } from './nft/runner.js';
import type { PolicyRouting, RoutingSpec } from './fallback/routing.js';
import type { Resolution, Resolver } from './resolver.js';
import type { StateStore } from './state.js';

/** Even with no change seen, rewrite everything this often: repairs drift made behind our back. */
export const FULL_SYNC_INTERVAL_MS = 3600_000;

export interface ControllerDeps {
  readonly config: Config;
  readonly template: string;                       // nft/apns-proxy.nft
  readonly nft: NftRunner;
  readonly makeResolver: (config: Config) => Resolver;
  readonly store: StateStore;
  readonly clock: () => number;
  readonly logger: Logger;
  readonly routing?: PolicyRouting;                // TPROXY policy routing, when the fallback is on
}

export type SyncKind = 'full' | 'delta' | 'none';

export interface RefreshReport {
  readonly ok: boolean;
  readonly sync: SyncKind;
  readonly kernel: 'applied' | 'unchanged' | 'refused';  // what became of the transaction
  readonly changes: readonly string[];   // "courier 5: a,b → c"
  readonly elementsChanged: number;
  readonly counts: { fresh: number; stale: number; absent: number };
  readonly failed: readonly number[];    // couriers whose resolution failed this cycle
  readonly resolveMs: number;
  readonly nftMs: number;
  readonly error?: string;               // why ok is false
}

export class Controller {
  private config: Config;
  private resolver: Resolver;
  private applied: ElementMap = new Map();
  private appliedStamp: string | null = null;
  private appliedHandle: number | null = null;      // our table's kernel handle after the last full sync
  private needsFull = true;
  private lastFullAt = -Infinity;
  private dropTables: string[] = [];
  private routingDone: RoutingSpec | null = null;   // what ensure() last succeeded with
  private dropRouting: RoutingSpec[] = [];
  private records: ReadonlyMap<number, CourierRecord> = new Map();
  private current: Snapshot | undefined;             // published: the kernel accepted it
  private baseline: Snapshot | undefined;            // what change lines compare against
  private running: Promise<RefreshReport> | null = null;
  private queued: Promise<RefreshReport> | null = null;
  private readonly listeners: ((s: Snapshot) => void)[] = [];
  private readonly reportListeners: ((r: RefreshReport, s: Snapshot | undefined) => void)[] = [];

  constructor(private readonly deps: ControllerDeps) {
    this.config = deps.config;
    this.resolver = deps.makeResolver(deps.config);
  }

  get snapshot(): Snapshot | undefined {
    return this.current;
  }

  get currentConfig(): Config {
    return this.config;
  }

  onSnapshot(listener: (s: Snapshot) => void): void {
    this.listeners.push(listener);
  }

  /** Every finished cycle, accepted or not, with the snapshot then published (metrics). */
  onReport(listener: (r: RefreshReport, s: Snapshot | undefined) => void): void {
    this.reportListeners.push(listener);
  }

  /** Loads last-known-good from the state file; a corrupt file is logged and ignored. */
  async loadState(): Promise<void> {
    try {
      const state = await this.deps.store.load();
      const views = new Map((state?.couriers ?? []).map((c) => [c.n, c]));
      this.records = views;
      // What state says was programmed: the baseline that change lines are written against.
      if (state) this.baseline = Object.freeze({ at: state.savedAt, couriers: views });
      if (state) this.deps.logger.info(`loaded last-known-good for ${state.couriers.filter((c) => c.addresses.length).length} couriers from state`);
    } catch (err) {
      this.deps.logger.error(`${errorMessage(err)}; starting without last-known-good`);
      this.records = new Map();
    }
  }

  /**
   * Daemon start: program the kernel from state before any resolution (full sync), so forwarding
   * works even while upstream DNS is down. Throws when the kernel refuses.
   */
  async programFromState(): Promise<RefreshReport> {
    await this.loadState();
    const report = await this.cycle(undefined);
    if (!report.ok) throw new Error(report.error);
    return report;
  }

  /**
   * One-shot use (`apns-proxy refresh` without a daemon): take the kernel's current map as the
   * baseline when its rules carry our stamp, so an unchanged mapping sends no transaction.
   */
  async adoptKernel(): Promise<void> {
    const live = await this.deps.nft.readMap(this.config.nft.table);
    const { stamp } = renderRuleset(this.deps.template, this.config);
    if (live && live.stamp === stamp) {
      this.applied = live.elements;
      this.appliedStamp = stamp;
      this.appliedHandle = await this.deps.nft.tableHandle(this.config.nft.table);
      this.needsFull = false;
      this.lastFullAt = this.deps.clock();
    }
  }

  /** A refresh requested by a person or the fallback: runs after the current one if busy (coalesced). */
  refresh(): Promise<RefreshReport> {
    if (!this.running) return this.start();
    this.queued ??= this.running.catch(() => undefined).then(() => {
      this.queued = null;
      return this.start();
    });
    return this.queued;
  }

  /** A scheduled tick: skipped (not queued) while a cycle is still running, so cycles never overlap. */
  tick(): Promise<RefreshReport> | null {
    if (this.running) {
      this.deps.logger.warn('refresh: previous cycle still running, skipping this tick');
      return null;
    }
    return this.start();
  }

  /** Applies a new, already validated config: rules that changed force a full sync. */
  reload(config: Config): void {
    if (config.nft.table !== this.config.nft.table) this.dropTables.push(this.config.nft.table);
    const old = this.config.fallback;
    if (old.enabled && (!config.fallback.enabled || old.mark !== config.fallback.mark || old.table !== config.fallback.table)) {
      this.dropRouting.push({ mark: old.mark, table: old.table });
    }
    this.config = config;
    this.resolver = this.deps.makeResolver(config);
    this.needsFull = true;
  }

  /** Waits for any cycle in progress (used on shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.queued) await (this.queued ?? this.running)?.catch(() => undefined);
  }

  private start(): Promise<RefreshReport> {
    const p = this.resolveAll().then((results) => this.cycle(results));
    this.running = p.finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async resolveAll(): Promise<{ results: Map<number, Resolution>; ms: number }> {
    const t0 = this.deps.clock();
    const numbers = courierNumbers(this.config);
    const names = numbers.map((n) => courierName(this.config.couriers.template, n));
    const byName = await this.resolver.resolveMany(names, this.config.resolver.concurrency);
    const results = new Map<number, Resolution>();
    numbers.forEach((n, i) => results.set(n, byName.get(names[i]!)!));
    return { results, ms: this.deps.clock() - t0 };
  }

  private async cycle(resolved: { results: Map<number, Resolution>; ms: number } | undefined): Promise<RefreshReport> {
    const report = await this.runCycle(resolved);
    for (const l of this.reportListeners) l(report, this.current);
    return report;
  }

  private async runCycle(resolved: { results: Map<number, Resolution>; ms: number } | undefined): Promise<RefreshReport> {
    const { config, deps } = this;
    const now = deps.clock();
    const { snapshot, warnings } = desiredMapping({ config, previous: this.records, results: resolved?.results, now });
    for (const w of warnings) deps.logger.warn(w);
    const failed = [...(resolved?.results ?? [])].filter(([, r]) => r.kind === 'error').map(([n]) => n);
    const counts = { fresh: 0, stale: 0, absent: 0 };
    for (const c of snapshot.couriers.values()) counts[c.state]++;
    const desired = desiredElements(snapshot);
    const { text: ruleset, stamp } = renderRuleset(deps.template, config);

    let full = this.needsFull || stamp !== this.appliedStamp || now - this.lastFullAt >= FULL_SYNC_INTERVAL_MS;
    if (!full && !(await this.tableIntact())) full = true;
    const diff = diffElements(this.applied, desired);
    const script = full ? renderFullSync(ruleset, config.nft.table, desired, this.dropTables) : renderDelta(config.nft.table, diff);
    const sync: SyncKind = full ? 'full' : script ? 'delta' : 'none';
    const base = { sync, counts, failed, resolveMs: resolved?.ms ?? 0, elementsChanged: diff.remove.length + diff.add.length };

    const t0 = deps.clock();
    if (script) {
      try {
        await deps.nft.apply(script);
      } catch (err) {
        // The kernel kept its old state; we no longer know exactly what it holds: full sync next time.
        this.needsFull = true;
        deps.logger.error(`refresh: ${errorMessage(err)}`);
        return { ...base, ok: false, kernel: 'refused', changes: [], nftMs: deps.clock() - t0, error: errorMessage(err) };
      }
    }
    const nftMs = deps.clock() - t0;
    if (full) this.routingDone = null;  // a full sync re-checks the routing too (repairs drift)
    const routingError = await this.syncRouting();
    if (full) {
      this.needsFull = false;
      this.lastFullAt = now;
      this.dropTables = [];
      this.appliedHandle = await deps.nft.tableHandle(config.nft.table).catch(() => null);
    }
    this.applied = desired;
    this.appliedStamp = stamp;
    const changes = describeChanges(this.baseline, snapshot);
    this.records = snapshot.couriers;
    this.current = snapshot;
    this.baseline = snapshot;
    for (const line of changes) deps.logger.info(line);
    this.logFailures(snapshot, failed);
    for (const l of this.listeners) l(snapshot);

    let error: string | undefined = routingError;
    try {
      await deps.store.save(snapshot);
    } catch (err) {
      error = `kernel programmed but ${errorMessage(err)}`;
      deps.logger.error(`refresh: ${error}`);
    }
    if (!error && failed.length > 0) error = `resolution failed for ${failed.length} courier(s): ${this.failureSummary(snapshot, failed)}`;
    deps.logger.info(
      `refresh: ${counts.fresh} fresh, ${counts.stale} stale, ${counts.absent} absent; ${sync} sync` +
        `${sync === 'delta' ? ` (${base.elementsChanged} elements)` : ''}; resolve ${base.resolveMs} ms, nft ${nftMs} ms`,
    );
    return { ...base, ok: error === undefined, kernel: script ? 'applied' : 'unchanged', changes, nftMs, ...(error ? { error } : {}) };
  }

  /**
   * Cheap check each cycle (one `nft list tables`): a firewall reload (`flush ruleset`) or a hand
   * edit re-creates or removes our table; then its handle differs and we rewrite it at once
   * instead of waiting for the hourly full sync.
   */
  private async tableIntact(): Promise<boolean> {
    if (this.appliedHandle === null) return true;  // unknown (adopted from the kernel): rely on stamps
    const handle = await this.deps.nft.tableHandle(this.config.nft.table).catch(() => null);
    if (handle === this.appliedHandle) return true;
    this.deps.logger.warn(`refresh: table inet ${this.config.nft.table} was ${handle === null ? 'removed' : 're-created'} behind our back; full sync`);
    return false;
  }

  /**
   * Keeps the fallback's policy routing in place: retried every cycle until it succeeds, removed
   * when a reload turned the fallback off or moved it. Returns an error message, if any.
   */
  private async syncRouting(): Promise<string | undefined> {
    const { routing, logger } = this.deps;
    if (!routing) return undefined;
    const fb = this.config.fallback;
    try {
      for (const spec of this.dropRouting) await routing.remove(spec);
      this.dropRouting = [];
      if (!fb.enabled) return undefined;
      if (this.routingDone?.mark === fb.mark && this.routingDone.table === fb.table) return undefined;
      await routing.ensure({ mark: fb.mark, table: fb.table });
      this.routingDone = { mark: fb.mark, table: fb.table };
      return undefined;
    } catch (err) {
      this.routingDone = null;
      logger.error(`fallback routing: ${errorMessage(err)}`);
      return `fallback routing: ${errorMessage(err)}`;
    }
  }

  /** One warn line per cycle rather than one per courier: an upstream outage fails them all. */
  private logFailures(snapshot: Snapshot, failed: readonly number[]): void {
    if (failed.length === 0) return;
    const kept = failed.filter((n) => snapshot.couriers.get(n)?.state === 'stale').length;
    this.deps.logger.warn(
      `refresh: resolution failed for ${failed.length} courier(s) (${this.failureSummary(snapshot, failed)}); ` +
        `kept last-known-good for ${kept}`,
    );
  }

  private failureSummary(snapshot: Snapshot, failed: readonly number[]): string {
    const byError = new Map<string, number[]>();
    for (const n of failed) {
      const code = snapshot.couriers.get(n)?.error?.split(':')[0] ?? 'unknown';
      byError.set(code, [...(byError.get(code) ?? []), n]);
    }
    return [...byError].map(([code, ns]) => `${code} for ${ranges(ns)}`).join('; ');
  }
}

/** [1,2,3,7] → "1-3,7": keeps failure lines short when a whole range fails. */
export function ranges(ns: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length; i++) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(i === j ? `${ns[i]}` : `${ns[i]}-${ns[j]}`);
    i = j;
  }
  return out.join(',');
}
