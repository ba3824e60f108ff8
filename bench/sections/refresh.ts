// Refresh: what a refresh costs, and that it never cuts a connection.
//   - `apns-proxy refresh` (one-shot, no daemon) for couriers 1..254, each a CNAME chain to 8
//     addresses: cold (table absent: full sync of 254 × 8 elements), then with no change (must send
//     no transaction: `nft monitor` runs meanwhile and must print nothing), then with every address
//     changed (delta); and `nft -f` of the rendered full-sync script on its own.
//   - 100 refreshes with changing addresses (the daemon running, `apns-proxy refresh` asking it over
//     its control socket), under load: 20 000 idle connections held through the kernel path (echo
//     checked every 10 refreshes) and a steady stream of new connections (churn, each checked end to
//     end). Every dropped or failed connection is counted.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADDR, type Lab } from '../lib/lab.js';
import { Churn, type ChurnResult, type HoldCheck, Holders, churnArgv } from '../lib/load.js';
import type { Bg } from '../lib/proc.js';
import { sleep } from '../lib/proc.js';
import { fmt, median, pass, table } from '../lib/report.js';
import { BULK_PORT, Daemon, SLOTS, apnsConfig, cli, courierAddresses, kernelMap, scenario } from '../lib/router.js';

const COURIERS = 254;

export interface RefreshOptions { readonly runs: number; readonly underLoad: number }

interface CliRun { readonly wallMs: number; readonly resolveMs: number; readonly nftMs: number; readonly sync: string; readonly elements: number; readonly fresh: number; readonly ok: boolean; readonly out: string }

export interface RefreshData {
  readonly opts: RefreshOptions;
  readonly cold: CliRun[];
  readonly noChange: CliRun[];
  readonly noChangeEvents: number[];
  readonly monitorControl: number[];   // nft monitor lines for a refresh that changed courier 1 (must be > 0)
  readonly delta: CliRun[];
  readonly nftFull: { ms: number; elements: number }[];
  readonly load: {
    readonly refreshes: CliRun[];
    readonly held: number;
    readonly checks: HoldCheck[];
    readonly churn: ChurnResult;
    readonly churnRate: number;
    readonly finalMapOk: boolean;
  };
  readonly commands: string[];
}

function parseCli(out: string, wallMs: number, code: number | null): CliRun {
  const m = /(\d+) fresh, (\d+) stale, (\d+) absent; (\w+) sync(?: \((\d+) elements\))?; resolve (\d+) ms, nft (\d+) ms/.exec(out);
  return {
    wallMs,
    fresh: Number(m?.[1] ?? NaN),
    sync: m?.[4] ?? '?',
    elements: Number(m?.[5] ?? (m?.[4] === 'full' ? COURIERS * SLOTS : 0)),
    resolveMs: Number(m?.[6] ?? NaN),
    nftMs: Number(m?.[7] ?? NaN),
    ok: code === 0 && m !== null,
    out: out.trim().split('\n').slice(-3).join(' | '),
  };
}

export async function measureRefresh(lab: Lab, opts: RefreshOptions, log: (s: string) => void): Promise<RefreshData> {
  const cfg = apnsConfig(lab, 'refresh', COURIERS);
  const refresh = async () => {
    const r = await cli(lab, cfg, ['refresh'], 120000);
    const c = parseCli(r.stdout, r.ms, r.code);
    if (!c.ok) throw new Error(`apns-proxy refresh failed (exit ${String(r.code)}): ${r.stdout.slice(-800)} ${r.stderr.slice(-800)}`);
    return c;
  };
  const cold: CliRun[] = [];
  const noChange: CliRun[] = [];
  const noChangeEvents: number[] = [];
  const delta: CliRun[] = [];
  const nftFull: { ms: number; elements: number }[] = [];
  const monitorControl: number[] = [];

  for (let round = 1; round <= opts.runs; round++) {
    await lab.setScenario(scenario(COURIERS, 0));
    await cli(lab, cfg, ['flush']);
    const c = await refresh();
    if (c.sync !== 'full' || c.fresh !== COURIERS) throw new Error(`cold refresh: expected a full sync of ${COURIERS} couriers, got ${c.out}`);
    cold.push(c);
    // no change: nft monitor must see no transaction at all
    const mon = lab.bg(lab.ns.r, 'nft-monitor', ['nft', 'monitor']);
    await sleep(500);
    const mark = mon.mark();
    const n = await refresh();
    await sleep(500);
    noChange.push(n);
    noChangeEvents.push(mon.lines(mark).length);
    // positive control: the same monitor does see a refresh that changes something
    const mark2 = mon.mark();
    await lab.setScenario({ ...scenario(COURIERS, 0), addresses: { ...scenario(COURIERS, 0).addresses, '1': courierAddresses(1, 0).slice(0, 4) } });
    const one = await refresh();
    await sleep(500);
    await mon.stop(2000);
    monitorControl.push(mon.lines(mark2).length);
    if (one.sync !== 'delta') throw new Error(`changing courier 1 should be a delta sync: ${one.out}`);
    // the rendered full-sync script alone through nft -f
    const script = (await cli(lab, cfg, ['render'])).stdout;
    const file = path.join(lab.dir, 'full-sync.nft');
    writeFileSync(file, script);
    const elements = (script.match(/\d+\.\d+\.\d+\.\d+ \. \d+ :/g) ?? []).length;
    const t = await lab.exec(lab.ns.r, ['nft', '-f', file]);
    nftFull.push({ ms: t.ms, elements });
    // every address changes
    await lab.setScenario(scenario(COURIERS, round));
    delta.push(await refresh());
    log(`  round ${round}: cold ${fmt(c.wallMs)} ms (resolve ${c.resolveMs}, nft ${c.nftMs}); no change ${fmt(n.wallMs)} ms, ${n.sync} sync, nft monitor lines ${noChangeEvents[noChangeEvents.length - 1]}; nft -f ${elements} elements ${fmt(t.ms)} ms; all changed: ${delta[delta.length - 1]!.sync} ${delta[delta.length - 1]!.elements} elements, nft ${delta[delta.length - 1]!.nftMs} ms`);
  }
  await cli(lab, cfg, ['flush']);

  // 100 refreshes under load
  log(`refresh: ${opts.underLoad} refreshes with changing addresses under load`);
  const HELD = opts.underLoad >= 100 ? 20000 : 4000;
  const CHURN_RATE = 1000;
  const vips = Array.from({ length: COURIERS }, (_, i) => `${ADDR.vip(i + 1)}:${BULK_PORT}`);
  await lab.setScenario(scenario(COURIERS, 0));
  const servers: Bg[] = [];
  for (let i = 0; i < 4; i++) servers.push(lab.bg(lab.ns.u, 'holdd', [lab.bin('holdd'), '--port', String(BULK_PORT), '--max-seconds', '3600']));
  await Promise.all(servers.map((s) => s.waitFor(/^listening/, 10000)));
  const daemon = await Daemon.start(lab, cfg, COURIERS);
  const refreshes: CliRun[] = [];
  const checks: HoldCheck[] = [];
  let churnResult: ChurnResult;
  let held = 0;
  let finalMapOk = false;
  try {
    const holders = await Holders.open(lab, vips, HELD, { perProc: 10000 });
    held = holders.opened.held;
    if (held !== HELD) throw new Error(`only ${held} of ${HELD} connections could be opened before the refreshes: ${JSON.stringify(holders.opened)}`);
    const churn = Churn.start(lab, ADDR.client, vips, CHURN_RATE, 600);
    try {
      for (let i = 1; i <= opts.underLoad; i++) {
        await lab.setScenario(scenario(COURIERS, i));
        const r = await refresh();
        if (r.sync !== 'delta' || r.elements === 0) throw new Error(`refresh ${i}: expected a delta sync, got ${r.out}`);
        refreshes.push(r);
        if (i % 10 === 0) {
          const c = await holders.check();
          checks.push(c);
          log(`  ${i} refreshes: last ${r.elements} elements in ${r.nftMs} ms (wall ${fmt(r.wallMs)} ms); held ${fmt(c.alive)} alive, ${c.dropped} dropped, ${c.noecho} no echo`);
        }
      }
    } finally {
      churnResult = await churn.stop();
      await holders.quit();
    }
    const map = await kernelMap(lab);
    const want = courierAddresses(1, opts.underLoad);
    finalMapOk = Array.from({ length: SLOTS }, (_, s) => map.get(`${ADDR.vip(1)} . ${s}`)).every((a) => a !== undefined && want.includes(a));
  } finally {
    await daemon.stop(lab);
    for (const s of servers) await s.stop(3000);
  }
  const commands = [
    `node dist/src/cli.js refresh --config apns-refresh.json   # couriers 1..${COURIERS}, upstream 203.0.113.53 (fake-apple: N-courier.push.apple.com CNAME N.courier-push-apple.com.akadns.net CNAME <region>-N-courier-4.push-apple.com.akadns.net, 8 A each)`,
    'nft monitor   # in the router namespace during the no-change refresh: must print nothing (and prints the elements of a refresh that changes courier 1)',
    'node dist/src/cli.js render --config apns-refresh.json > full-sync.nft && nft -f full-sync.nft',
    `under load: node dist/src/cli.js run --config apns-refresh.json; then ${opts.underLoad} × (new addresses for all ${COURIERS} couriers, SIGHUP fake-apple, node dist/src/cli.js refresh --config apns-refresh.json)`,
    `held: ${fmt(HELD)} idle connections to VIPs 198.18.100.1-254:${BULK_PORT} (bench/out/bin/holder, 10 000 per process), echo-checked every 10 refreshes`,
    `new connections: ${churnArgv(lab, ADDR.client, ['VIP1:443', '...', 'VIP254:443'], CHURN_RATE, 600).join(' ').replace(lab.root + '/', '')} (stopped after the last refresh)`,
  ];
  return {
    opts, cold, noChange, noChangeEvents, monitorControl, delta, nftFull,
    load: { refreshes, held, checks, churn: churnResult, churnRate: CHURN_RATE, finalMapOk },
    commands,
  };
}

export function refreshReport(d: RefreshData): string {
  const med = (xs: number[]) => median(xs);
  const rs = (xs: number[]) => xs.map((x) => fmt(x)).join(' / ');
  const coldCycle = d.cold.map((c) => c.resolveMs + c.nftMs);
  const l = d.load;
  const dropped = l.checks.length ? Math.max(...l.checks.map((c) => c.dropped)) : NaN;
  const noecho = l.checks.reduce((s, c) => s + c.noecho, 0);
  const lastAlive = l.checks[l.checks.length - 1]?.alive ?? NaN;
  const rows = [
    ['cold refresh, 254 couriers → full sync (process wall time, incl. node start-up)', `${fmt(med(d.cold.map((c) => c.wallMs)))} ms`, rs(d.cold.map((c) => c.wallMs))],
    ['  of which: resolve 254 CNAME chains (8 A each)', `${fmt(med(d.cold.map((c) => c.resolveMs)))} ms`, rs(d.cold.map((c) => c.resolveMs))],
    ['  of which: nft transaction (full sync, 254 × 8 elements)', `${fmt(med(d.cold.map((c) => c.nftMs)))} ms`, rs(d.cold.map((c) => c.nftMs))],
    ['  refresh cycle (resolve + apply)', `${fmt(med(coldCycle))} ms`, rs(coldCycle)],
    ['no-change refresh (process wall time)', `${fmt(med(d.noChange.map((c) => c.wallMs)))} ms`, rs(d.noChange.map((c) => c.wallMs))],
    ['  its sync kind / nft monitor lines', `${[...new Set(d.noChange.map((c) => c.sync))].join(',')} / ${fmt(Math.max(...d.noChangeEvents))}`, rs(d.noChangeEvents)],
    ['  control: nft monitor lines for a refresh that drops 4 of courier 1\'s addresses', fmt(median(d.monitorControl)), rs(d.monitorControl)],
    [`\`nft -f\` of the full-sync script (${fmt(d.nftFull[0]?.elements ?? NaN)} elements, incl. nft start-up)`, `${fmt(med(d.nftFull.map((x) => x.ms)))} ms`, rs(d.nftFull.map((x) => x.ms))],
    [`every address changed → delta sync (${fmt(d.delta[0]?.elements ?? NaN)} elements)`, `${fmt(med(d.delta.map((c) => c.nftMs)))} ms nft, ${fmt(med(d.delta.map((c) => c.wallMs)))} ms wall`, rs(d.delta.map((c) => c.nftMs))],
  ];
  const under = [
    ['refreshes (each a delta changing all 254 couriers)', fmt(l.refreshes.length)],
    ['refresh wall time under load (median / max)', `${fmt(med(l.refreshes.map((r) => r.wallMs)))} / ${fmt(Math.max(...l.refreshes.map((r) => r.wallMs)))} ms`],
    ['nft transaction under load (median / max)', `${fmt(med(l.refreshes.map((r) => r.nftMs)))} / ${fmt(Math.max(...l.refreshes.map((r) => r.nftMs)))} ms`],
    ['idle connections held through the kernel path', fmt(l.held)],
    ['echo checks (every 10 refreshes)', `${l.checks.length}, last: ${fmt(lastAlive)} alive`],
    ['**held connections dropped**', `**${fmt(dropped)}** (no echo in 10 s: ${noecho})`],
    [`new connections during the refreshes (${l.churnRate}/s, each greeted and echoed)`, `${fmt(l.churn.ok)} ok of ${fmt(l.churn.started)} started, **${fmt(l.churn.failed)} failed**${Object.keys(l.churn.errors).length ? ` ${JSON.stringify(l.churn.errors)}` : ''}${l.churn.skipped ? `, ${l.churn.skipped} skipped` : ''}`],
    ['kernel map after the last refresh matches the last scenario (VIP 1)', l.finalMapOk ? 'yes' : '**no**'],
  ];
  const targets = [
    ['full refresh < 1 s (resolve 254 + apply)', `${fmt(med(coldCycle))} ms cycle, ${fmt(med(d.cold.map((c) => c.wallMs)))} ms with process start-up`, pass(med(coldCycle) < 1000)],
    ['no-change refresh sends no transaction', `${[...new Set(d.noChange.map((c) => c.sync))].join(',')} sync, ${Math.max(...d.noChangeEvents)} nft monitor lines`, pass(d.noChange.every((c) => c.sync === 'none') && Math.max(...d.noChangeEvents) === 0 && Math.min(...d.monitorControl) > 0)],
    [`zero established connections dropped during ${l.refreshes.length} refreshes under load`, `${fmt(dropped)} dropped of ${fmt(l.held)}, ${fmt(l.churn.failed)} new connections failed`, pass(dropped === 0 && noecho === 0 && l.churn.failed === 0 && l.refreshes.length >= d.opts.underLoad)],
  ];
  return [
    '## Refresh',
    '',
    `Couriers 1..${COURIERS}, each \`N-courier.push.apple.com\` → CNAME → CNAME → 8 A records (simulated upstream, fake-apple); ${d.opts.runs} runs, medians (all runs after the "/"). Times printed by \`apns-proxy refresh\` ("resolve X ms, nft Y ms") and measured around the process.`,
    '',
    table(['measure', 'median', 'runs'], rows, '---|---:|---'),
    '',
    `### ${l.refreshes.length} refreshes with changing addresses, under load`,
    '',
    table(['', ''], under, '---|---'),
    '',
    '### Targets (refresh)',
    '',
    table(['target', 'measured', ''], targets, '---|---|---'),
    '',
    '### Commands',
    '',
    '```',
    ...d.commands,
    '```',
  ].join('\n');
}
