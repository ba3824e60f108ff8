// The status page (src/ops/status-page.ts: data → HTML), its data (src/ops/status-data.ts) and
// its routes on the metrics listener (GET / and /status.json).
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import type { RefreshReport } from '../../src/sync/controller.js';
import { desiredElements, desiredMapping } from '../../src/sync/mapping.js';
import { Metrics, serveMetrics } from '../../src/ops/metrics.js';
import { StatusSource } from '../../src/ops/status-data.js';
import { STATUS_PAGE_CSP, STATUS_PAGE_HEADERS, escapeHtml, renderStatusPage } from '../../src/ops/status-page.js';
import { statusRows } from '../../src/ops/status.js';
import { FakeClock, nx, ok, testConfig } from '../helpers/fixtures.js';

const HOSTILE = '<img src=x onerror=alert(1)>';
// Couriers only: the other default name sets would add 207 rows these tests do not look at.
const config = testConfig({ couriers: { first: 1, last: 3 }, nameSets: { sandbox: { enabled: false }, bag: { enabled: false }, provider: { enabled: false } } });
const NOW = 1_700_000_000_000;
const generation = {
  config,
  snapshot: desiredMapping({ config, previous: new Map(), results: new Map([['1-courier.push.apple.com', ok(['203.0.113.10', '203.0.113.11'])], ['2-courier.push.apple.com', nx]]), now: NOW }).snapshot,
};
const report = (over: Partial<RefreshReport> = {}): RefreshReport => ({
  ok: true, sync: 'delta', kernel: 'applied', changes: ['courier 1: - → 203.0.113.10'], elementsChanged: 2, counts: { fresh: 1, stale: 0, absent: 2 },
  sets: {}, failed: [], failedNames: [], resolveMs: 40, nftMs: 10, resolved: true, ...over,
});

/** The generation as the state file would hold it. */
function stateOf() {
  return { version: 2 as const, savedAt: NOW, names: [...generation.snapshot.names.values()], pool: {} };
}

function doc(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    generatedAt: new Date(NOW).toISOString(), health: { ok: true, status: 'ok', lastSuccessfulRefresh: new Date(NOW).toISOString() },
    savedAt: NOW, kernelTable: 'present', couriers: statusRows(config, stateOf(), undefined, NOW + 5000),
    refreshes: [], dns: { queries: 3, outcomes: { courier: 2, nxdomain: 1 } }, fallback: null, ...over,
  };
}

/** Cells of the table with this id: one string[] per body row, keyed by data-col. */
function rows(html: string, id: string): Record<string, string>[] {
  const t = new RegExp(`<table id="${id}">([\\s\\S]*?)</table>`).exec(html);
  if (!t) return [];
  return [...t[1]!.matchAll(/<tr[^>]*>((?:<td[\s\S]*?<\/td>)+)<\/tr>/g)].map((r) =>
    Object.fromEntries([...r[1]!.matchAll(/<td data-col="([^"]+)">([\s\S]*?)<\/td>/g)].map((c) => [c[1]!, c[2]!])));
}

test('escapeHtml escapes the five HTML metacharacters', (t) => {
  t.is(escapeHtml(`<a href="x" title='y'>&</a>`), '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
});

test('a hostile name, note, set name or health error is rendered as text, never as markup', (t) => {
  const html = renderStatusPage(doc({
    health: { ok: true, status: 'degraded', lastError: HOSTILE },
    couriers: [{ name: HOSTILE, vip: '198.18.100.1', state: `"><script>alert(1)</script>`, addresses: [HOSTILE], note: HOSTILE }],
    [HOSTILE]: [{ vip: HOSTILE }],
    dns: { [HOSTILE]: 1 },
  }));
  t.false(html.includes('<img'), 'no raw <img');
  t.false(/<script/i.test(html), 'no script element');
  t.true(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
  t.false(html.includes('"><script'));
});

test('the page is self-contained: a strict CSP whose hash allows exactly the inline style', (t) => {
  const html = renderStatusPage(doc());
  t.regex(STATUS_PAGE_CSP, /^default-src 'none'; /);
  t.regex(STATUS_PAGE_CSP, /script-src 'none'/);
  t.is(STATUS_PAGE_HEADERS['content-security-policy'], STATUS_PAGE_CSP);
  const styles = [...html.matchAll(/<style>([\s\S]*?)<\/style>/g)].map((m) => m[1]!);
  t.is(styles.length, 1);
  const hash = createHash('sha256').update(styles[0]!).digest('base64');
  t.true(STATUS_PAGE_CSP.includes(`style-src 'sha256-${hash}'`));
  t.false(/\b(?:src|href)="(?:https?:)?\/\//.test(html), 'no external asset');
  t.false(/ style="/.test(html), 'no inline style attributes (the hash does not cover them)');
  t.regex(html, /<meta http-equiv="refresh" content="\d+">/);
  t.regex(html, /<meta name="viewport" content="width=device-width/);
});

test('the health banner shows the /healthz status', (t) => {
  for (const status of ['ok', 'degraded', 'down']) {
    const html = renderStatusPage(doc({ health: { ok: status !== 'down', status } }));
    t.regex(html, new RegExp(`<div id="health" class="banner ${status}" data-status="${status}">${status}`));
  }
});

test('rows: one per courier with VIP, state, age and addresses; refreshes, DNS and fallback', (t) => {
  const html = renderStatusPage(doc({ refreshes: [{ at: 'T1', durationMs: 50, result: 'failed', sync: 'none', kernel: 'unchanged', changes: 0, failures: 3, error: 'upstream silent' }] }));
  const r = rows(html, 'set-couriers');
  t.is(r.length, 3);
  t.like(r[0], { courier: '1', vip: '198.18.100.1', state: 'fresh', ageSeconds: '5s', addresses: '203.0.113.10, 203.0.113.11' });
  t.like(r[1], { courier: '2', state: 'absent', addresses: '-' });
  t.like(rows(html, 'refreshes')[0], { at: 'T1', durationMs: '50 ms', result: 'failed', failures: '3', error: 'upstream silent' });
  t.regex(html, /<dd data-key="outcomes.courier">2<\/dd>/);
  t.regex(html, /<p class="meta" id="fallback">not running<\/p>/);
});

test('new name sets and columns (element counters) need no page change', (t) => {
  const html = renderStatusPage(doc({ sandboxCouriers: [{ name: '1-courier.sandbox.push.apple.com', vip: '198.18.101.1', state: 'fresh', addresses: [], newConnections: 42 }] }));
  t.regex(html, /<h2>sandbox couriers \(1\)<\/h2>/);
  t.regex(html, /<th scope="col">new connections<\/th>/);
  t.like(rows(html, 'set-sandboxCouriers')[0], { name: '1-courier.sandbox.push.apple.com', newConnections: '42' });
  t.notRegex(renderStatusPage(doc()), /new connections/, 'no column without the data');
});

test('StatusSource: the rows of status --json from the live generation and map; a ring of reports', async (t) => {
  const clock = new FakeClock(NOW + 5000);
  let reads = 0;
  const live = { stamp: null, elements: desiredElements(generation.snapshot) };
  const source = new StatusSource({
    config: () => config, generation: () => generation, clock: clock.now, keep: 3,
    readMap: async () => { reads++; return live; },
    health: () => ({ ok: true, body: { status: 'ok' } }),
    dns: () => ({ queries: 1 }),
  });
  for (let i = 0; i < 5; i++) source.recorded(report({ resolveMs: i }));
  const d = await source.document();
  t.deepEqual(d.couriers, statusRows(config, { ...stateOf(), connections: {} }, live, NOW + 5000));
  t.is(d.kernelTable, 'present');
  t.like(d.health, { ok: true, status: 'ok' });
  t.deepEqual(d.refreshes.map((r) => r.durationMs), [14, 13, 12], 'newest first, at most keep');
  t.like(d.refreshes[0], { result: 'ok', changes: 1, failures: 0 });
  t.deepEqual(d.dns, { queries: 1 });
  t.is(d.fallback, null);
  await source.document();
  t.is(reads, 1, 'the live map is read at most every 2 s');
  clock.advance(2000);
  await source.document();
  t.is(reads, 2);
});

test('StatusSource: an unreadable map is reported as in status, the state rows stay', async (t) => {
  const source = new StatusSource({
    config: () => config, generation: () => undefined, clock: () => NOW,
    readMap: async () => { throw new Error('nft: permission denied'); },
    health: () => ({ ok: false, body: { status: 'down' } }),
  });
  const d = await source.document();
  t.is(d.kernelTable, 'unreadable');
  t.deepEqual(d.couriers.map((c) => c.state), ['unknown', 'unknown', 'unknown']);
});

test('the metrics listener serves the page at / and its data at /status.json', async (t) => {
  const clock = new FakeClock(NOW);
  const m = new Metrics({}, clock.now);
  m.refreshed(report(), generation);
  const server = await serveMetrics(m, '127.0.0.1', 0, async () => doc({ health: { ok: m.health().ok, ...m.health().body } }));
  const plain = await serveMetrics(m, '127.0.0.1', 0);
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const page = await fetch(`${base}/`);
    t.is(page.status, 200);
    t.is(page.headers.get('content-security-policy'), STATUS_PAGE_CSP);
    t.regex(page.headers.get('content-type')!, /^text\/html/);
    const html = await page.text();
    t.is(rows(html, 'set-couriers').length, 3);
    t.regex(html, /data-status="ok"/);
    const json = await fetch(`${base}/status.json`);
    t.is(json.status, 200);
    t.is(((await json.json()) as { couriers: unknown[] }).couriers.length, 3);
    t.is((await fetch(`${base}/healthz`)).status, 200);
    t.is((await fetch(`${base}/nope`)).status, 404);
    const other = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    t.is((await fetch(`${other}/`)).status, 404, 'no status source, no page');
  } finally {
    server.close();
    plain.close();
  }
});
