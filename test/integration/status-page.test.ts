// The status page in a real browser: a daemon in the lab's router namespace, headless Chromium
// (Debian's chromium package) loading http://127.0.0.1:9523/ inside that namespace. The rendered
// table must equal `apns-proxy status --json`'s couriers, the banner /healthz's status, and the
// page must load without a Content-Security-Policy violation. Screenshots (desktop and phone
// width) are kept in test-artifacts/ (git-ignored).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startMetricsDaemon } from '../helpers/metrics-daemon.js';
import anyTest, { type TestFn } from 'ava';
import { type Lab, type LabProcess, createLab, distPath, nodeBin, repoRoot } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; daemon: LabProcess; config: string }>;
const CLI = distPath('src/cli.js');
const URL = 'http://127.0.0.1:9523/';
const ARTIFACTS = path.join(repoRoot(), 'test-artifacts');

test.before(async (t) => {
  const lab = await createLab();
  const { config, daemon } = await startMetricsDaemon(lab);
  t.context = { lab, daemon, config };
});

test.after.always(async (t) => {
  t.context.daemon?.kill('SIGTERM');
  await t.context.daemon?.exited;
  await t.context.lab?.destroy();
});

/** Headless Chromium inside the router namespace, with a fresh profile; returns stdout and stderr. */
async function chromium(lab: Lab, args: string[]): Promise<{ stdout: string; stderr: string }> {
  const profile = mkdtempSync(path.join(tmpdir(), 'apx-chromium-'));
  try {
    const r = await lab.exec(lab.ns.router, 'chromium', [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-extensions', '--hide-scrollbars', `--user-data-dir=${profile}`,
      '--enable-logging=stderr', '--v=0', ...args, URL,
    ], { timeoutMs: 60_000 });
    return { stdout: r.stdout, stderr: r.stderr };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

function cells(html: string, id: string): Record<string, string>[] {
  const t = new RegExp(`<table id="${id}">([\\s\\S]*?)</table>`).exec(html);
  if (!t) return [];
  return [...t[1]!.matchAll(/<tr[^>]*>\s*((?:<td[\s\S]*?<\/td>\s*)+)<\/tr>/g)].map((r) =>
    Object.fromEntries([...r[1]!.matchAll(/<td data-col="([^"]+)">([\s\S]*?)<\/td>/g)].map((c) => [c[1]!, c[2]!.replace(/&amp;/g, '&')])));
}

async function healthz(lab: Lab): Promise<{ status: string }> {
  const script = `fetch('http://127.0.0.1:9523/healthz').then(async (r) => console.log(await r.text()))`;
  return JSON.parse((await lab.exec(lab.ns.router, nodeBin(), ['-e', script])).stdout) as { status: string };
}

interface Row { courier: number; vip: string; state: string; addresses: string[]; kernel: string[] | null }

test.serial('Chromium renders the status page: rows equal status --json, banner equals /healthz, no CSP violation', async (t) => {
  const { lab, config } = t.context;
  await lab.exec(lab.ns.client, 'dig', ['+short', '+time=2', '+tries=1', '@192.0.2.1', '5-courier.push.apple.com', 'A']);
  const status = JSON.parse((await lab.exec(lab.ns.router, nodeBin(), [CLI, 'status', '--json', '--config', config])).stdout) as { couriers: Row[] };
  const health = await healthz(lab);
  const { stdout: dom, stderr } = await chromium(lab, ['--dump-dom']);

  t.regex(dom, /<title>apns-proxy status<\/title>/);
  const banner = /<div id="health" class="banner (\w+)" data-status="(\w+)">/.exec(dom);
  t.truthy(banner, 'the health banner is there');
  t.is(banner?.[2], health.status);
  t.is(health.status, 'ok');

  const rows = cells(dom, 'set-couriers');
  t.is(rows.length, 60);
  t.is(status.couriers.length, 60);
  t.deepEqual(
    rows.map((r) => ({ courier: Number(r.courier), vip: r.vip, state: r.state, addresses: r.addresses, kernel: r.kernel })),
    status.couriers.map((c) => ({
      courier: c.courier, vip: c.vip, state: c.state,
      addresses: c.addresses.length ? c.addresses.join(', ') : '-',
      kernel: c.kernel === null ? '-' : c.kernel.length ? c.kernel.join(', ') : '-',
    })),
  );
  t.true(rows.filter((r) => r.state === 'fresh').length === 50 && rows.filter((r) => r.state === 'absent').length === 10);
  t.true(cells(dom, 'refreshes').length >= 2, 'the start-up sync and the first refresh are listed');
  t.regex(dom, /<dd data-key="outcomes.courier">1<\/dd>/, 'the DNS counters count the dig');

  const violations = stderr.split('\n').filter((l) => /Content Security Policy|Refused to/i.test(l));
  t.deepEqual(violations, [], 'the page loads without a CSP violation (its style applies)');
});

test.serial('screenshots at desktop and phone width are kept as test artifacts', async (t) => {
  const { lab } = t.context;
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const [name, size] of [['status-page.png', '1280,1600'], ['status-page-phone.png', '412,1400']] as const) {
    const file = path.join(ARTIFACTS, name);
    rmSync(file, { force: true });
    await chromium(lab, [`--window-size=${size}`, `--screenshot=${file}`]);
    const { size: bytes } = await import('node:fs').then((fs) => fs.statSync(file));
    t.true(bytes > 10_000, `${name} is an image (${bytes} bytes)`);
    t.log(`screenshot: ${file}`);
  }
});
