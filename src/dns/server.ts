// The DNS server (UDP and TCP on every dns.listen address): binds each address with its transports
// and wires them to the query pipeline and the state builder; merges their counts. UDP is served by
// the native fast path when its addon loads (transports/fastpath.ts), else by node:dgram
// (transports/udp.ts); TCP by transports/tcp.ts. The decisions live in pipeline.ts and answer.ts.
import { isDeepStrictEqual } from 'node:util';
import { performance } from 'node:perf_hooks';
import type { Config } from '../core/config.js';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Generation, Snapshot } from '../sync/mapping.js';
import { formatHostPort, type HostPort } from '../core/net.js';
import { exchange as realExchange } from './client/exchange.js';
import type { Transport } from './answer.js';
import { TokenBuckets } from './limits.js';
import { createDnsLog } from './log.js';
import { createPipeline } from './pipeline.js';
import { type DnsState, DnsStateBuilder, type Limiter } from './state.js';
import { type DnsStats, emptyStats } from './stats.js';
import type { FastPathBinding } from './fastpath/index.js';
import type { Binding, DnsTransport } from './transports/contract.js';
import { FastPathStartError, type FastPathTransport, openFastPathTransport } from './transports/fastpath.js';
import { createTcpTransport } from './transports/tcp.js';
import { createUdpTransport } from './transports/udp.js';

export type { DnsStats } from './stats.js';

export interface DnsServerOptions {
  readonly config: Config;
  readonly snapshot: Snapshot | undefined;
  readonly logger: Logger;
  /**
   * Monotonic ms (rate limit, log throttling); performance.now. An injected clock (tests) also keeps
   * rate limiting and every answer in JS: the native fast path can only follow the real clock.
   */
  readonly clock?: () => number;
  readonly exchange?: typeof realExchange;    // the upstream seam
  readonly listen?: readonly HostPort[];      // instead of config.dns.listen (tests: port 0 = any free port)
  /**
   * Per answer sent: local (from the snapshot, incl. REFUSED/FORMERR) or forwarded; seconds by `clock`.
   * Not called for the native fast path's courier answers (stats() counts those).
   */
  readonly onAnswered?: (kind: 'local' | 'forwarded', seconds: number) => void;
  /**
   * Serve UDP through the native fast path when its addon loads (default: yes, unless the environment
   * has APNS_PROXY_DNS_NATIVE=0). Without it, or when a socket's thread cannot start, node:dgram.
   */
  readonly nativeUdp?: boolean;
  /** Tests: a stand-in for the fast path's addon. */
  readonly nativeBinding?: FastPathBinding;
}

export interface DnsEndpoint {
  readonly transport: Transport;
  readonly host: string;
  readonly port: number;
}

export interface DnsServer {
  readonly endpoints: readonly DnsEndpoint[];
  /** Adopts a new snapshot and configuration (dns.listen changes need a restart). */
  update(generation: Generation): void;
  stats(): DnsStats;
  close(): Promise<void>;
}

/** Rate-limit buckets kept at most (one per client address). */
const MAX_RATE_CLIENTS = 65536;

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const { logger } = opts;
  const clock = opts.clock ?? (() => performance.now());
  const log = createDnsLog(logger, clock);
  const boundListen = opts.listen ?? opts.config.dns.listen;
  let state: DnsState;  // built below, before any socket can deliver a query
  const pipeline = createPipeline({ state: () => state, log, clock, ...(opts.onAnswered ? { onAnswered: opts.onAnswered } : {}) });
  const handle = pipeline.handle;

  let fast: FastPathTransport | undefined;
  let nativeProblem: string | undefined;
  if (!(opts.nativeUdp ?? process.env.APNS_PROXY_DNS_NATIVE !== '0')) {
    nativeProblem = opts.nativeUdp === false ? 'off (nativeUdp: false)' : 'off (APNS_PROXY_DNS_NATIVE=0)';
  } else if (boundListen.length > 0) {
    try {
      fast = openFastPathTransport(handle, log, logger, opts.nativeBinding);
    } catch (err) {
      nativeProblem = `unavailable: ${errorMessage(err)}`;
    }
  }
  // The fast path answers couriers itself unless every query must pass through JS: at debug (each
  // is logged) and under an injected clock (tests of the rate limit and latency hooks).
  const nativeLimits = fast !== undefined && opts.clock === undefined;
  const builder = new DnsStateBuilder({
    log,
    exchange: opts.exchange ?? realExchange,
    limiter: (rate): Limiter | undefined => nativeLimits
      ? fast!.limiter(rate, MAX_RATE_CLIENTS)
      : rate > 0 ? new TokenBuckets(rate, rate, MAX_RATE_CLIENTS, clock) : undefined,
    ...(fast ? { adopt: (responder, config, debug) => fast.setTable(responder, config, nativeLimits && !debug) } : {}),
  });
  try {
    state = builder.build(opts, logger.isDebug());
  } catch (err) {
    await fast?.close();
    throw err;
  }

  const udp = createUdpTransport(handle, log);
  const tcp = createTcpTransport(handle, () => state, log);
  const transports: DnsTransport[] = [...(fast ? [fast] : []), udp, tcp];
  const endpoints: DnsEndpoint[] = [];
  const nativeEndpoints: string[] = [];
  const dgramEndpoints: string[] = [];

  /** A UDP socket: native when the fast path is open and can serve the host, else node:dgram. */
  async function bindUdpSide(hp: HostPort): Promise<{ binding: Binding; native: boolean }> {
    if (fast !== undefined) {
      try {
        return { binding: await fast.bind(hp), native: true };
      } catch (err) {
        if (err instanceof FastPathStartError) {
          logger.info(`dns: udp ${formatHostPort({ host: hp.host, port: err.port })}: the UDP fast path cannot start (${err.message}); serving it with node:dgram`);
          return { binding: await udp.bind({ ...hp, port: err.port }), native: false };
        }
        if ((err as NodeJS.ErrnoException).code !== 'E_NATIVE_ADDR') throw err;
      }
    }
    return { binding: await udp.bind(hp), native: false };
  }

  /** UDP and TCP on the same port; with port 0, the port UDP got (retried if TCP finds it taken). */
  async function bindPair(hp: HostPort): Promise<{ port: number; native: boolean }> {
    for (let attempt = 0; ; attempt++) {
      let side: { binding: Binding; native: boolean };
      try {
        side = await bindUdpSide(hp);
      } catch (err) {
        throw new ApnsProxyError('E_LISTEN', `dns.listen ${formatHostPort(hp)}: cannot bind udp: ${bindProblem(err)}`, { cause: err });
      }
      const { port } = side.binding;
      try {
        await tcp.bind({ ...hp, port });
        return { port, native: side.native };
      } catch (err) {
        side.binding.release();
        if (hp.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
        throw new ApnsProxyError('E_LISTEN', `dns.listen ${formatHostPort(hp)}: cannot listen on tcp: ${bindProblem(err)}`, { cause: err });
      }
    }
  }

  let closed = false;
  let closing: Promise<void> | undefined;
  function closeAll(): Promise<void> {
    closing ??= closeNow();
    return closing;
  }
  async function closeNow(): Promise<void> {
    closed = true;
    const done = transports.map((t) => t.close());  // each stops replying at once
    builder.close(state);
    await Promise.all(done);
  }

  try {
    for (const hp of boundListen) {
      const { port, native } = await bindPair(hp);
      (native ? nativeEndpoints : dgramEndpoints).push(formatHostPort({ host: hp.host, port }));
      endpoints.push({ transport: 'udp', host: hp.host, port }, { transport: 'tcp', host: hp.host, port });
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  if (endpoints.length > 0) logger.info(`dns: serving on ${[...new Set(endpoints.map((e) => formatHostPort(e)))].join(', ')} (udp+tcp)`);
  if (nativeEndpoints.length > 0) {
    const passing = state.debug ? 'log.level is debug' : 'a test clock is injected';
    logger.info(`dns: udp ${nativeEndpoints.join(', ')} on the UDP fast path (a thread per socket answers courier queries, ` +
      `${nativeLimits && !state.debug ? 'the rest goes to node' : `every query goes to node while ${passing}`})`);
  }
  if (dgramEndpoints.length > 0) {
    logger.info(`dns: udp ${dgramEndpoints.join(', ')} on node:dgram${nativeProblem ? ` (UDP fast path ${nativeProblem})` : ''}`);
  }

  return {
    endpoints,
    update({ config, snapshot }) {
      if (closed) return;  // e.g. a snapshot published while the daemon stops: nothing serves any more
      if (!opts.listen && !isDeepStrictEqual(config.dns.listen, state.config.dns.listen)) {
        logger.warn(`dns: dns.listen changes take effect on restart (still serving on ${JSON.stringify(boundListen.map(formatHostPort))})`);
      }
      try {
        state = builder.build({ config, snapshot }, logger.isDebug(), state);
      } catch (err) {
        // called from the controller's publish step: never let it fail there; keep serving the old state
        logger.error(`dns: cannot adopt the new snapshot (${errorMessage(err)}); still serving the previous one`);
      }
      for (const t of transports) t.update?.(state);
    },
    stats() {
      const out: DnsStats = { ...emptyStats(), ...pipeline.counts(), ...builder.forwardStats(state) };
      out.rateLimitClients = state.limiter?.size ?? 0;
      for (const t of transports) t.stats(out);
      return out;
    },
    close: closeAll,
  };
}

/** Why a bind failed, in words an operator can act on. */
function bindProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE': return 'address already in use (another DNS server on this port, e.g. dnsmasq or systemd-resolved?)';
    case 'EACCES': case 'EPERM': return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL': return 'no such address on this host';
    default: return errorMessage(err);
  }
}
