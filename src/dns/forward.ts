// Forwards non-courier questions to upstreamDns in order and relays the answer to the client.
// exchange() gives every upstream query a fresh random ID and source port and accepts only a reply
// that matches the question; this module adds failover, the in-flight bound and SERVFAIL.
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ApnsProxyError, show } from '../core/errors.js';
import { formatHostPort, type HostPort } from '../core/net.js';
import { exchange as realExchange } from './client/exchange.js';
import { type ForwardQuery, relayReply, rewriteTxtCount, servfail } from './answer.js';

export interface ForwardEvent {
  query: ForwardQuery;
  server: string | undefined;   // the server whose answer was relayed; undefined for SERVFAIL
  outcome: string;              // upstream rcode relayed, or why we answered SERVFAIL
  ms: number;
  countRewritten?: { from: number; to: number };  // push.apple.com TXT count= capped (rewriteTxtCount)
}

export interface ForwarderOptions {
  readonly servers: readonly HostPort[];  // tried in order
  readonly timeoutMs: number;             // per server
  readonly maxInFlight: number;           // beyond this, SERVFAIL at once instead of more sockets
  readonly exchange?: typeof realExchange;
  readonly onForward?: (event: ForwardEvent) => void;
}

export interface Forwarder {
  /**
   * Always resolves, with the bytes to send the client (the relayed answer or SERVFAIL). With
   * `client` (its address), that client holds at most `share` of the forwards in flight.
   */
  forward(q: ForwardQuery, client?: string): Promise<Buffer>;
  readonly inFlight: number;
  /** Forwards one client address may hold at once: beyond it, that client gets SERVFAIL. */
  readonly share: number;
  /** Forwards `client` holds now. */
  heldBy(client: string): number;
  readonly overflows: number;        // queries answered SERVFAIL at once: maxInFlight reached or the client over its share
  readonly clientOverflows: number;  // of those, because the client held its share
  /** Aborts every forward in flight (they resolve with SERVFAIL); later forwards also fail fast. */
  close(): void;
}

/** Upstream answers worth asking the next server about (a lame or misconfigured first server). */
const TRY_NEXT = new Set(['SERVFAIL', 'REFUSED']);

/**
 * One client's share of maxInFlight: a quarter, so a client flooding forwards leaves three quarters
 * to everyone else; at least 2 so a stub's A+AAAA pair is never split by the share alone.
 */
export function forwardShare(maxInFlight: number): number {
  return Math.min(maxInFlight, Math.max(2, Math.ceil(maxInFlight / 4)));
}

export function createForwarder(opts: ForwarderOptions): Forwarder {
  const { servers, timeoutMs, maxInFlight } = opts;
  if (!Array.isArray(servers) || servers.length === 0) throw new RangeError(`forwarder: servers must be a non-empty list, got ${show(servers)}`);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`forwarder: timeoutMs must be a positive integer, got ${show(timeoutMs)}`);
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError(`forwarder: maxInFlight must be a positive integer, got ${show(maxInFlight)}`);
  const exchange = opts.exchange ?? realExchange;
  const aborter = new AbortController();
  setMaxListeners(0, aborter.signal);  // one listener per forward in flight, bounded by maxInFlight
  const share = forwardShare(maxInFlight);
  const held = new Map<string, number>();  // forwards in flight per client address; no entry at 0
  let inFlight = 0;
  let overflows = 0;
  let clientOverflows = 0;

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
        const capped = q.countLimit === undefined ? undefined : rewriteTxtCount(relayed, q.countLimit);
        report({
          query: q, server: formatHostPort(server), outcome: rcode, ms: Math.round(performance.now() - started),
          ...(capped ? { countRewritten: { from: capped.from, to: q.countLimit! } } : {}),
        });
        return capped?.bytes ?? relayed;
      } catch (err) {
        outcome = err instanceof ApnsProxyError ? err.code : aborter.signal.aborted ? 'E_CLOSED' : 'E_NETWORK';
      }
    }
    report({ query: q, server: undefined, outcome: `SERVFAIL (${outcome})`, ms: Math.round(performance.now() - started) });
    return servfail(q);
  }

  return {
    async forward(q, client) {
      if (inFlight >= maxInFlight || aborter.signal.aborted) {
        overflows += inFlight >= maxInFlight ? 1 : 0;
        return servfail(q);
      }
      const mine = client === undefined ? 0 : held.get(client) ?? 0;
      if (mine >= share) {
        overflows += 1;
        clientOverflows += 1;
        return servfail(q);
      }
      inFlight += 1;
      if (client !== undefined) held.set(client, mine + 1);
      try {
        return await ask(q, performance.now());
      } finally {
        inFlight -= 1;
        if (client !== undefined) {
          const left = held.get(client)! - 1;
          if (left === 0) held.delete(client);
          else held.set(client, left);
        }
      }
    },
    get inFlight() {
      return inFlight;
    },
    share,
    heldBy: (client) => held.get(client) ?? 0,
    get overflows() {
      return overflows;
    },
    get clientOverflows() {
      return clientOverflows;
    },
    close() {
      aborter.abort(new ApnsProxyError('E_NETWORK', 'DNS server closing'));
    },
  };
}
