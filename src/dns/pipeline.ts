// The DNS query pipeline (no sockets): one query's bytes, its client address and transport → the
// reply bytes now, a promise of them (forwarded), or nothing; applies the rate limit and the ACL
// verdict, counts every outcome and logs through the injected sink.
import { type Decision, type Transport, answerQuery, rcodeOf } from './answer.js';
import type { DnsLog } from './log.js';
import type { DnsState } from './state.js';
import { type DnsStats, emptyOutcomes } from './stats.js';
import { HEADER_SIZE, questionForLog } from './wire.js';

/** What a query comes to: bytes to send now, bytes to send once upstream answered, or no reply. */
export type Reply = Buffer | Promise<Buffer> | undefined;

export interface PipelineOptions {
  /** The state to decide with, read per query (update() swaps it whole). */
  readonly state: () => DnsState;
  readonly log: DnsLog;
  /** Monotonic ms, read only when onAnswered is set. */
  readonly clock: () => number;
  /** Per answer sent: local or forwarded, with its latency in seconds. */
  readonly onAnswered?: (kind: 'local' | 'forwarded', seconds: number) => void;
}

export type PipelineCounts = Pick<DnsStats, 'queries' | 'rateLimited' | 'dropped' | 'forwarded' | 'outcomes'>;

export interface Pipeline {
  /**
   * One query through the pipeline. `charged`: handed over by the native threads, which counted
   * it against the rate limit already (the token is not taken again).
   */
  handle(msg: Buffer, client: string, transport: Transport, charged?: boolean): Reply;
  /** What it has counted so far (a copy). */
  counts(): PipelineCounts;
}

export function createPipeline(opts: PipelineOptions): Pipeline {
  const { state, log, clock, onAnswered } = opts;
  const counts = { queries: 0, rateLimited: 0, dropped: 0, forwarded: 0, outcomes: emptyOutcomes() };

  function answered(kind: 'local' | 'forwarded', started: number): void {
    try {
      onAnswered!(kind, (clock() - started) / 1000);
    } catch {
      // a failing metrics hook must not fail an answer
    }
  }

  function handle(msg: Buffer, client: string, transport: Transport, charged = false): Reply {
    counts.queries++;
    const started = onAnswered === undefined ? 0 : clock();  // no clock reads unless someone listens
    const s = state();
    if (s.limiter !== undefined && !charged && !s.limiter.take(client)) {
      counts.rateLimited++;
      return undefined;
    }
    const decision = answerQuery(s.responder, msg, transport, s.acl.allows(client));
    if (s.debug) log.debug(() => queryLine(msg, client, transport, decision));
    switch (decision.kind) {
      case 'reply':
        counts.outcomes[decision.outcome]++;
        if (onAnswered !== undefined) answered('local', started);
        return decision.bytes;
      case 'forward': {
        counts.forwarded++;
        const f = s.forwarder;
        const { maxForwards } = s.config.dns;
        if (f.inFlight >= maxForwards) log.warn(`dns: ${maxForwards} forwards in flight (dns.maxForwards); answering SERVFAIL`);
        else if (f.heldBy(client) >= f.share) log.warn(`dns: ${client} holds ${f.share} forwards, its share of dns.maxForwards (${maxForwards}); answering it SERVFAIL`);
        const reply = f.forward(decision.query, client);
        return onAnswered === undefined ? reply : reply.then((bytes) => { answered('forwarded', started); return bytes; });
      }
      default:
        counts.dropped++;
        return undefined;
    }
  }

  return {
    handle,
    counts: () => ({ ...counts, outcomes: { ...counts.outcomes } }),
  };
}

/** The debug line for one query: `dns: 192.0.2.2 udp 5-courier.push.apple.com A: courier 10.100.100.5 (rcode 0)`. */
function queryLine(msg: Buffer, client: string, transport: Transport, d: Decision): string {
  const what = msg.length > HEADER_SIZE ? questionForLog(msg) : '(no question)';
  const result = d.kind === 'reply'
    ? `${d.outcome}${d.outcome === 'courier' ? ` ${vipOf(d.bytes)}` : ''} (rcode ${rcodeOf(d.bytes)})`
    : d.kind === 'forward' ? `forward ${d.query.type}` : `drop (${d.reason})`;
  return `dns: ${client} ${transport} ${what}: ${result}`;
}

/** The VIP in a courier A reply we built (its last 4 bytes before any OPT), for the debug log. */
function vipOf(reply: Buffer): string {
  const ar = reply.readUInt16BE(10);
  const end = reply.length - (ar > 0 ? 11 : 0);
  return reply.readUInt16BE(6) === 1 ? [...reply.subarray(end - 4, end)].join('.') : '';
}
