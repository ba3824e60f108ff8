// The refresh cycle (kube-proxy style): declare the whole desired state, diff it against what the
// kernel was last given, send one transaction; publish and persist only after the kernel accepted it.
import type { Config } from '../core/config.js';
import { courierForVip, courierName } from '../core/couriers.js';
import { PRODUCTION_SET } from '../core/namesets.js';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type Generation, type NameRecord, type Snapshot, allowedAddress, describeChanges, desiredDirect, desiredElements, desiredMapping, desiredPorts, label, namesOf } from './mapping.js';
import { cidrContains, parseIPv4, sortUniqueIPv4 } from '../core/net.js';
import { type DirectElement, type ElementMap, type PortElement, STAMP_PREFIX, diffElements, diffSize, renderDelta, renderFullSync, renderRuleset, upstreamNets } from '../nft/render.js';
import { tableDrift } from '../nft/drift.js';
import { type LiveMap, type LiveTable, type NftRunner, tableOwnerOf } from '../nft/runner.js';
import type { Resolution, Resolver } from '../dns/client/resolver.js';
import { type StateStore, recordsOf } from './state.js';

/** The fallback's policy routing as the controller drives it (fallback/routing.ts implements it). */
export interface RoutingSpec { readonly mark: number; readonly table: number }

export interface PolicyRouting {
  ensure(spec: RoutingSpec): Promise<void>;
  remove(spec: RoutingSpec): Promise<void>;
}

/** Even with no change seen, rewrite everything this often: repairs drift made behind our back. */
export const FULL_SYNC_INTERVAL_MS = 3600_000;

export interface ControllerDeps {
  readonly config: Config;
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
  readonly changes: readonly string[];   // "courier 5: a,b → c", "init.push.apple.com: a → b"
  readonly elementsChanged: number;      // map, vipports, vips and direct elements the transaction touched
  readonly counts: { fresh: number; stale: number; absent: number };  // the production couriers
  readonly sets: Readonly<Record<string, { fresh: number; stale: number; absent: number }>>;  // every set, by id
  readonly failed: readonly number[];    // production couriers whose resolution failed this cycle
  readonly failedNames: readonly string[];  // every name whose resolution failed this cycle
  readonly resolveMs: number;
  readonly nftMs: number;
  readonly resolved: boolean;            // false: programmed from last-known-good only (daemon start)
  readonly drift?: string;               // our table (map, sets, the table itself) differed from what was applied: why, each part (repaired by this cycle)
  readonly stateError?: string;          // the state file could not be written (the kernel was programmed all the same)
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
  private appliedPorts: readonly PortElement[] = [];
  private appliedDirect: readonly DirectElement[] = [];
  private records: ReadonlyMap<string, NameRecord> = new Map();
  private persisted: ReadonlyMap<string, NameRecord> = new Map();  // what the state file holds
  private pool: ReadonlyMap<string, string> = new Map();           // exact name → VIP (stable; state file)
  private connOffset = new Map<string, number>();                  // name → connections counted before its elements were re-created
  private forcedDrift: string | null = null;          // set by forceFullSync: reported as drift
  private current: Generation | undefined;           // published: the kernel accepted it
  private baseline: Snapshot | undefined;            // what change lines compare against
  private running: Promise<RefreshReport> | null = null;
  private queued: Promise<RefreshReport> | null = null;
  private readonly listeners: ((g: Generation) => void)[] = [];
  private readonly reportListeners: ((r: RefreshReport, g: Generation | undefined) => void)[] = [];

  constructor(private readonly deps: ControllerDeps) {
    this.config = deps.config;
    this.resolver = deps.makeResolver(deps.config);
  }

  /** The last generation the kernel accepted (undefined before the first sync). */
  get generation(): Generation | undefined {
    return this.current;
  }

  get snapshot(): Snapshot | undefined {
    return this.current?.snapshot;
  }

  /** Each generation the kernel accepts, as it is published. */
  onGeneration(listener: (g: Generation) => void): void {
    this.listeners.push(listener);
  }

  /** Every finished cycle, accepted or not, with the snapshot then published (metrics). */
  onReport(listener: (r: RefreshReport, g: Generation | undefined) => void): void {
    this.reportListeners.push(listener);
  }

  /**
   * Loads last-known-good from the state file. An unusable file (corrupt, foreign, too big, a
   * directory) is logged and set aside as state.json.bad, never silently overwritten.
   */
  async loadState(): Promise<'loaded' | 'none' | 'unusable'> {
    const { store, logger } = this.deps;
    try {
      const state = await store.load();
      const views = recordsOf(state, this.config.couriers.template);
      this.records = views;
      this.persisted = views;
      this.pool = new Map(Object.entries(state?.pool ?? {}));
      // What state says was programmed: the baseline that change lines are written against.
      const couriers = new Map([...views.values()].filter((v) => v.set === PRODUCTION_SET && v.n !== null).map((v) => [v.n!, v]));
      if (state) this.baseline = Object.freeze({ at: state.savedAt, names: views, couriers, pool: this.pool });
      if (state) {
        const known = [...views.values()].filter((c) => c.addresses.length);
        const other = known.filter((c) => c.set !== PRODUCTION_SET).length;
        logger.info(`loaded last-known-good for ${known.length - other} couriers${other ? ` and ${other} other names` : ''} from state${state.legacyCouriers ? ' (version 1, migrated)' : ''}`);
      }
      return state ? 'loaded' : 'none';
    } catch (err) {
      this.records = new Map();
      const aside = await store.setAside?.().catch((e: unknown) => { logger.warn(`state: cannot set the unusable file aside: ${errorMessage(e)}`); return null; });
      logger.error(`${errorMessage(err)}; starting from the live kernel map${aside ? ` (the file was moved to ${aside})` : ''}`);
      return 'unusable';
    }
  }

  /**
   * Never program less than the kernel already has: couriers the state file knows nothing about
   * (missing or unusable file) take their addresses from our live map, when its stamp says it is ours.
   */
  async adoptLiveMap(reason: string): Promise<number> {
    const { config, deps } = this;
    let live;
    try {
      live = await deps.nft.readMap(config.nft.table);
    } catch (err) {
      deps.logger.warn(`start: cannot read the live kernel map to adopt it: ${errorMessage(err)}`);
      return 0;
    }
    if (!live?.stamp?.startsWith(STAMP_PREFIX)) return 0;
    // The element comments name each VIP; elements without one (an older version wrote them) are
    // production couriers by their VIP. Pool VIPs the state file lost are taken back from the comments.
    const pool = new Map(this.pool);
    const exact = new Set(config.sets.flatMap((s) => (s.kind === 'names' ? s.names : [])));
    const byName = new Map<string, string[]>();
    for (const e of live.elements.values()) {
      let name = e.name;
      if (name === undefined) {
        const n = courierForVip(config, e.vip);
        if (n !== undefined) name = courierName(config.couriers.template, n);
      }
      if (name === undefined) continue;
      const vip = parseIPv4(e.vip);
      if (exact.has(name) && !pool.has(name) && vip !== undefined && cidrContains(config.vipPool, vip) && ![...pool.values()].includes(e.vip)) pool.set(name, e.vip);
      byName.set(name, [...(byName.get(name) ?? []), e.address]);
    }
    this.pool = pool;
    const entries = new Map(namesOf(config, pool).entries.map((e) => [e.name, e]));
    const now = deps.clock();
    const records = new Map(this.records);
    let adopted = 0;
    for (const [name, addresses] of byName) {
      const entry = entries.get(name);
      if (entry === undefined) continue;  // not a name of the current sets
      const known = records.get(name);
      if (known && known.resolvedAt !== null) continue;  // the state file knows better (incl. NXDOMAIN)
      const usable = sortUniqueIPv4(addresses).filter((a) => allowedAddress(config, a, entry.set));
      if (usable.length === 0) continue;
      // resolvedAt = now: the kernel held these a moment ago; they age from here like any last-known-good
      records.set(name, { name, set: entry.set, n: entry.n, addresses: usable, resolvedAt: now, ttl: null, exists: true, checkedAt: null, error: null });
      adopted++;
    }
    this.records = records;
    const others = [...byName.keys()].filter((name) => records.get(name)?.set !== PRODUCTION_SET && entries.has(name) && records.get(name)?.resolvedAt === now).length;
    if (adopted > 0) deps.logger.warn(`start: adopted ${adopted - others} couriers${others ? ` and ${others} other names` : ''} from the live kernel map (${reason})`);
    return adopted;
  }

  /**
   * Daemon start: program the kernel from state before any resolution (full sync), so forwarding
   * works even while upstream DNS is down. Throws when the kernel refuses.
   */
  async programFromState(): Promise<RefreshReport> {
    const loaded = await this.loadState();
    if (loaded !== 'loaded') await this.adoptLiveMap(loaded === 'none' ? 'no state file' : 'the state file is unusable');
    else await this.adoptLiveMap('couriers the state file has never resolved');
    const report = await this.cycle(undefined);
    // Only a refused kernel stops the start: a state file that cannot be written is reported, not fatal.
    if (report.kernel === 'refused') throw new ApnsProxyError(report.error?.startsWith('E_NOT_OURS') ? 'E_NOT_OURS' : 'E_NFT', report.error ?? 'nft refused');
    return report;
  }

  /**
   * One-shot use (`apns-proxy refresh` without a daemon): take the kernel's current map as the
   * baseline when its rules carry our stamp, so an unchanged mapping sends no transaction.
   */
  async adoptKernel(): Promise<void> {
    const live = await this.deps.nft.readTable(this.config.nft.table);
    const { stamp } = renderRuleset(this.config);
    if (live?.map && live.map.stamp === stamp) {
      this.applied = live.map.elements;
      this.appliedPorts = live.ports ?? [];
      this.appliedDirect = live.direct ?? [];
      this.appliedStamp = stamp;
      this.appliedHandle = live.handle;
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

  /**
   * The next cycle rewrites the whole table (e.g. the fallback caught a connection to a VIP the
   * map should serve: the kernel does not hold what we think). Reported as drift.
   */
  forceFullSync(reason: string): void {
    this.needsFull = true;
    this.forcedDrift ??= reason;
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

  /** Every name of every enabled set, resolved with the same rules (one resolver, one pass). */
  private async resolveAll(): Promise<{ results: Map<string, Resolution>; ms: number }> {
    const t0 = this.deps.clock();
    const names = namesOf(this.config, this.pool).entries.map((e) => e.name);
    const byName = await this.resolver.resolveMany(names, this.config.resolver.concurrency);
    const results = new Map<string, Resolution>();
    for (const name of names) results.set(name, byName.get(name)!);
    return { results, ms: this.deps.clock() - t0 };
  }

  /** New connections per name since the daemon started: kernel counters + what re-created elements had counted. */
  connections(live: LiveMap | null): Map<string, number> {
    const out = new Map(this.connOffset);
    for (const e of live?.elements.values() ?? []) {
      if (e.name !== undefined && e.packets !== undefined) out.set(e.name, (out.get(e.name) ?? 0) + e.packets);
    }
    return out;
  }

  /** The counter offsets (persisted with the state so `status` can add them to the kernel's counters). */
  get connectionOffsets(): ReadonlyMap<string, number> {
    return this.connOffset;
  }

  /** Elements about to be deleted take their counters with them: add what they counted to the offsets. */
  private carryCounters(live: LiveMap | null, removed: Iterable<{ vip: string; slot: number }> | 'all'): void {
    if (live === null || this.current === undefined) return;  // the first sync of this process: counting starts after it
    const keys = removed === 'all' ? null : new Set([...removed].map((e) => `${e.vip} . ${e.slot}`));
    for (const [key, e] of live.elements) {
      if (keys !== null && !keys.has(key)) continue;
      if (e.name === undefined || !e.packets) continue;
      this.connOffset.set(e.name, (this.connOffset.get(e.name) ?? 0) + e.packets);
    }
  }

  private async cycle(resolved: { results: Map<string, Resolution>; ms: number } | undefined): Promise<RefreshReport> {
    const report = await this.runCycle(resolved);
    for (const l of this.reportListeners) l(report, this.current);
    return report;
  }

  private async runCycle(resolved: { results: Map<string, Resolution>; ms: number } | undefined): Promise<RefreshReport> {
    const { config, deps } = this;
    const now = deps.clock();
    const { snapshot, warnings } = desiredMapping({ config, previous: this.records, results: resolved?.results, pool: this.pool, now });
    for (const w of warnings) deps.logger.warn(w);
    const failedNames = [...(resolved?.results ?? [])].filter(([, r]) => r.kind === 'error').map(([name]) => name);
    const failed = failedNames.map((name) => snapshot.names.get(name)).filter((v) => v?.set === PRODUCTION_SET && v.n !== null).map((v) => v!.n!);
    const counts = { fresh: 0, stale: 0, absent: 0 };
    for (const c of snapshot.couriers.values()) counts[c.state]++;
    const sets: Record<string, { fresh: number; stale: number; absent: number }> = {};
    for (const s of config.sets) sets[s.id] = { fresh: 0, stale: 0, absent: 0 };
    for (const c of snapshot.names.values()) if (sets[c.set]) sets[c.set]![c.state]++;
    const desired = desiredElements(snapshot);
    const ports = desiredPorts(config, snapshot);
    const direct = desiredDirect(config, snapshot);
    const { text: ruleset, stamp } = renderRuleset(config);

    let drift = this.forcedDrift ?? undefined;
    this.forcedDrift = null;
    let full = this.needsFull || stamp !== this.appliedStamp || now - this.lastFullAt >= FULL_SYNC_INTERVAL_MS;
    let seen: LiveTable | null | undefined;  // our table as this cycle's drift check listed it (undefined: not listed)
    if (!full) {
      ({ why: drift, live: seen } = await this.findDrift(stamp));
      if (drift !== undefined) {
        deps.logger.warn(`refresh: ${drift}; full sync repairs it`);
        full = true;
      }
    }
    const diff = diffElements(this.applied, desired, this.appliedPorts, ports, this.appliedDirect, direct);
    const script = full ? renderFullSync(ruleset, config.nft.table, desired, await this.ownedDrops(), ports, direct) : renderDelta(config.nft.table, diff);
    const sync: SyncKind = full ? 'full' : script ? 'delta' : 'none';
    const base = {
      sync, counts, sets, failed, failedNames, resolveMs: resolved?.ms ?? 0, elementsChanged: diffSize(diff),
      resolved: resolved !== undefined, ...(drift !== undefined ? { drift } : {}),
    };

    const t0 = deps.clock();
    // Never replace a table we did not write (nft.table "filter" would take the operator's firewall with it).
    // A full sync lists our table once, or takes the listing its drift check just made: whose the table is, and the
    // counters its elements take along. When that listing fails (nft broken, or a table of our name with sets we cannot
    // parse), ownership is asked from the map alone, as before the whole-table listing, and no counters are carried.
    const listed = full && seen === undefined ? await deps.nft.readTable(config.nft.table).catch(() => undefined) : seen;
    if (full && (listed !== undefined ? tableOwnerOf(listed) : await this.tableOwner()) === 'foreign') {
      this.needsFull = true;
      const error = `E_NOT_OURS: table inet ${config.nft.table} exists and was not written by apns-proxy (no map couriers4 with our stamp); refusing to replace it. Choose another nft.table, or delete that table yourself if it is a leftover`;
      deps.logger.error(`refresh: ${error}`);
      return { ...base, ok: false, kernel: 'refused', changes: [], nftMs: 0, error };
    }
    if (script) {
      // Counters live in the elements: those this transaction deletes hand their counts to the offsets.
      if (full || diff.remove.length > 0) this.carryCounters(listed?.map ?? null, full ? 'all' : diff.remove);
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
    this.appliedPorts = ports;
    this.appliedDirect = direct;
    this.appliedStamp = stamp;
    const changes = describeChanges(this.baseline, snapshot);
    this.records = snapshot.names;
    this.pool = snapshot.pool;
    this.current = Object.freeze({ config, snapshot });
    this.baseline = snapshot;
    for (const line of changes) deps.logger.info(line);
    this.logFailures(snapshot, failed);
    for (const l of this.listeners) l(this.current);

    let error: string | undefined = routingError;
    const stateError = await this.persist(snapshot);
    if (stateError !== undefined) error ??= `kernel programmed but ${stateError}`;
    const otherFailed = failedNames.length - failed.length;
    if (!error && failedNames.length > 0) {
      error = [
        ...(failed.length > 0 ? [`resolution failed for ${failed.length} courier(s): ${this.failureSummary(snapshot, failed)}`] : []),
        ...(otherFailed > 0 ? [`resolution failed for ${otherFailed} other name(s): ${this.otherFailures(snapshot, failedNames)}`] : []),
      ].join('; ');
    }
    const others = Object.entries(sets).filter(([id]) => id !== PRODUCTION_SET).map(([id, c]) => `${id} ${c.fresh}/${c.stale}/${c.absent}`);
    deps.logger.info(
      `refresh: ${counts.fresh} fresh, ${counts.stale} stale, ${counts.absent} absent; ${sync} sync` +
        `${sync === 'delta' ? ` (${base.elementsChanged} elements)` : ''}; resolve ${base.resolveMs} ms, nft ${nftMs} ms` +
        `${others.length ? `; other sets (fresh/stale/absent): ${others.join(', ')}` : ''}`,
    );
    return {
      ...base, ok: error === undefined, kernel: script ? 'applied' : 'unchanged', changes, nftMs,
      ...(stateError !== undefined ? { stateError } : {}), ...(error ? { error } : {}),
    };
  }

  /**
   * Writes last-known-good unless the snapshot knows less than the file it would replace (a courier
   * the file has an answer for and the snapshot has none: records lost at start). Returns the error.
   */
  private async persist(snapshot: Snapshot): Promise<string | undefined> {
    const lost = [...this.persisted.values()].filter((r) => r.resolvedAt !== null && snapshot.names.get(r.name)?.resolvedAt === null);
    if (lost.length > 0) {
      const ns = lost.filter((r) => r.set === PRODUCTION_SET && r.n !== null).map((r) => r.n!);
      const others = lost.filter((r) => r.set !== PRODUCTION_SET).map((r) => r.name);
      this.deps.logger.warn(`state: not written: it would forget ${[...(ns.length ? [`couriers ${ranges(ns)}`] : []), ...others].join(', ')}, which the file has answers for`);
      return undefined;
    }
    try {
      await this.deps.store.save(snapshot, this.connOffset);
      this.persisted = snapshot.names;
      return undefined;
    } catch (err) {
      this.deps.logger.error(`refresh: kernel programmed but ${errorMessage(err)}`);
      return errorMessage(err);
    }
  }

  private async tableOwner(): Promise<'absent' | 'ours' | 'foreign'> {
    try {
      return await this.deps.nft.tableOwner(this.config.nft.table);
    } catch {
      return 'absent';  // cannot tell: the transaction itself will fail loudly if nft is broken
    }
  }

  /** Tables a reload moved away from: dropped only when they are ours. */
  private async ownedDrops(): Promise<string[]> {
    const out: string[] = [];
    for (const table of this.dropTables) {
      const owner = await this.deps.nft.tableOwner(table).catch(() => 'absent' as const);
      if (owner === 'ours') out.push(table);
      else if (owner === 'foreign') this.deps.logger.warn(`refresh: leaving table inet ${table} alone: it is no longer ours (no apns-proxy stamp)`);
    }
    return out;
  }

  /**
   * Each cycle (one nft listing of our table): a firewall reload (`flush ruleset`) or a hand edit
   * re-creates or removes our table, or changes elements inside it (the map, vipports, vips, direct,
   * upstream); any difference from what we applied is drift, repaired by a full sync in the same
   * cycle instead of waiting for the hourly one. why: undefined when none; live: the listing
   * (undefined when nft could not list the table).
   */
  private async findDrift(stamp: string): Promise<{ why: string | undefined; live: LiveTable | null | undefined }> {
    const table = this.config.nft.table;
    try {
      const live = await this.deps.nft.readTable(table);
      const applied = {
        handle: this.appliedHandle, stamp, elements: this.applied, ports: this.appliedPorts, direct: this.appliedDirect,
        upstream: upstreamNets(this.config.allowedUpstreamNets),  // the stamp matched: these are the rules we applied
      };
      const why = tableDrift(table, applied, live);
      return { why: why.length ? why.join('; ') : undefined, live };
    } catch (err) {
      return { why: `cannot read the kernel table (${errorMessage(err)})`, live: undefined };
    }
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

  private otherFailures(snapshot: Snapshot, failedNames: readonly string[]): string {
    const bySet = new Map<string, number>();
    for (const name of failedNames) {
      const v = snapshot.names.get(name);
      if (v && v.set !== PRODUCTION_SET) bySet.set(v.set, (bySet.get(v.set) ?? 0) + 1);
    }
    return [...bySet].map(([set, k]) => `${k} in ${set}`).join(', ');
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
