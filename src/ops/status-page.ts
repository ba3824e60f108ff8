// The status page (GET / on metrics.listen), pure: a status document (the same JSON as
// /status.json) in, one self-contained HTML page out. No script, no external asset; the one inline
// style is allowed by its hash in a strict Content-Security-Policy; every value is escaped. Tables
// are built from the data, not from a fixed list: any top-level array of rows carrying a `vip` is a
// name set, and its columns are the rows' keys (known ones first), so new name sets and new columns
// (per-element connection counters) appear without a change here.
import { createHash } from 'node:crypto';
import { formatAge } from './status.js';

export const STATUS_PAGE_REFRESH_SECONDS = 10;

const STYLE = `
:root{color-scheme:light dark;--ok:#1a7f37;--degraded:#9a6700;--down:#cf222e;--line:#8884}
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:0 .75rem 2rem}
h1{font-size:1.15rem;margin:.75rem 0 .25rem}h2{font-size:1rem;margin:1.25rem 0 .4rem}
.banner{padding:.6rem .75rem;border-radius:.4rem;color:#fff;font-weight:600;margin:.5rem 0}
.banner.ok{background:var(--ok)}.banner.degraded{background:var(--degraded)}.banner.down,.banner.unknown{background:var(--down)}
.banner small{display:block;font-weight:400;opacity:.9;word-break:break-word}
.wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;min-width:100%;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th,td{white-space:nowrap}th{font-weight:600}
td[data-col=addresses],td[data-col=kernel],td[data-col=note],td[data-col=error],td[data-col=lastError]{white-space:normal;min-width:9rem}
tr.fresh td[data-col=state],tr.ok td[data-col=result]{color:var(--ok)}
tr.stale td[data-col=state]{color:var(--degraded)}
tr.absent td[data-col=state],tr.unknown td[data-col=state],tr.failed td[data-col=result]{color:var(--down)}
.meta{color:#888;font-size:.85rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:0}dt{color:#888}dd{margin:0}
@media (max-width:600px){body{font-size:13px}th,td{padding:.2rem .3rem}}
`;
const STYLE_HASH = createHash('sha256').update(STYLE).digest('base64');

/** The Content-Security-Policy the page is served with: nothing but its own inline style. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'", `style-src 'sha256-${STYLE_HASH}'`, "img-src 'none'", "script-src 'none'",
  "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
].join('; ');

/** Headers to send with the page. */
export const STATUS_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': STATUS_PAGE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

type Row = Record<string, unknown>;
const isRow = (x: unknown): x is Row => typeof x === 'object' && x !== null && !Array.isArray(x);
/** Name sets: top-level arrays whose rows carry a VIP. */
const isNameSet = (x: unknown): x is Row[] => Array.isArray(x) && x.every(isRow) && (x.length === 0 || x.some((r) => 'vip' in r));

/** Column order: these first (when present), then any other key in the order the rows have them. */
const FIRST = ['name', 'courier', 'vip', 'state', 'ageSeconds', 'addresses', 'kernel', 'newConnections', 'connections', 'ttl', 'lastError', 'error', 'note'];
const HEADINGS: Record<string, string> = { ageSeconds: 'age', kernel: 'kernel map', newConnections: 'new connections', lastError: 'last error', durationMs: 'duration', at: 'time' };

function columns(rows: readonly Row[]): string[] {
  const seen = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) seen.add(k);
  return [...FIRST.filter((k) => seen.has(k)), ...[...seen].filter((k) => !FIRST.includes(k))];
}

function cell(key: string, v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (key === 'ageSeconds' && typeof v === 'number') return formatAge(v);
  if (key === 'durationMs' && typeof v === 'number') return `${v} ms`;
  if (Array.isArray(v)) return v.length ? v.map((x) => cell('', x)).join(', ') : '-';
  if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${k}: ${cell(k, x)}`).join(', ');
  return String(v);
}

function humanise(key: string): string {
  return HEADINGS[key] ?? key.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
}

function table(id: string, rows: readonly Row[], classKey?: string): string {
  const cols = columns(rows);
  if (rows.length === 0) return `<p class="meta" id="${escapeHtml(id)}">none</p>`;
  const head = cols.map((c) => `<th scope="col">${escapeHtml(humanise(c))}</th>`).join('');
  const body = rows.map((r) => {
    const cls = classKey && typeof r[classKey] === 'string' ? ` class="${escapeHtml(r[classKey] as string)}"` : '';
    return `<tr${cls}>${cols.map((c) => `<td data-col="${escapeHtml(c)}">${escapeHtml(cell(c, r[c]))}</td>`).join('')}</tr>`;
  }).join('\n');
  return `<div class="wrap"><table id="${escapeHtml(id)}"><thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

/** Nested counters flattened to one level: {outcomes: {courier: 2}} → outcomes.courier 2. */
function flatten(o: Row, prefix = ''): [string, unknown][] {
  return Object.entries(o).flatMap(([k, v]) => (isRow(v) ? flatten(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, unknown]]));
}

function counters(id: string, o: unknown): string {
  if (!isRow(o)) return `<p class="meta" id="${escapeHtml(id)}">not running</p>`;
  return `<dl id="${escapeHtml(id)}">${flatten(o).map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd data-key="${escapeHtml(k)}">${escapeHtml(cell(k, v))}</dd>`).join('')}</dl>`;
}

/** The page for one status document. */
export function renderStatusPage(doc: Readonly<Record<string, unknown>>): string {
  const health = isRow(doc.health) ? doc.health : {};
  const status = typeof health.status === 'string' ? health.status : 'unknown';
  const detail = ['lastError', 'stateError'].map((k) => health[k]).filter((x): x is string => typeof x === 'string');
  const since = typeof health.lastSuccessfulRefresh === 'string' ? `last successful refresh ${health.lastSuccessfulRefresh}` : 'no successful refresh yet';
  const sets = Object.entries(doc).filter(([k, v]) => k !== 'refreshes' && isNameSet(v)) as [string, Row[]][];
  const parts = [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    `<meta http-equiv="refresh" content="${STATUS_PAGE_REFRESH_SECONDS}">`,
    '<meta name="referrer" content="no-referrer">',
    '<title>apns-proxy status</title>',
    `<style>${STYLE}</style></head><body>`,
    '<h1>apns-proxy</h1>',
    `<div id="health" class="banner ${escapeHtml(status.replace(/[^a-z]/g, '') || 'unknown')}" data-status="${escapeHtml(status)}">${escapeHtml(status)}`,
    `<small>${escapeHtml(since)}${detail.map((d) => ` · ${escapeHtml(d)}`).join('')}</small></div>`,
    `<p class="meta">generated ${escapeHtml(String(doc.generatedAt ?? '-'))}; kernel table ${escapeHtml(String(doc.kernelTable ?? '-'))}; refreshes every ${STATUS_PAGE_REFRESH_SECONDS} s; <a href="status.json">status.json</a> · <a href="metrics">metrics</a> · <a href="healthz">healthz</a></p>`,
    ...sets.flatMap(([name, rows]) => [`<h2>${escapeHtml(humanise(name))} (${rows.length})</h2>`, table(`set-${name}`, rows, 'state')]),
    '<h2>Last refreshes</h2>',
    Array.isArray(doc.refreshes) ? table('refreshes', doc.refreshes.filter(isRow), 'result') : '<p class="meta">none</p>',
    '<h2>DNS</h2>', counters('dns', doc.dns),
    '<h2>Fallback</h2>', counters('fallback', doc.fallback),
    '</body></html>',
  ];
  return `${parts.join('\n')}\n`;
}
