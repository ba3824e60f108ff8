// Loads the native helper (src/fallback/native/relay.c, built by node-gyp at npm install time).
import { createRequire } from 'node:module';
import { ApnsProxyError, errorMessage } from '../errors.js';

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
  close(): void;
}

export interface Native {
  /** A listening IPv4 TCP socket with IP_TRANSPARENT (needs CAP_NET_ADMIN); returns its fd. */
  listenTransparent(host: string, port: number, backlog: number): number;
  createRelay(idleTimeoutMs: number, onClose: (event: RelayCloseEvent) => void): Relay;
}

interface Binding {
  listenTransparent(host: string, port: number, backlog: number): number;
  relayCreate(idleTimeoutMs: number, onClose: (e: RelayCloseEvent) => void): object;
  relayAdd(handle: object, clientFd: number, courierFd: number, id: number): void;
  relayStats(handle: object): RelayStats;
  relayClose(handle: object): void;
}

const ADDON = '../../../build/Release/apns_proxy_native.node';

let cached: Native | undefined;

export function loadNative(): Native {
  if (cached) return cached;
  let b: Binding;
  try {
    b = createRequire(import.meta.url)(ADDON) as Binding;
  } catch (err) {
    throw new ApnsProxyError('E_LISTEN', `the fallback needs the native helper, which is not built (${errorMessage(err)}); run "npm run build:native" or set fallback.enabled to false`);
  }
  cached = {
    listenTransparent: (host, port, backlog) => b.listenTransparent(host, port, backlog),
    createRelay(idleTimeoutMs, onClose) {
      const handle = b.relayCreate(idleTimeoutMs, onClose);
      return {
        add: (clientFd, courierFd, id) => b.relayAdd(handle, clientFd, courierFd, id),
        stats: () => b.relayStats(handle),
        close: () => b.relayClose(handle),
      };
    },
  };
  return cached;
}
