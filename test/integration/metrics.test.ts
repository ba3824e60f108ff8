// /metrics and /healthz of a real daemon in the lab's router namespace, after a refresh, DNS
// queries and fallback connections.
import { join } from 'node:path';
import { startMetricsDaemon } from '../helpers/metrics-daemon.js';
import anyTest, { type TestFn } from 'ava';
import { type Lab, type LabProcess, createLab, distPath, nodeBin } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; daemon: LabProcess }>;
const CLI = distPath('src/cli.js');

test.before(async (t) => {
  const lab = await createLab();
  const { daemon } = await startMetricsDaemon(lab);
  t.context = { lab, daemon };
});

test.after.always(async (t) => {
  t.context.daemon?.kill('SIGTERM');
  await t.context.daemon?.exited;
  await t.context.lab?.destroy();
});

/** GET from inside the router namespace (the admin address is its loopback). */
async function get(lab: Lab, path: string): Promise<{ status: number; body: string }> {
  const script = `fetch('http://127.0.0.1:9523${path}').then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`;
  const r = await lab.exec(lab.ns.router, nodeBin(), ['-e', script]);
  return JSON.parse(r.stdout) as { status: number; body: string };
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test.serial('metrics count couriers, refreshes, DNS answers and fallback connections', async (t) => {
  const { lab } = t.context;
  for (const name of ['5-courier.push.apple.com', '6-courier.push.apple.com', '51-courier.push.apple.com', 'forward.example.test']) {
    await lab.exec(lab.ns.client, 'dig', ['+short', '+time=2', '+tries=1', '@192.0.2.1', name, 'A']);
  }
  await lab.probe(['connect', '198.18.100.55', '5223']);  // NXDOMAIN courier: the fallback resets it
  const { status, body } = await get(lab, '/metrics');
  t.is(status, 200);
  t.is(value(body, 'apns_proxy_couriers{state="fresh"}'), 50);
  t.is(value(body, 'apns_proxy_couriers{state="absent"}'), 10);
  t.true(value(body, 'apns_proxy_refresh_total{result="ok"}')! >= 2, 'start-up sync and first refresh');
  t.is(value(body, 'apns_proxy_nft_transaction_failures_total'), 0);
  t.is(value(body, 'apns_proxy_nft_transactions_total{kind="full"}'), 1, 'start-up from (empty) state');
  t.is(value(body, 'apns_proxy_nft_transactions_total{kind="delta"}'), 1, 'the first refresh adds the elements');
  t.true(Math.abs(value(body, 'apns_proxy_last_refresh_success_timestamp_seconds')! - Date.now() / 1000) < 60);
  t.is(value(body, 'apns_proxy_dns_queries_total{outcome="courier"}'), 2);
  t.is(value(body, 'apns_proxy_dns_queries_total{outcome="nxdomain"}'), 1);
  t.is(value(body, 'apns_proxy_dns_queries_total{outcome="forwarded"}'), 1);
  t.true(value(body, 'apns_proxy_dns_query_duration_seconds_count{kind="forwarded"}')! >= 1);
  t.is(value(body, 'apns_proxy_fallback_connections_total'), 1);
  t.is(value(body, 'apns_proxy_fallback_connections_failed_total'), 1);
  t.is(value(body, 'apns_proxy_fallback_connections_active'), 0);
});

test.serial('healthz: 200 ok while the map is programmed, degraded when upstream fails', async (t) => {
  const { lab, daemon } = t.context;
  const ok = await get(lab, '/healthz');
  t.is(ok.status, 200);
  t.like(JSON.parse(ok.body), { status: 'ok', couriers: { fresh: 50, stale: 0, absent: 10 } });
  await lab.setScenario({ live: 50, mode: 'silent' });
  try {
    const from = daemon.lines.length;
    const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', join(lab.dir, 'config.json')], { reject: false });
    t.is(r.exitCode, 1);
    await daemon.waitForLine(/refresh: 0 fresh, 50 stale/, 5000, from);
    const degraded = await get(lab, '/healthz');
    t.is(degraded.status, 200, 'forwarding still works on last-known-good');
    t.like(JSON.parse(degraded.body), { status: 'degraded', couriers: { fresh: 0, stale: 50, absent: 10 } });
    t.is((await get(lab, '/nope')).status, 404);
  } finally {
    await lab.setScenario({ live: 50 });
  }
});
