// The DNS server's state: builds the immutable DnsState (ACL, responder, rate limiter, forwarder)
// from a generation {config, snapshot} and the previous state, reusing each part whose settings did
// not change, and keeps the forwarders a reload replaced until their last forward completes.
import { isDeepStrictEqual } from 'node:util';
import type { Config } from '../core/config.js';
import type { Snapshot } from '../sync/mapping.js';
import { ClientAcl } from './acl.js';
import { type Responder, buildResponder } from './answer.js';
import type { exchange as realExchange } from './client/exchange.js';
import { type Forwarder, createForwarder } from './forward.js';
import type { DnsLog } from './log.js';
import type { DnsStats } from './stats.js';

/** Per-client token buckets: TokenBuckets in JS, or the native fast path's (shared with its threads). */
export interface Limiter {
  take(address: string): boolean;
  readonly size: number;
}

/** Everything a query is decided with; replaced whole on update, never changed in place. */
export interface DnsState {
  readonly config: Config;
  readonly responder: Responder;
  readonly acl: ClientAcl;
  readonly limiter: Limiter | undefined;
  readonly forwarder: Forwarder;
  /** log.level was debug when this state was built: every query is logged (and none answered natively). */
  readonly debug: boolean;
}

/** A config and the snapshot to serve (sync/mapping's Generation, with the snapshot optional at start). */
export interface StateInput {
  readonly config: Config;
  readonly snapshot: Snapshot | undefined;
}

export interface StateBuilderOptions {
  readonly log: DnsLog;
  readonly exchange: typeof realExchange;
  /** The limiter for dns.rateLimit (0: none); called only when the rate changed. */
  readonly limiter: (rate: number) => Limiter | undefined;
  /** Sees each new responder before it is adopted (the fast path's table); must not throw. */
  readonly adopt?: (responder: Responder, config: Config, debug: boolean) => void;
}

export class DnsStateBuilder {
  private readonly retired = new Set<Forwarder>();  // replaced by a reload, still finishing their forwards
  private overflowsRetired = 0;
  private clientOverflowsRetired = 0;

  constructor(private readonly opts: StateBuilderOptions) {}

  /** The state for `input`; throws (leaving `previous` whole) when the snapshot cannot be adopted. */
  build(input: StateInput, debug: boolean, previous?: DnsState): DnsState {
    const { config, snapshot } = input;
    const same = <K extends keyof Config['dns']>(k: K): boolean => previous !== undefined && isDeepStrictEqual(previous.config.dns[k], config.dns[k]);
    // What can fail comes first: a snapshot that cannot be adopted leaves the previous state whole.
    const acl = same('allowClients') ? previous!.acl : new ClientAcl(config.dns.allowClients);
    const responder = buildResponder(config, snapshot);
    this.opts.adopt?.(responder, config, debug);
    const sameUpstream = previous !== undefined && isDeepStrictEqual(previous.config.upstreamDns, config.upstreamDns) &&
      same('forwardTimeoutMs') && same('maxForwards');
    let forwarder = previous?.forwarder;
    if (!sameUpstream || forwarder === undefined) {
      if (forwarder) this.retire(forwarder);
      forwarder = this.makeForwarder(config);
    }
    const limiter = same('rateLimit') ? previous!.limiter : this.opts.limiter(config.dns.rateLimit);
    return Object.freeze({ config, responder, acl, limiter, forwarder, debug });
  }

  /** Forwards in flight and overflows, over `current`'s forwarder and every retired one. */
  forwardStats(current: DnsState): Pick<DnsStats, 'forwardsInFlight' | 'forwardOverflows' | 'forwardClientOverflows'> {
    this.pruneRetired();
    let inFlight = current.forwarder.inFlight;
    let overflows = this.overflowsRetired + current.forwarder.overflows;
    let clientOverflows = this.clientOverflowsRetired + current.forwarder.clientOverflows;
    for (const f of this.retired) {
      inFlight += f.inFlight;
      overflows += f.overflows;
      clientOverflows += f.clientOverflows;
    }
    return { forwardsInFlight: inFlight, forwardOverflows: overflows, forwardClientOverflows: clientOverflows };
  }

  /** Aborts every forward in flight, the current forwarder's and the retired ones'. */
  close(current: DnsState): void {
    current.forwarder.close();
    for (const f of this.retired) f.close();
  }

  private makeForwarder(config: Config): Forwarder {
    const { log } = this.opts;
    return createForwarder({
      servers: config.upstreamDns,
      timeoutMs: config.dns.forwardTimeoutMs,
      maxInFlight: config.dns.maxForwards,
      exchange: this.opts.exchange,
      onForward: (e) => {
        if (e.countRewritten) {
          const { from, to } = e.countRewritten;
          log.countRewritten(() => `dns: ${e.query.name} TXT said count=${from}; answered count=${to}, the couriers this router serves`);
        }
        if (!log.isDebug()) return;
        log.debug(() => `dns: forwarded ${e.query.name} ${e.query.type} via ${e.server ?? '-'}: ${e.outcome} (${e.ms} ms)`);
      },
    });
  }

  private retire(f: Forwarder): void {
    this.retired.add(f);  // kept until its last forward completes, for counts and close()
    this.pruneRetired();
  }

  private pruneRetired(): void {
    for (const f of this.retired) {
      if (f.inFlight > 0) continue;
      this.overflowsRetired += f.overflows;
      this.clientOverflowsRetired += f.clientOverflows;
      this.retired.delete(f);
    }
  }
}
