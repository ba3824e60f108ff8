// contrib/grafana/apns-proxy.json queries only metrics the daemon exports: every PromQL expression
// in the dashboard (panel targets and template variables) is parsed for metric names, which are
// checked against what a real Metrics registry (src/ops/metrics.ts, fake sources) exposes.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { Metrics } from '../../src/ops/metrics.js';
import { REPO } from '../helpers/fixtures.js';

const FILE = new URL('contrib/grafana/apns-proxy.json', REPO);

const KEYWORDS = new Set([
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset',
  'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group',
  'inf', 'nan', 'le',
]);

/** Metric names a PromQL expression (or a Grafana label_values() query) reads. */
function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')     // strings
    .replace(/\$\{?\w+\}?/g, ' ')                                    // Grafana variables ($__rate_interval, ${instance})
    .replace(/\{[^}]*\}/g, ' ')                                       // label matchers
    .replace(/\[[^\]]*\]/g, ' ')                                      // range and subquery selectors
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');  // label lists
  const names = new Set<string>();
  const lv = /label_values\s*\(\s*([A-Za-z_:][\w:]*)\s*,/.exec(expr);  // label_values(metric, label)
  if (lv) names.add(lv[1]!);
  for (const m of s.matchAll(/(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?/g)) {
    if (m[2] !== undefined) continue;                                // a function call
    if (KEYWORDS.has(m[1]!.toLowerCase())) continue;
    if (/^\d/.test(m[1]!)) continue;
    names.add(m[1]!);
  }
  if (lv) names.delete('instance');
  return [...names];
}

interface Panel { title?: string; type?: string; targets?: { expr?: string }[]; panels?: Panel[] }
interface Dashboard { panels: Panel[]; templating: { list: { type: string; query?: unknown; definition?: string }[] } }

function expressions(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query ?? v.definition ?? '';
    out.push({ where: 'template variable', expr: q });
  }
  return out;
}

/** Series names the registry exposes: histograms add _bucket, _sum and _count. */
async function exported(): Promise<Set<string>> {
  const m = new Metrics({
    fallback: () => ({ active: 0, total: 0, failed: 0 }),
    dns: () => ({ outcomes: { courier: 0 }, forwarded: 0, rateLimited: 0, dropped: 0, forwardOverflows: 0, handoffDropped: 0 }),
  });
  const names = new Set<string>();
  for (const metric of await m.registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${s}`);
  }
  return names;
}

function unknownMetrics(d: Dashboard, known: Set<string>): string[] {
  return expressions(d).flatMap(({ where, expr }) => metricNames(expr).filter((n) => !known.has(n)).map((n) => `${where}: ${n} (in ${expr})`));
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;

test('metricNames finds metric names, not functions, keywords, labels or variables', (t) => {
  t.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, kind) (rate(apns_proxy_dns_query_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))'), ['apns_proxy_dns_query_duration_seconds_bucket']);
  t.deepEqual(metricNames('time() - apns_proxy_last_refresh_success_timestamp_seconds{job="a b"}'), ['apns_proxy_last_refresh_success_timestamp_seconds']);
  t.deepEqual(metricNames('sum(rate(a_total[5m])) / on (instance) group_left (x) b_bytes > 1e3'), ['a_total', 'b_bytes']);
  t.deepEqual(metricNames('label_values(apns_proxy_refresh_total, instance)'), ['apns_proxy_refresh_total']);
});

test('the dashboard is importable: a Prometheus datasource variable, unique panel ids, every query on it', (t) => {
  const d = dashboard() as Dashboard & { uid: string; title: string; schemaVersion: number };
  t.is(d.uid, 'apns-proxy');
  t.true(d.schemaVersion > 30);
  const dsVar = d.templating.list.find((v) => v.type === 'datasource') as { name: string; query: string } | undefined;
  t.like(dsVar, { name: 'datasource', query: 'prometheus' });
  const all: (Panel & { id: number; datasource?: { uid: string } })[] = [];
  const walk = (ps: Panel[]) => { for (const p of ps) { all.push(p as never); walk(p.panels ?? []); } };
  walk(d.panels);
  t.is(new Set(all.map((p) => p.id)).size, all.length, 'panel ids are unique');
  for (const p of all.filter((x) => x.type !== 'row')) {
    t.is(p.datasource?.uid, '${datasource}', `panel "${p.title}" uses the datasource variable`);
    t.true((p.targets ?? []).length > 0, `panel "${p.title}" has queries`);
  }
  const titles = all.map((p) => p.title ?? '').join('\n');
  for (const want of [/refresh/i, /couriers by state/i, /stale age/i, /DNS queries by outcome/i, /DNS latency/i, /fallback/i, /nft/i, /memory/i]) t.regex(titles, want);
});

test('every metric the dashboard queries is one the daemon exports', async (t) => {
  const known = await exported();
  t.true(known.has('apns_proxy_process_resident_memory_bytes'), 'default process metrics are exported with the prefix');
  const d = dashboard();
  const used = new Set(expressions(d).flatMap((e) => metricNames(e.expr)));
  t.true(used.size >= 12, `the dashboard queries ${used.size} metrics`);
  t.deepEqual(unknownMetrics(d, known), []);
});

test('a misspelt metric in the dashboard is caught', async (t) => {
  const known = await exported();
  const d = dashboard();
  const target = d.panels.find((p) => p.targets?.length)!.targets![0]!;
  target.expr = target.expr!.replace(/apns_proxy_\w+/, 'apns_proxy_last_refresh_sucess_timestamp_seconds');
  const bad = unknownMetrics(d, known);
  t.is(bad.length, 1);
  t.regex(bad[0]!, /apns_proxy_last_refresh_sucess_timestamp_seconds/);
});
