// The userspace fallback: TPROXY hands us connections to VIPs the kernel map could not serve.
// Per connection: courier N from the original destination, resolve now, connect to an allowed
// address, then give both sockets to the native relay thread and forget them.
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Config } from '../core/config.js';
import { courierForVip, courierName } from '../core/couriers.js';
import { PRODUCTION_SET } from '../core/namesets.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type Generation, type NameView, type Snapshot, label } from '../sync/mapping.js';
import type { Resolution } from '../dns/client/resolver.js';
import { LogLimiter } from '../core/log.js';
import type { Relay, RelayAddon, RelayCloseEvent } from './relay/index.js';
import { planTargets } from './plan.js';

export interface FallbackDeps {
  readonly config: Config;
  readonly native: RelayAddon;
  readonly resolveNow: (name: string, timeoutMs: number) => Promise<Resolution>;
  /** The generation the kernel accepted last: its snapshot's last-known-good backs a failed lookup. */
  readonly generation: () => Generation | undefined;
  /** A courier resolved at connect time: the kernel path should take over its next connections. */
  readonly onResolved: (name: string) => void;
  readonly logger: Logger;
  /** Where the server listens; the default is the real transparent socket on 127.0.0.1. */
  readonly listen?: (server: net.Server, config: Config, backlog: number) => Promise<void>;
  /** The text of /proc/sys/net/core/somaxconn (tests: a fake; may throw when unreadable). */
  readonly readSomaxconn?: () => string;
  /** Monotonic ms for the log rate limit; performance.now. */
  readonly clock?: () => number;
  /** The connection's original destination; with TPROXY it is the accepted socket's local address. */
  readonly originalDestination?: (socket: net.Socket) => { address: string; port: number };
}

export interface FallbackStats { readonly active: number; readonly total: number; readonly failed: number; readonly relayed: number }

export interface Fallback {
  readonly address: net.AddressInfo;
  stats(): FallbackStats;
  /** A new generation was published: adopts its configuration (the relay's idle timeout included). */
  update(generation: Generation): void;
  close(): Promise<void>;
}

/** Rejection lines at most per window: a client hammering a dead courier must not flood the log. */
const REJECT_LINES = 10;
const REJECT_WINDOW_MS = 10_000;
/** The listen backlog when net.core.somaxconn cannot be read (the kernel's default since 5.4). */
export const DEFAULT_BACKLOG = 4096;
const SOMAXCONN = '/proc/sys/net/core/somaxconn';

/** The listen backlog: net.core.somaxconn (the kernel caps any larger one to it anyway), else 4096. */
export function listenBacklog(read: () => string = () => readFileSync(SOMAXCONN, 'utf8')): { backlog: number; source: string } {
  let text: string;
  try {
    text = read().trim();
  } catch (err) {
    return { backlog: DEFAULT_BACKLOG, source: `default: ${SOMAXCONN} unreadable (${errorMessage(err)})` };
  }
  const n = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
  // listen(2) takes an int; 0 or garbage would be no better than the default
  if (!(n >= 1 && n <= 0x7fffffff)) return { backlog: DEFAULT_BACKLOG, source: `default: ${SOMAXCONN} is ${JSON.stringify(text.slice(0, 20))}` };
  return { backlog: n, source: 'net.core.somaxconn' };
}

/** Listens on the transparent socket the native helper creates (IP_TRANSPARENT, CAP_NET_ADMIN). */
export function transparentListen(native: RelayAddon): (server: net.Server, config: Config, backlog: number) => Promise<void> {
  return (server, config, backlog) => new Promise((resolve, reject) => {
    const fd = native.listenTransparent('127.0.0.1', config.fallback.port, backlog);
    server.once('error', reject);
    server.listen({ fd }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

const socketFd = (s: net.Socket): number => (s as unknown as { _handle?: { fd?: number } })._handle?.fd ?? -1;

export async function startFallback(deps: FallbackDeps): Promise<Fallback> {
  let config = deps.config;
  const { logger, native } = deps;
  const destination = deps.originalDestination ?? ((s: net.Socket) => ({ address: s.localAddress ?? '', port: s.localPort ?? 0 }));
  let pending = 0;   // connections being resolved/connected in JS
  let total = 0;
  let failed = 0;
  let seq = 0;
  const relay: Relay = native.createRelay(config.fallback.idleTimeoutSeconds * 1000, (e: RelayCloseEvent) => {
    logger.debug(`fallback #${e.id}: ${e.reason}${e.error ? ` (${e.error})` : ''}; ${e.bytesUp} bytes up, ${e.bytesDown} down`);
  });
  // pauseOnConnect: not a byte is read in JS; whatever the client sends waits in the kernel for the relay
  const server = net.createServer({ pauseOnConnect: true }, (client) => void handle(client));
  server.on('error', (err) => logger.error(`fallback listener: ${errorMessage(err)}`));

  const rejectLines = new LogLimiter(REJECT_LINES, REJECT_WINDOW_MS, deps.clock ?? (() => performance.now()));
  // A burst that ends inside a window would never report what it held back: a timer says it.
  let summary: NodeJS.Timeout | undefined;
  const summarise = () => {
    summary = undefined;
    const held = rejectLines.drain();
    if (held > 0) logger.info(`fallback: ${held} similar lines suppressed (connections reset) in the last ${REJECT_WINDOW_MS / 1000} s`);
  };
  const reject = (client: net.Socket, id: number, why: string) => {
    failed++;
    const held = rejectLines.take();
    if (held !== undefined) logger.info(`fallback #${id}: ${why}; connection reset${held > 0 ? ` (${held} similar lines suppressed)` : ''}`);
    else summary ??= setTimeout(summarise, REJECT_WINDOW_MS).unref();
    client.resetAndDestroy();
  };

  async function handle(client: net.Socket): Promise<void> {
    const id = ++seq;
    total++;
    client.on('error', () => undefined);
    if (pending + relay.stats().active >= config.fallback.maxConnections) {
      return reject(client, id, `over fallback.maxConnections (${config.fallback.maxConnections})`);
    }
    pending++;
    try {
      const dst = destination(client);
      const from = `${client.remoteAddress}:${client.remotePort}`;
      const snapshot = deps.generation()?.snapshot;
      const target = vipTarget(config, snapshot, dst.address);
      const set = config.sets.find((s) => s.id === target?.set);
      if (target === undefined || set === undefined || !set.tcp.includes(dst.port)) return reject(client, id, `${dst.address}:${dst.port} from ${from} is not a VIP of ours on one of its ports`);
      const n = label(target);
      const resolution = await deps.resolveNow(target.name, config.fallback.resolveTimeoutMs);
      const plan = planTargets(resolution, snapshot?.names.get(target.name), set.allowedUpstreamNets ?? config.allowedUpstreamNets, randomInt(0, 1 << 30));
      if (!plan.ok) return reject(client, id, `${n}: ${plan.reason}`);
      if (plan.source === 'resolved') deps.onResolved(target.name);
      let courier: net.Socket | undefined;
      const errors: string[] = [];
      for (const address of plan.addresses) {
        if (client.destroyed) break;
        try {
          courier = await connectPaused(address, dst.port, config.fallback.connectTimeoutMs);
          break;
        } catch (err) {
          errors.push(`${address}: ${errorMessage(err)}`);
        }
      }
      if (!courier) return reject(client, id, `${n}: no address reachable (${errors.join('; ') || 'client gone'})`);
      // Keep-alive on both: a long-idle APNs connection must notice a dead peer eventually.
      client.setKeepAlive(true, 60_000);
      courier.setKeepAlive(true, 60_000);
      try {
        relay.add(socketFd(client), socketFd(courier), id);
      } catch (err) {
        courier.resetAndDestroy();
        return reject(client, id, `${n}: relay refused the connection (${errorMessage(err)})`);
      }
      logger.debug(`fallback #${id}: ${n} ${from} → ${courier.remoteAddress}:${dst.port} (${plan.source})`);
      // The relay owns duplicates of both fds now; destroy() closes ours without a shutdown.
      client.destroy();
      courier.destroy();
    } finally {
      pending--;
    }
  }

  const { backlog, source } = listenBacklog(deps.readSomaxconn);
  await (deps.listen ?? transparentListen(native))(server, config, backlog);
  logger.info(`fallback: listening on ${JSON.stringify(server.address())} (backlog ${backlog}, ${source})`);
  return {
    address: server.address() as net.AddressInfo,
    stats: () => {
      const r = relay.stats();
      return { active: pending + r.active, total, failed, relayed: r.total };
    },
    update({ config: next }) {
      if (next.fallback.idleTimeoutSeconds !== config.fallback.idleTimeoutSeconds) relay.setIdleTimeout(next.fallback.idleTimeoutSeconds * 1000);
      config = next;
    },
    close: () => new Promise((resolve) => {
      if (summary !== undefined) clearTimeout(summary);
      server.close(() => resolve());
      relay.close();
    }),
  };
}

/** Connects without reading: the courier may speak first, and those bytes belong to the relay. */
function connectPaused(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.pause();
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    });
  });
}

const byVipCache = new WeakMap<Snapshot, Map<string, NameView>>();

/**
 * The name a VIP stands for: from the published snapshot (every set, pool VIPs included), else,
 * before the first one, a production courier by its VIP.
 */
export function vipTarget(config: Config, snapshot: Snapshot | undefined, address: string): { name: string; set: string; n: number | null } | undefined {
  const vip = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (snapshot) {
    let byVip = byVipCache.get(snapshot);
    if (byVip === undefined) {
      byVip = new Map([...snapshot.names.values()].map((v) => [v.vip, v]));
      byVipCache.set(snapshot, byVip);
    }
    const v = byVip.get(vip);
    if (v) return { name: v.name, set: v.set, n: v.n };
  }
  const n = courierForVip(config, vip);
  return n === undefined ? undefined : { name: courierName(config.couriers.template, n), set: PRODUCTION_SET, n };
}
