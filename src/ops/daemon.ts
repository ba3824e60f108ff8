// `apns-proxy run`: program last-known-good, then refresh on schedule; SIGHUP reloads, SIGTERM stops.
// Real I/O (scheduler, signals, control socket) is handed in by the entry point.
import type { Config } from '../core/config.js';
import { label } from '../sync/mapping.js';
import { type Fallback, type FallbackDeps, startFallback } from '../fallback/listener.js';
import type { RelayAddon } from '../fallback/relay/index.js';
import { Controller, type ControllerDeps } from '../sync/controller.js';
import { join } from 'node:path';
import { LOCK_FILE, acquireLock, controlPath, requestControl, serveControl } from './control.js';
import { type DnsServer, startDnsServer } from '../dns/server.js';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import { sharedLookup } from '../fallback/lookup.js';
import type { Logger } from '../core/log.js';
import { Metrics, serveMetrics } from './metrics.js';
import { StatusSource } from './status-data.js';
import { type CompactorOptions, heapCompactor } from './compact.js';

export interface Scheduled { stop(): void }
export type Scheduler = (expression: string, task: () => void) => Scheduled;

export interface DaemonDeps extends Omit<ControllerDeps, 'logger'> {
  readonly logger: Logger & { setLevel?(level: Config['log']['level']): void };
  readonly schedule: Scheduler;
  readonly loadConfig: () => Promise<Config>;  // re-read on SIGHUP
  /** The native helper, loaded only when fallback.enabled (it is needed for nothing else). */
  readonly loadNative: () => RelayAddon;
  /** Tests may replace how the fallback listens and learns the original destination. */
  readonly fallbackOverrides?: Pick<FallbackDeps, 'listen' | 'originalDestination'>;
  /** V8's full collection and heap size, for giving memory back after a cycle that grew the heap (compact.ts). */
  readonly heap?: Pick<CompactorOptions, 'gc' | 'heap'>;
}

/** How long stop() waits for a cycle in progress before the process may exit. */
const STOP_WAIT_MS = 2000;

/** At-connect resolutions ask for a refresh at most this often (a burst of misses is one refresh). */
const FALLBACK_REFRESH_MIN_INTERVAL_MS = 2000;

export interface Daemon {
  readonly controller: Controller;
  readonly fallback: Fallback | undefined;
  readonly dns: DnsServer;
  readonly metrics: Metrics;
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export async function startDaemon(deps: DaemonDeps): Promise<Daemon> {
  const { logger } = deps;
  const controller = new Controller(deps);
  // The table has one writer: a second daemon must fail before it touches the kernel. The lock
  // settles two starting at once; the ping also finds a daemon whose lock file was removed.
  let releaseLock = async (): Promise<void> => undefined;
  try {
    releaseLock = await acquireLock(join(deps.config.stateDir, LOCK_FILE));
  } catch (err) {
    if (err instanceof ApnsProxyError) throw err;
    // a read-only or full stateDir must not stop DNS and forwarding: say so, rely on the ping
    logger.warn(`start: cannot create the lock file in ${deps.config.stateDir} (${errorMessage(err)}); only the control socket guards against a second daemon`);
  }
  try {
    if (await requestControl(controlPath(deps.config.stateDir), 'ping', 2000) !== undefined) {
      throw new ApnsProxyError('E_CONTROL', `another apns-proxy run is already active (it answers on ${controlPath(deps.config.stateDir)})`);
    }
  } catch (err) {
    await releaseLock();
    throw err;
  }
  // Before any resolution: forwarding must work even if upstream DNS is down right now.
  let startReport;
  try {
    startReport = await controller.programFromState();
  } catch (err) {
    await releaseLock();
    throw err;
  }
  let config = deps.config;
  // Everything started so far, closed in reverse if a later step fails (or on stop).
  const closers: (() => Promise<void>)[] = [releaseLock];
  const closeAll = async () => {
    while (closers.length) await closers.pop()!().catch((err: unknown) => logger.error(`stop: ${errorMessage(err)}`));
  };
  let fallback: Fallback | undefined;
  let dns: DnsServer;
  const metrics = new Metrics({ fallback: () => fallback?.stats(), dns: () => dns.stats() });
  controller.onReport((report, snapshot) => metrics.refreshed(report, snapshot));
  metrics.refreshed(startReport, controller.generation);
  // The status page on metrics.listen: the rows of `status --json`, from the live generation and map.
  const status = new StatusSource({
    config: () => config, generation: () => controller.generation, readMap: (table) => deps.nft.readMap(table),
    health: () => metrics.health(), dns: () => dns?.stats(), fallback: () => fallback?.stats(), clock: deps.clock,
    connectionOffsets: () => controller.connectionOffsets,
  });
  controller.onReport((report) => status.recorded(report));
  status.recorded(startReport);
  if (deps.heap?.gc) {
    const compact = heapCompactor({ ...deps.heap, clock: deps.clock });
    // after the cycle has returned, so its garbage is garbage
    controller.onReport(() => void setImmediate(() => {
      const c = compact();
      if (c) logger.debug(`heap compacted after a refresh: ${(c.beforeBytes / 2 ** 20).toFixed(1)} → ${(c.afterBytes / 2 ** 20).toFixed(1)} MiB committed`);
    }));
  }
  try {
    try {
      const control = await serveControl(controlPath(config.stateDir), async (cmd) => {
        if (cmd === 'refresh') return controller.refresh();
        if (cmd === 'ping') return 'pong';
        if (cmd === 'reload') return void (await reload());
        throw new Error(`unknown command ${JSON.stringify(cmd)}`);
      });
      closers.push(() => new Promise((resolve) => control.close(() => resolve())));
    } catch (err) {
      // like the lock: a read-only stateDir costs the control socket, not the service
      logger.error(`control socket ${controlPath(config.stateDir)}: ${errorMessage(err)}; \`apns-proxy refresh\` cannot reach this daemon`);
    }
    if (config.fallback.enabled) {
      let lastAsked = -Infinity;
      const askRefresh = (why: string) => {
        if (deps.clock() - lastAsked < FALLBACK_REFRESH_MIN_INTERVAL_MS) return;
        lastAsked = deps.clock();
        logger.info(`fallback: ${why}; refreshing so the kernel takes over`);
        void controller.refresh();
      };
      const lookup = sharedLookup((name: string, timeoutMs) => {
        // A connection reached the fallback although the map should serve this VIP: the kernel does
        // not hold what we applied. Rewrite the table on the next cycle.
        const known = controller.snapshot?.names.get(name);
        if ((known?.programmed.length ?? 0) > 0) {
          controller.forceFullSync(`the fallback caught a connection to ${label(known!)}, which the map should serve`);
          askRefresh(`${label(known!)} reached the fallback although it is mapped`);
        }
        return deps.makeResolver({ ...config, resolver: { ...config.resolver, timeoutMs } }).resolveA(name);
      }, deps.clock);
      const fb = await startFallback({
        config,
        native: deps.loadNative(),
        logger,
        generation: () => controller.generation,
        resolveNow: lookup,
        onResolved: (name) => {
          const known = controller.snapshot?.names.get(name);
          askRefresh(`${known ? label(known) : name} resolved at connect time`);
        },
        ...deps.fallbackOverrides,
      });
      fallback = fb;
      closers.push(() => fb.close());
    }
    // DNS answers from the snapshot the kernel accepted, with the config that snapshot was made under.
    dns = await startDnsServer({ config, snapshot: controller.snapshot, logger, onAnswered: (kind, seconds) => metrics.dnsAnswered(kind, seconds) });
    closers.push(() => dns.close());
    // One route for configuration and map alike: the generation the kernel accepted.
    controller.onGeneration((g) => {
      dns.update(g);
      fallback?.update(g);
    });
    for (const hp of config.metrics.listen) {
      const server = await serveMetrics(metrics, hp.host, hp.port, async () => ({ ...await status.document() }));
      closers.push(() => new Promise((resolve) => server.close(() => resolve())));
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  const scheduleTicks = () => deps.schedule(config.refresh.schedule, () => void controller.tick());
  let job = scheduleTicks();
  void controller.refresh();
  const otherSets = config.sets.slice(1).map((s) => `${s.id} (${s.kind === 'numbered' ? `${s.last - s.first + 1} names, ${s.prefix.text}` : `${s.names.length} names`})`);
  logger.info(`running: ${config.couriers.last - config.couriers.first + 1} couriers, VIPs ${config.vipPrefix.text}${otherSets.length ? `; other sets: ${otherSets.join(', ')}, pool ${config.vipPool.text}` : ''}, schedule "${config.refresh.schedule}"`);

  async function reload(): Promise<void> {
    let next: Config;
    try {
      next = await deps.loadConfig();
    } catch (err) {
      logger.error(`reload: ${errorMessage(err)}; keeping the running configuration`);
      return;
    }
    if (next.stateDir !== config.stateDir) logger.warn('reload: stateDir changes take effect on restart');
    const scheduleChanged = next.refresh.schedule !== config.refresh.schedule;
    if (next.fallback.enabled !== config.fallback.enabled || next.fallback.port !== config.fallback.port) {
      logger.warn('reload: turning the fallback on/off or moving its port takes effect on restart');
    }
    config = next;
    deps.logger.setLevel?.(next.log.level);
    controller.reload(next);
    if (scheduleChanged) {
      job.stop();
      job = scheduleTicks();
    }
    logger.info('reload: configuration reloaded');
    await controller.refresh();
  }

  return {
    controller,
    fallback,
    dns,
    metrics,
    reload,
    async stop() {
      job.stop();
      await closeAll();
      // A cycle still resolving may take resolver.timeoutMs per name with upstream down; its nft
      // transaction and state write are atomic, so exiting mid-cycle loses nothing: wait briefly.
      await Promise.race([controller.idle(), new Promise((resolve) => setTimeout(resolve, STOP_WAIT_MS).unref())]);
      logger.info('stopped; the kernel map stays in place (apns-proxy flush removes it)');
    },
  };
}
