// Forwards non-courier questions to upstreamDns in order and relays the answer to the client.
// exchange() gives every upstream query a fresh random ID and source port and accepts only a reply
// that matches the question; this module adds failover, the in-flight bound and SERVFAIL.
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ApnsProxyError, show } from '../errors.js';
import { formatHostPort, type HostPort } from '../net.js';
import { exchange as realExchange } from '../upstream.js';
import { type ForwardQuery, relayReply, servfail } from './answer.js';

export interface ForwardEvent {
  query: ForwardQuery;
  server: string | undefined;   // the server whose answer was relayed; undefined for SERVFAIL
  outcome: string;              // upstream rcode relayed, or why we answered SERVFAIL
  ms: number;
}

export interface ForwarderOptions {
  readonly servers: readonly HostPort[];  // tried in order
  readonly timeoutMs: number;             // per server
  readonly maxInFlight: number;           // beyond this, SERVFAIL at once instead of more sockets
  readonly exchange?: typeof realExchange;
  readonly onForward?: (event: ForwardEvent) => void;
}

export interface Forwarder {
  /** Always resolves, with the bytes to send the client (the relayed answer or SERVFAIL). */
  forward(q: ForwardQuery): Promise<Buffer>;
  readonly inFlight: number;
  readonly overflows: number;   // queries answered SERVFAIL because maxInFlight was reached
  /** Aborts every forward in flight (they resolve with SERVFAIL); later forwards also fail fast. */
  close(): void;
}

/** Upstream answers worth asking the next server about (a lame or misconfigured first server). */
const TRY_NEXT = new Set(['SERVFAIL', 'REFUSED']);

export function createForwarder(opts: ForwarderOptions): Forwarder {
  const { servers, timeoutMs, maxInFlight } = opts;
  if (!Array.isArray(servers) || servers.length === 0) throw new RangeError(`forwarder: servers must be a non-empty list, got ${show(servers)}`);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`forwarder: timeoutMs must be a positive integer, got ${show(timeoutMs)}`);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError(`forwarder: maxInFlight must be a positive integer, got ${show(maxInFlight)}`);
  const exchange = opts.exchange ?? realExchange;
  const aborter = new AbortController();
  setMaxListeners(0, aborter.signal);  // one listener per forward in flight, bounded by maxInFlight
  let inFlight = 0;
  let overflows = 0;

  function report(event: ForwardEvent): void {
    try {
      opts.onForward?.(event);
    } catch {
      // a failing log hook must not fail the answer
    }
  }

  async function ask(q: ForwardQuery, started: number): Promise<Buffer> {
    let outcome = 'E_NO_SERVER';
    for (let i = 0; i < servers.length && !aborter.signal.aborted; i++) {
      const server = servers[i]!;
      try {
        const result = await exchange(server, { name: q.name, type: q.type, class: q.class }, {
          timeoutMs, recursionDesired: q.rd, dnssecOk: q.dnssecOk, checkingDisabled: q.checkingDisabled, signal: aborter.signal,
        });
        const rcode = result.response.rcode;
        outcome = rcode;
        if (TRY_NEXT.has(rcode) && i < servers.length - 1) continue;
        const relayed = relayReply(q, result.raw);
        if (relayed === undefined) {
          outcome = 'E_MALFORMED';
          continue;
        }
        report({ query: q, server: formatHostPort(server), outcome: rcode, ms: Math.round(performance.now() - started) });
        return relayed;
      } catch (err) {
        outcome = err instanceof ApnsProxyError ? err.code : aborter.signal.aborted ? 'E_CLOSED' : 'E_NETWORK';
      }
    }
    report({ query: q, server: undefined, outcome: `SERVFAIL (${outcome})`, ms: Math.round(performance.now() - started) });
    return servfail(q);
  }

  return {
    async forward(q) {
      if (inFlight >= maxInFlight || aborter.signal.aborted) {
        overflows += inFlight >= maxInFlight ? 1 : 0;
        return servfail(q);
      }
      inFlight += 1;
      try {
        return await ask(q, performance.now());
      } finally {
        inFlight -= 1;
      }
    },
    get inFlight() {
      return inFlight;
    },
    get overflows() {
      return overflows;
    },
    close() {
      aborter.abort(new ApnsProxyError('E_NETWORK', 'DNS server closing'));
    },
  };
}
