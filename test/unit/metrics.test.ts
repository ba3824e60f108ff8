import test from 'ava';
import type { RefreshReport } from '../../src/sync/controller.js';
import { desiredMapping } from '../../src/sync/mapping.js';
import { Metrics } from '../../src/ops/metrics.js';
import { FakeClock, nx, ok, testConfig, byCourier } from '../helpers/fixtures.js';

const config = testConfig({ couriers: { first: 1, last: 3 } });
const generation = {
  config,
  snapshot: desiredMapping({ config, previous: new Map(), results: byCourier([[1, ok(['203.0.113.10'])], [2, nx]]), now: 0 }).snapshot,
};

const report = (over: Partial<RefreshReport> = {}): RefreshReport => ({
  ok: true, sync: 'full', kernel: 'applied', changes: [], elementsChanged: 8, counts: { fresh: 1, stale: 0, absent: 2 },
  sets: {}, failed: [], failedNames: [], resolveMs: 40, nftMs: 10, resolved: true, ...over,
});

function value(text: string, line: string): number | undefined {
  const m = new RegExp(`^${line.replace(/[{}.]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

test('refresh metrics: couriers by state, results, transactions, last success and duration', async (t) => {
  const clock = new FakeClock(1_700_000_000_000);
  const m = new Metrics({}, clock.now);
  m.refreshed(report(), generation);
  m.refreshed(report({ sync: 'none', kernel: 'unchanged' }), generation);
  clock.advance(5000);
  m.refreshed(report({ ok: false, sync: 'delta', kernel: 'refused', error: 'nft rejected the transaction' }), generation);
  const text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_couriers{state="fresh"}'), 1);
  t.is(value(text, 'apns_proxy_couriers{state="absent"}'), 2);
  t.is(value(text, 'apns_proxy_refresh_total{result="ok"}'), 2);
  t.is(value(text, 'apns_proxy_refresh_total{result="failed"}'), 1);
  t.is(value(text, 'apns_proxy_nft_transactions_total{kind="full"}'), 1);
  t.is(value(text, 'apns_proxy_nft_transactions_total{kind="delta"}'), 1);
  t.is(value(text, 'apns_proxy_nft_transaction_failures_total'), 1);
  t.is(value(text, 'apns_proxy_last_refresh_success_timestamp_seconds'), 1_700_000_000, 'the refused one is not a success');
  t.is(value(text, 'apns_proxy_last_refresh_duration_seconds'), 0.05);
  t.regex(text, /^apns_proxy_process_resident_memory_bytes \d+/m);
});

test('dns and fallback counters are read from their sources at scrape time', async (t) => {
  let dnsCourier = 5;
  const m = new Metrics({
    dns: () => ({ outcomes: { courier: dnsCourier, nxdomain: 2 }, forwarded: 7, rateLimited: 1, dropped: 0, forwardOverflows: 0, handoffDropped: 3 }),
    fallback: () => ({ active: 3, total: 10, failed: 2 }),
  });
  m.dnsAnswered('local', 0.0002);
  m.dnsAnswered('forwarded', 0.03);
  let text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_dns_queries_total{outcome="courier"}'), 5);
  t.is(value(text, 'apns_proxy_dns_queries_total{outcome="forwarded"}'), 7);
  t.is(value(text, 'apns_proxy_dns_queries_total{outcome="handoff_dropped"}'), 3);
  t.is(value(text, 'apns_proxy_dns_query_duration_seconds_count{kind="local"}'), 1);
  t.is(value(text, 'apns_proxy_dns_query_duration_seconds_bucket{le="0.0005",kind="local"}'), 1);
  t.is(value(text, 'apns_proxy_dns_query_duration_seconds_bucket{le="0.01",kind="forwarded"}'), 0);
  t.is(value(text, 'apns_proxy_fallback_connections_active'), 3);
  t.is(value(text, 'apns_proxy_fallback_connections_total'), 10);
  t.is(value(text, 'apns_proxy_fallback_connections_failed_total'), 2);
  dnsCourier = 9;
  text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_dns_queries_total{outcome="courier"}'), 9, 'not accumulated twice');
});

test('health: down before the kernel is programmed, degraded on resolution trouble, ok otherwise', (t) => {
  const m = new Metrics();
  t.false(m.health().ok);
  t.is(m.health().body.status, 'down');
  m.refreshed(report({ ok: false, kernel: 'unchanged', error: 'resolution failed for 2 courier(s)' }), generation);
  t.true(m.health().ok);
  t.is(m.health().body.status, 'degraded');
  t.is(m.health().body.lastError, 'resolution failed for 2 courier(s)');
  m.refreshed(report(), generation);
  t.deepEqual(m.health().body.couriers, { fresh: 1, stale: 0, absent: 2 });
  t.is(m.health().body.status, 'ok');
});

test('start-up programming from state is not a successful refresh; a failed state write degrades health', async (t) => {
  const clock = new FakeClock(1_700_000_000_000);
  const m = new Metrics({}, clock.now);
  m.refreshed(report({ resolved: false, sync: 'full' }), generation);  // programmed from state at start
  let text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_last_refresh_success_timestamp_seconds'), 0);
  t.is(m.health().body.lastSuccessfulRefresh, null);
  t.is(m.health().body.status, 'degraded', 'nothing resolved yet');
  t.true(m.health().ok, 'the kernel holds a map: 200');
  m.refreshed(report({ ok: false, stateError: 'cannot write /var/lib/apns-proxy/state.json: ENOSPC', error: 'kernel programmed but ...' }), generation);
  text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_state_write_failures_total'), 1);
  t.is(value(text, 'apns_proxy_state_writable'), 0);
  t.is(m.health().body.stateWritable, false);
  t.is(m.health().body.status, 'degraded');
  m.refreshed(report(), generation);
  t.is(m.health().body.stateWritable, true);
  t.is(m.health().body.status, 'ok');
  t.is(value(await m.registry.metrics(), 'apns_proxy_state_writable'), 1);
});

test('drift found by a cycle is counted and shown in health', async (t) => {
  const clock = new FakeClock(1_700_000_000_000);
  const m = new Metrics({}, clock.now);
  m.refreshed(report(), generation);
  t.is(m.health().body.lastDrift, null);
  m.refreshed(report({ drift: 'the kernel map differs from what was applied (16 missing, 0 changed, 0 foreign elements)' }), generation);
  t.is(value(await m.registry.metrics(), 'apns_proxy_drift_total'), 1);
  t.is(m.health().body.lastDrift, new Date(1_700_000_000_000).toISOString());
});

test('a source that is not running (fallback off) reads as zero, not an error', async (t) => {
  const m = new Metrics({ fallback: () => undefined });
  const text = await m.registry.metrics();
  t.is(value(text, 'apns_proxy_fallback_connections_total'), 0);
});
