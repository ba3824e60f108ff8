// DNS over UDP through the native fast path (fastpath/index.ts): a thread per socket answers courier
// queries itself; every datagram it hands over goes through the pipeline and its reply back through
// the same native socket. Also owns what the threads answer from: the table and the rate limiter.
import { constants as osConstants } from 'node:os';
import { errorMessage } from '../../core/errors.js';
import type { Config } from '../../core/config.js';
import type { Logger } from '../../core/log.js';
import type { HostPort } from '../../core/net.js';
import type { Responder } from '../answer.js';
import { type FastPath, type FastPathBinding, type FastPathDatagram, encodeFastPathTable, openFastPath } from '../fastpath/index.js';
import type { DnsLog } from '../log.js';
import type { Limiter } from '../state.js';
import type { Binding, DnsTransport, Handler } from './contract.js';
import { dispatch } from './contract.js';

export interface FastPathTransport extends DnsTransport {
  /**
   * Binds and starts a socket's thread. Rejects with E_NATIVE_ADDR (a host it cannot bind), a
   * FastPathStartError when the thread cannot start, else the OS error (EADDRINUSE, ...).
   */
  bind(hp: HostPort): Promise<Binding>;
  /** Pushes the table the threads answer from; `answer` false hands every datagram to JS. */
  setTable(responder: Responder, config: Config, answer: boolean): void;
  /** Fresh native buckets at `rate` (shared by every socket and by TCP); undefined when off. */
  limiter(rate: number, maxClients: number): Limiter | undefined;
}

/** The fast path could not start a socket's thread on `port` (already released): serve it with node:dgram. */
export class FastPathStartError extends Error {
  constructor(readonly port: number, cause: unknown) {
    super(errorMessage(cause), { cause });
    this.name = 'FastPathStartError';
  }
}

/** Opens the addon; throws when it is not built or cannot start (the server then stays on node:dgram). */
export function openFastPathTransport(handle: Handler, log: DnsLog, logger: Logger, binding?: FastPathBinding): FastPathTransport {
  let closed = false;
  const native: FastPath = openFastPath(onDatagram, (text) => log.warn(text), binding);

  function onDatagram(d: FastPathDatagram): void {
    void dispatch(handle, d.msg, {
      client: d.address,
      transport: 'udp',
      reply: (bytes) => {
        if (closed) return;
        const err = native.send(d.socket, bytes, d.peer);
        if (err !== 0) log.warn(`dns: udp: send to ${d.address}: ${errnoName(err)}`);
      },
    }, d.charged);
  }

  return {
    async bind(hp) {
      const { index, port } = native.bind(hp);
      try {
        native.start(index);
      } catch (err) {
        native.closeSocket(index);
        throw new FastPathStartError(port, err);
      }
      return { port, release: () => native.closeSocket(index) };
    },
    setTable(responder, config, answer) {
      // if the table is refused (a bug), the threads hand everything to JS rather than stop a snapshot
      try {
        native.setTable(encodeFastPathTable(responder, config.dns.allowClients, answer));
      } catch (err) {
        logger.error(`dns: the UDP fast path refused its table (${errorMessage(err)}); every UDP query goes through node`);
        native.setTable(encodeFastPathTable({ couriers: new Map(), seed: 0 }, [], false));
      }
    },
    limiter(rate, maxClients) {
      native.setRateLimit(rate, maxClients);  // fresh buckets, as a new TokenBuckets would be
      return rate > 0 ? { take: (address) => native.take(address), get size() { return native.stats().rateLimitClients; } } : undefined;
    },
    stats(into) {
      const n = native.stats();
      // datagrams handed over are counted by the pipeline once JS has taken them in
      into.queries += n.queries - n.handedToJs;
      into.rateLimited += n.rateLimited;
      into.outcomes.courier += n.courier;
      into.outcomes.nodata += n.nodata;
      into.outcomes.nxdomain += n.nxdomain;
      into.fastPath = n.courier + n.nodata + n.nxdomain;
      into.handoffDropped = n.handoffDropped;
    },
    async close() {
      closed = true;
      native.close();
    },
  };
}

/** An errno number (from the native send) by its name, for a log line. */
function errnoName(err: number): string {
  return Object.entries(osConstants.errno).find(([, v]) => v === err)?.[0] ?? `errno ${err}`;
}
