// The fallback's relay addon (apns_proxy_relay: relay.c beside this file, with its binding.gyp and
// prebuilds/): the transparent listener and the splice relay thread. Optional at install: without
// it the fallback cannot run (set fallback.enabled to false); nothing else needs it.
import { loadAddon } from '../../core/addon.js';
import { ApnsProxyError, errorMessage } from '../../core/errors.js';

export interface RelayCloseEvent {
  readonly id: number;
  readonly bytesUp: number;    // client → courier
  readonly bytesDown: number;  // courier → client
  readonly reason: string;     // "closed", "idle timeout", "client read failed", ...
  readonly error: string;      // strerror text, empty when none
}

export interface RelayStats { readonly active: number; readonly total: number; readonly bytes: number }

/** The relay thread: takes over duplicates of both sockets' fds and moves bytes between them. */
export interface Relay {
  add(clientFd: number, courierFd: number, id: number): void;
  stats(): RelayStats;
  /** A new idle timeout for every connection, current ones included (a reload). */
  setIdleTimeout(idleTimeoutMs: number): void;
  close(): void;
}

export interface RelayAddon {
  /** A listening IPv4 TCP socket with IP_TRANSPARENT (needs CAP_NET_ADMIN); returns its fd. */
  listenTransparent(host: string, port: number, backlog: number): number;
  createRelay(idleTimeoutMs: number, onClose: (event: RelayCloseEvent) => void): Relay;
}

export interface RelayBinding {
  listenTransparent(host: string, port: number, backlog: number): number;
  relayCreate(idleTimeoutMs: number, onClose: (e: RelayCloseEvent) => void): object;
  relayAdd(handle: object, clientFd: number, courierFd: number, id: number): void;
  relayStats(handle: object): RelayStats;
  relaySetIdleTimeout(handle: object, idleTimeoutMs: number): void;
  relayClose(handle: object): void;
}

let cached: RelayAddon | undefined;

/**
 * The relay addon; throws E_NATIVE_MISSING when it is neither prebuilt for this machine nor built
 * here. `load` replaces node-gyp-build (tests); only the real addon is kept for later calls.
 */
export function loadRelayAddon(load?: () => RelayBinding): RelayAddon {
  if (load === undefined && cached) return cached;
  let b: RelayBinding;
  try {
    b = (load ?? (() => loadAddon<RelayBinding>(import.meta.url)))();
  } catch (err) {
    throw new ApnsProxyError('E_NATIVE_MISSING', `the fallback needs the relay addon (apns_proxy_relay), which is neither prebuilt for this machine nor built (${errorMessage(err).split('\n')[0]}); run "npm run build:native" (needs python3, make, g++) or set fallback.enabled to false`, { cause: err });
  }
  const addon: RelayAddon = {
    listenTransparent: (host, port, backlog) => b.listenTransparent(host, port, backlog),
    createRelay(idleTimeoutMs, onClose) {
      const handle = b.relayCreate(idleTimeoutMs, onClose);
      return {
        add: (clientFd, courierFd, id) => b.relayAdd(handle, clientFd, courierFd, id),
        stats: () => b.relayStats(handle),
        setIdleTimeout: (ms) => b.relaySetIdleTimeout(handle, ms),
        close: () => b.relayClose(handle),
      };
    },
  };
  if (load === undefined) cached = addon;
  return addon;
}
