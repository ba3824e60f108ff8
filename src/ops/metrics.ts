// Prometheus metrics and health on a local admin address (prom-client: a well-kept exposition
// format implementation). Counters the subsystems already keep are read at scrape time, so the
// hot paths pay nothing for them.
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import client from 'prom-client';
import type { RefreshReport } from '../sync/controller.js';
import type { Generation, Snapshot } from '../sync/mapping.js';
import { STATUS_PAGE_HEADERS, renderStatusPage } from './status-page.js';

export interface MetricSources {
  /** Fallback counters, when the fallback runs. */
  fallback?: () => { active: number; total: number; failed: number } | undefined;
  /** DNS counters by outcome, when the DNS server runs. */
  dns?: () => { outcomes: Record<string, number>; forwarded: number; rateLimited: number; dropped: number; forwardOverflows: number; handoffDropped: number };
}

export interface Health { readonly ok: boolean; readonly body: Record<string, unknown> }

export class Metrics {
  readonly registry = new client.Registry();
  private readonly refreshes: client.Counter<'result'>;
  private readonly nftFailures: client.Counter;
  private readonly nftTransactions: client.Counter<'kind'>;
  private readonly lastSuccess: client.Gauge;
  private readonly lastDuration: client.Gauge;
  private readonly dnsLatency: client.Histogram<'kind'>;
  private readonly stateFailures: client.Counter;
  private readonly stateWritable: client.Gauge;
  private readonly drifts: client.Counter;
  private lastStateError: string | null = null;   // null while the last write (if any) succeeded
  private lastDriftAt: number | null = null;
  private lastReport: RefreshReport | undefined;
  private lastSuccessAt: number | null = null;  // last cycle that resolved everything and was applied
  private programmedAt: number | null = null;   // last cycle the kernel accepted (or needed nothing)
  private snapshot: Snapshot | undefined;
  private sets: readonly string[] = [];  // the configured set ids (a set with no names yet still shows zeros)

  constructor(private readonly sources: MetricSources = {}, private readonly clock: () => number = Date.now) {
    const registers = [this.registry];
    // Event-loop lag sampled once a second, not every 10 ms: an idle daemon should stay asleep.
    client.collectDefaultMetrics({ register: this.registry, prefix: 'apns_proxy_', eventLoopMonitoringPrecision: 1000 });
    const self = this;
    new client.Gauge({
      name: 'apns_proxy_couriers', help: 'Couriers by state (fresh, stale, absent) after the last accepted refresh.',
      labelNames: ['state'], registers,
      collect() {
        const counts = { fresh: 0, stale: 0, absent: 0 };
        for (const c of self.snapshot?.couriers.values() ?? []) counts[c.state]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    new client.Gauge({
      name: 'apns_proxy_names', help: 'Names of every set by set and state (fresh, stale, absent) after the last accepted refresh.',
      labelNames: ['set', 'state'], registers,
      collect() {
        this.reset();
        const counts = new Map<string, { fresh: number; stale: number; absent: number }>();
        for (const s of self.sets) counts.set(s, { fresh: 0, stale: 0, absent: 0 });
        for (const c of self.snapshot?.names.values() ?? []) {
          if (!counts.has(c.set)) counts.set(c.set, { fresh: 0, stale: 0, absent: 0 });
          counts.get(c.set)![c.state]++;
        }
        for (const [set, byState] of counts) for (const [state, n] of Object.entries(byState)) this.set({ set, state }, n);
      },
    });
    this.refreshes = new client.Counter({ name: 'apns_proxy_refresh_total', help: 'Refresh cycles by result (ok, failed).', labelNames: ['result'], registers });
    this.nftFailures = new client.Counter({ name: 'apns_proxy_nft_transaction_failures_total', help: 'nft transactions the kernel refused.', registers });
    this.nftTransactions = new client.Counter({ name: 'apns_proxy_nft_transactions_total', help: 'nft transactions sent, by kind (full, delta).', labelNames: ['kind'], registers });
    this.lastSuccess = new client.Gauge({ name: 'apns_proxy_last_refresh_success_timestamp_seconds', help: 'When a refresh last resolved every courier and the kernel accepted it (Unix time).', registers });
    this.lastDuration = new client.Gauge({ name: 'apns_proxy_last_refresh_duration_seconds', help: 'Resolve plus nft time of the last refresh.', registers });
    this.stateFailures = new client.Counter({ name: 'apns_proxy_state_write_failures_total', help: 'Cycles whose last-known-good could not be written to the state file (read-only or full disk).', registers });
    this.stateWritable = new client.Gauge({ name: 'apns_proxy_state_writable', help: '1 when the last state file write succeeded, 0 when it failed.', registers });
    this.stateWritable.set(1);
    this.drifts = new client.Counter({ name: 'apns_proxy_drift_total', help: 'Cycles that found our table (map, sets, the table itself) differing from what was applied (repaired by a full sync).', registers });
    this.dnsLatency = new client.Histogram({
      name: 'apns_proxy_dns_query_duration_seconds', help: 'DNS answer latency by kind (local answers, forwarded).',
      labelNames: ['kind'], registers, buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5],
    });
    new client.Counter({
      name: 'apns_proxy_dns_queries_total', help: 'DNS queries by outcome.', labelNames: ['outcome'], registers,
      collect() {
        const d = self.sources.dns?.();
        if (!d) return;
        this.reset();
        for (const [outcome, n] of Object.entries(d.outcomes)) this.inc({ outcome }, n);
        this.inc({ outcome: 'forwarded' }, d.forwarded);
        this.inc({ outcome: 'rate_limited' }, d.rateLimited);
        this.inc({ outcome: 'dropped' }, d.dropped);
        this.inc({ outcome: 'servfail_overload' }, d.forwardOverflows);
        this.inc({ outcome: 'handoff_dropped' }, d.handoffDropped);  // the UDP fast path got ahead of node
      },
    });
    new client.Gauge({
      name: 'apns_proxy_fallback_connections_active', help: 'Connections the userspace fallback carries now.', registers,
      collect() { const f = self.sources.fallback?.(); if (f) this.set(f.active); },
    });
    new client.Counter({
      name: 'apns_proxy_fallback_connections_total', help: 'Connections the fallback accepted.', registers,
      collect() { const f = self.sources.fallback?.(); if (f) { this.reset(); this.inc(f.total); } },
    });
    new client.Counter({
      name: 'apns_proxy_fallback_connections_failed_total', help: 'Fallback connections refused or reset (no courier, unreachable, over the cap).', registers,
      collect() { const f = self.sources.fallback?.(); if (f) { this.reset(); this.inc(f.failed); } },
    });
  }

  /** Called after every refresh cycle with its report and the published snapshot. */
  refreshed(report: RefreshReport, generation: Generation | undefined): void {
    const snapshot = generation?.snapshot;
    this.lastReport = report;
    this.snapshot = snapshot;
    if (generation) this.sets = generation.config.sets.map((s) => s.id);
    this.refreshes.inc({ result: report.ok ? 'ok' : 'failed' });
    if (report.sync !== 'none') this.nftTransactions.inc({ kind: report.sync });
    if (report.kernel === 'refused') this.nftFailures.inc();
    else this.programmedAt = this.clock();
    // Programming from state at start resolved nothing: it is not a successful refresh.
    if (report.ok && report.resolved) {
      this.lastSuccessAt = this.clock();
      this.lastSuccess.set(this.lastSuccessAt / 1000);
    }
    if (report.kernel !== 'refused') {
      this.lastStateError = report.stateError ?? null;
      this.stateWritable.set(report.stateError === undefined ? 1 : 0);
      if (report.stateError !== undefined) this.stateFailures.inc();
    }
    if (report.drift !== undefined) {
      this.drifts.inc();
      this.lastDriftAt = this.clock();
    }
    this.lastDuration.set((report.resolveMs + report.nftMs) / 1000);
  }

  /** One DNS answer's latency: 'local' for answers from the snapshot, 'forwarded' for relayed ones. */
  dnsAnswered(kind: 'local' | 'forwarded', seconds: number): void {
    this.dnsLatency.observe({ kind }, seconds);
  }

  /** Healthy while the kernel holds a map we programmed; resolution trouble is "degraded", not down. */
  health(): Health {
    const r = this.lastReport;
    const counts = { fresh: 0, stale: 0, absent: 0 };
    for (const c of this.snapshot?.couriers.values() ?? []) counts[c.state]++;
    const programmed = this.programmedAt !== null;
    const stateWritable = this.lastStateError === null;
    const status = !programmed ? 'down' : r?.ok && r.resolved && stateWritable ? 'ok' : 'degraded';
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return {
      ok: programmed,
      body: {
        status, lastProgrammed: iso(this.programmedAt), lastSuccessfulRefresh: iso(this.lastSuccessAt), couriers: counts,
        stateWritable, lastDrift: iso(this.lastDriftAt),
        ...(r?.error ? { lastError: r.error } : {}), ...(this.lastStateError ? { stateError: this.lastStateError } : {}),
      },
    };
  }
}

/**
 * GET /metrics (Prometheus text) and GET /healthz (200 ok/degraded, 503 down; JSON body); with a
 * status source also GET / (the status page, src/ops/status-page.ts) and GET /status.json (its data).
 */
export async function serveMetrics(metrics: Metrics, host: string, port: number, status?: () => Promise<Record<string, unknown>>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else if (path === '/healthz') {
      const h = metrics.health();
      res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(h.body)}\n`);
    } else if (status && (path === '/' || path === '/status.json')) {
      status().then(
        (doc) => {
          if (path === '/') res.writeHead(200, STATUS_PAGE_HEADERS).end(renderStatusPage(doc));
          else res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(`${JSON.stringify(doc, null, 1)}\n`);
        },
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`try ${status ? '/, /status.json, ' : ''}/metrics or /healthz\n`);
    }
  });
  const listening = once(server, 'listening');  // rejects with the listen error ('error')
  server.listen(port, host);
  await listening;
  return server;
}
