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
  /** A new idle timeout for every connection, current ones included (a reload). */
  setIdleTimeout(idleTimeoutMs: number): void;
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
  relaySetIdleTimeout(handle: object, idleTimeoutMs: number): void;
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
        setIdleTimeout: (ms) => b.relaySetIdleTimeout(handle, ms),
        close: () => b.relayClose(handle),
      };
    },
  };
  return cached;
}

/**
 * The DNS fast path (src/fallback/native/dnsfast.c, a second addon built by the same node-gyp run):
 * a thread per UDP listen socket answers courier queries from precomputed replies and hands every
 * other datagram to JS. src/dns/native-udp.ts is its only user.
 */
export interface DnsFastBinding {
  /** onEvent(batch, null): datagrams for JS (records, see native-udp.ts); onEvent(null, text): a socket error. */
  dnsCreate(onEvent: (batch: Buffer | null, error: string | null) => void): object;
  /** Binds a UDP socket (errors carry Node's errno code, or E_NATIVE_ADDR for a non-literal host): [index, port]. */
  dnsBind(handle: object, host: string, port: number, family: 4 | 6): [number, number];
  dnsStart(handle: object, index: number): void;
  dnsCloseSocket(handle: object, index: number): void;
  /** 0, or the errno of a send that failed (never blocks). */
  dnsSend(handle: object, index: number, bytes: Buffer, sockaddr: Buffer): number;
  dnsSetTable(handle: object, table: Buffer): void;
  dnsSetRateLimit(handle: object, rate: number, maxKeys: number): void;
  dnsTake(handle: object, address: string): boolean;
  dnsDecide(handle: object, msg: Buffer, address: string): Buffer | null;
  dnsStats(handle: object): DnsFastStats;
  dnsClose(handle: object): void;
}

export interface DnsFastStats {
  readonly queries: number;          // datagrams received
  readonly rateLimited: number;      // dropped by the rate limit
  readonly handedToJs: number;       // datagrams queued for JS
  readonly handoffDropped: number;   // dropped because too much was already queued for JS
  readonly sendErrors: number;
  readonly courier: number;          // answered natively, by outcome
  readonly nodata: number;
  readonly nxdomain: number;
  readonly rateLimitClients: number; // buckets held
}

const DNS_ADDON = '../../../build/Release/apns_proxy_dns.node';

let dnsCached: DnsFastBinding | undefined;

/** The DNS fast-path addon; throws when it is not built (the DNS server then stays on node:dgram). */
export function loadDnsFast(): DnsFastBinding {
  dnsCached ??= createRequire(import.meta.url)(DNS_ADDON) as DnsFastBinding;
  return dnsCached;
}
