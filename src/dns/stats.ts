// The DNS server's counters as DnsServer.stats() reports them; the pipeline, the state's forwarders
// and each transport add their own part.
import type { Outcome } from './answer.js';

export interface DnsStats {
  queries: number;                 // every datagram and TCP frame received
  rateLimited: number;             // dropped by the per-client rate limit
  dropped: number;                 // unreadable header or not a query: no reply
  outcomes: Record<Outcome, number>;
  forwarded: number;
  forwardsInFlight: number;
  forwardOverflows: number;        // SERVFAIL at once: dns.maxForwards in flight, or the client held its share
  forwardClientOverflows: number;  // of those, because the client held its share of dns.maxForwards
  tcpConnections: number;          // open now
  tcpRejected: number;             // turned away at dns.tcpMaxConnections
  tcpOutsiders: number;            // closed at accept: the client is outside dns.allowClients
  tcpPerClientRejected: number;    // closed at accept: the client had dns.tcpMaxPerClient open
  tcpFrameTimeouts: number;        // closed: a query frame was not complete within dns.tcpFrameTimeoutMs
  rateLimitClients: number;        // buckets held by the rate limiter
  fastPath: number;                // of the outcomes, answered by the native UDP fast path
  handoffDropped: number;          // datagrams dropped because too many were waiting for JS
}

export function emptyOutcomes(): Record<Outcome, number> {
  return { courier: 0, nodata: 0, nxdomain: 0, refused: 0, formerr: 0, notimp: 0, badvers: 0 };
}

export function emptyStats(): DnsStats {
  return {
    queries: 0, rateLimited: 0, dropped: 0, outcomes: emptyOutcomes(), forwarded: 0,
    forwardsInFlight: 0, forwardOverflows: 0, forwardClientOverflows: 0,
    tcpConnections: 0, tcpRejected: 0, tcpOutsiders: 0, tcpPerClientRejected: 0, tcpFrameTimeouts: 0,
    rateLimitClients: 0, fastPath: 0, handoffDropped: 0,
  };
}
