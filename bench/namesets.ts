// Name sets: what a refresh costs with every default set (couriers 0..200, sandbox couriers 0..200,
// the 3 bag and 3 provider hosts: ~400 couriers + 6 hosts, 8 slots each) next to the 200 couriers
// alone, with the real `apns-proxy refresh` and the real nft in the bench lab's namespaces (the
// simulated Apple DNS answers every name), and that a refresh without change sends nothing
// (`nft monitor` prints nothing meanwhile). Prints a Markdown block for bench/RESULTS.md.
//
//   npm run build && node dist/bench/namesets.js [--runs 3]        (as root)
import { parseArgs } from 'node:util';
import { type Lab, createLab } from './lib/lab.js';
import { type ApnsConfig, allSetsScenario, cli, nameSetsConfig } from './lib/router.js';
import { sleep } from './lib/proc.js';

interface Run { wallMs: number; resolveMs: number; nftMs: number; sync: string; elements: number; fresh: number }

async function refresh(lab: Lab, cfg: ApnsConfig): Promise<Run> {
  const r = await cli(lab, cfg, ['refresh'], 120_000);
  const m = /(\d+) fresh, (\d+) stale, (\d+) absent; (\w+) sync(?: \((\d+) elements\))?; resolve (\d+) ms, nft (\d+) ms/.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`apns-proxy refresh failed (exit ${String(r.code)}): ${r.stdout.slice(-600)} ${r.stderr.slice(-600)}`);
  return { wallMs: r.ms, fresh: Number(m[1]), sync: m[4]!, elements: Number(m[5] ?? 0), resolveMs: Number(m[6]), nftMs: Number(m[7]) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(lab: Lab, name: string, allSets: boolean, runs: number, log: (s: string) => void) {
  const cfg = nameSetsConfig(lab, name, allSets);
  const cold: Run[] = [];
  const same: Run[] = [];
  const monitorLines: number[] = [];
  const delta: Run[] = [];
  let size = { bytes: 0, map: 0, ports: 0, vips: 0 };
  for (let round = 1; round <= runs; round++) {
    await lab.setScenario(allSetsScenario(0));
    await cli(lab, cfg, ['flush']);
    cold.push(await refresh(lab, cfg));
    const script = (await cli(lab, cfg, ['render'])).stdout;
    const count = (set: string) => (new RegExp(`add element inet apns_proxy ${set} \\{ (.*) \\}`).exec(script)?.[1]?.split(', ').length ?? 0);
    size = { bytes: Buffer.byteLength(script), map: count('couriers4'), ports: count('vipports'), vips: count('vips') };
    const mon = lab.bg(lab.ns.r, 'nft-monitor', ['nft', 'monitor']);
    await sleep(500);
    const mark = mon.mark();
    same.push(await refresh(lab, cfg));
    await sleep(500);
    monitorLines.push(mon.lines(mark).length);
    await mon.stop(2000);
    await lab.setScenario(allSetsScenario(round));
    delta.push(await refresh(lab, cfg));
    log(`  ${name} round ${round}: cold ${cold.at(-1)!.sync} ${cold.at(-1)!.wallMs} ms (resolve ${cold.at(-1)!.resolveMs}, nft ${cold.at(-1)!.nftMs}); no change: ${same.at(-1)!.sync}, nft monitor lines ${monitorLines.at(-1)}; all changed: ${delta.at(-1)!.sync} ${delta.at(-1)!.elements} elements, nft ${delta.at(-1)!.nftMs} ms`);
  }
  await cli(lab, cfg, ['flush']);
  return { name, cold, same, monitorLines, delta, size };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
  const runs = Number(values.runs);
  const lab = await createLab();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  try {
    const rows = [await measure(lab, '200 couriers (other sets off)', false, runs, log), await measure(lab, 'every default set', true, runs, log)];
    const out: string[] = [
      '| configuration | names (fresh) | full-sync script | map elements | vipports / vips elements | cold refresh wall (median) | resolve | nft | no-change refresh: sync, `nft monitor` lines | all addresses changed: delta elements, nft |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
    ];
    for (const r of rows) {
      out.push(`| ${r.name} | ${r.cold[0]!.fresh}${r.name.startsWith('every') ? ' couriers (+ the others)' : ''} | ${(r.size.bytes / 1024).toFixed(0)} KiB | ${r.size.map} | ${r.size.ports} / ${r.size.vips} | ${Math.round(median(r.cold.map((c) => c.wallMs)))} ms | ${median(r.cold.map((c) => c.resolveMs))} ms | ${median(r.cold.map((c) => c.nftMs))} ms | ${[...new Set(r.same.map((s) => s.sync))].join('/')}, ${r.monitorLines.join(' / ')} | ${median(r.delta.map((d) => d.elements))}, ${median(r.delta.map((d) => d.nftMs))} ms |`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await lab.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/namesets: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
