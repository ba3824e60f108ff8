// The benchmark orchestrator (hot path, scale, refresh, fallback). Start it with bench/run, which
// checks root, installs the tools, builds, compiles bench/c/*.c and then runs this file:
//
//   node dist/bench/main.js [--only hotpath,scale,refresh,fallback] [--runs N] [--quick] [--no-record] [--keep-lab-dir]
//
// Writes the sections it ran into bench/RESULTS.md (see lib/report.ts for how the file is shared).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Lab, createLab } from './lib/lab.js';
import { type SectionId, writeResults } from './lib/report.js';
import { ALL_MODES, type HotData, type Mode, hotpathReport, measureHotpath } from './sections/hotpath.js';
import { type ScaleData, measureScale, scaleReport } from './sections/scale.js';
import { type RefreshData, measureRefresh, refreshReport } from './sections/refresh.js';
import { type AbData, fallbackReport, measureFallbackAb } from './sections/fallback.js';

const SECTIONS = ['hotpath', 'scale', 'refresh', 'fallback'] as const;
type Section = (typeof SECTIONS)[number];

function log(s: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
}

async function machine(lab: Lab): Promise<string[]> {
  const cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
  const v = async (argv: string[], re: RegExp) => {
    const r = await lab.exec('', argv, { check: false });
    return re.exec(`${r.stdout}\n${r.stderr}`)?.[0] ?? `${argv[0]} ?`;
  };
  return [
    `machine: ${os.cpus().length} CPU (nproc ${(await lab.exec('', ['nproc'])).stdout.trim()}), ${cpu.trim()}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; kernel ${os.release()}`,
    `tools: node ${process.version}, ${await v(['haproxy', '-v'], /HAProxy version \S+/)}, ${await v(['wrk', '-v'], /wrk \S+/)}, ${await v(['iperf3', '-v'], /iperf \S+/)}, ${await v(['nft', '--version'], /nftables v\S+/)}, ${await v(['conntrack', '--version'], /conntrack v\S+/)}`,
    `load at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (1/5/15 min; the machine is shared, hence medians and ratios)`,
  ];
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      runs: { type: 'string' },
      quick: { type: 'boolean' },
      'no-record': { type: 'boolean' },
      'keep-lab-dir': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: bench/run [--only hotpath,scale,refresh,fallback,dns] [--runs N] [--quick] [--no-record]\n');
    return 0;
  }
  const only = values.only ? values.only.split(',').map((s) => s.trim()).filter((s) => s && s !== 'dns') : [...SECTIONS];
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: unknown section ${s} (known: ${SECTIONS.join(', ')}, dns)`);
  const want = new Set(only as Section[]);
  const quick = values.quick ?? false;
  const runs = values.runs ? Number(values.runs) : quick ? 1 : 3;
  if (!Number.isInteger(runs) || runs < 1 || runs > 9) throw new Error('--runs must be 1..9');
  if (process.getuid?.() !== 0) throw new Error('the benchmarks need root (network namespaces, nftables)');
  const full = !values.only;
  const started = new Date();
  const t0 = performance.now();

  const lab = await createLab({ keepDir: values['keep-lab-dir'] ?? false });
  log(`lab ${lab.base} (dir ${lab.dir})`);
  const blocks: Partial<Record<SectionId, string>> = {};
  try {
    const info = await machine(lab);
    let hot: HotData | undefined;
    let scale: ScaleData | undefined;
    if (want.has('hotpath') || want.has('fallback')) {
      const modes: Mode[] = want.has('hotpath') ? [...ALL_MODES] : ['kernel', 'haproxy', 'fallback'];
      log(`hot path: ${modes.join(', ')}`);
      hot = await measureHotpath(lab, { runs, seconds: quick ? 2 : 5, tputSeconds: quick ? 2 : 8, conns: 64, modes }, log);
      if (want.has('hotpath')) blocks.hotpath = hotpathReport(hot);
    }
    if (want.has('scale') || want.has('fallback')) {
      log('scale');
      scale = await measureScale(lab, { runs, big: want.has('scale') ? (quick ? 20000 : 100000) : 0, user: quick ? 2000 : 9500, probe: want.has('scale') && !quick, settleMs: quick ? 5000 : 45000 }, log);
      if (want.has('scale')) blocks.scale = scaleReport(scale);
    }
    let ab: AbData | undefined;
    if (want.has('fallback')) {
      log('fallback: one stream, HAProxy and the fallback under the same router state');
      ab = await measureFallbackAb(lab, { rounds: quick ? 1 : 2 * runs + 1, seconds: quick ? 2 : 8 }, log);
    }
    let refresh: RefreshData | undefined;
    if (want.has('refresh')) {
      log('refresh');
      refresh = await measureRefresh(lab, { runs, underLoad: quick ? 10 : 100 }, log);
      blocks.refresh = refreshReport(refresh);
    }
    // every number measured, for a closer look (bench/out is git-ignored)
    mkdirSync(path.join(lab.root, 'bench/out'), { recursive: true });
    writeFileSync(path.join(lab.root, 'bench/out/last-run.json'), JSON.stringify({ started, argv: process.argv.slice(2), hot, scale, ab, refresh }, null, 1));
    if (want.has('fallback') && hot && scale && ab) blocks.fallback = fallbackReport(hot, scale, ab);

    const cmd = `bench/run${process.argv.slice(2).length ? ' ' + process.argv.slice(2).join(' ') : ''}`;
    // each section says when and by which command it was measured: an --only run keeps the others
    const when = `${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
    for (const id of ['hotpath', 'scale', 'refresh', 'fallback'] as const) {
      const b = blocks[id];
      if (b !== undefined) blocks[id] = b.replace(/^(## [^\n]*\n)/, `$1\nMeasured ${when} by \`${cmd}\`.\n`);
    }
    blocks.header = [
      '# Benchmark results',
      '',
      'Written by `npm run bench` (= `bench/run`, as root): every section below names its own exact commands; `bench/run --only SECTION` reruns one',
      '(hotpath, scale, refresh, fallback, dns). Everything runs in network namespaces created for the run (client 192.0.2.0/24 → router → simulated',
      'couriers 203.0.113.0/24, VIPs 198.18.100.0/24), on one shared 2-core machine: client, router and servers share the same two cores, so absolute',
      'numbers are for comparison only: read the ratios.',
      '',
      `Last run: ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC, \`${cmd}\`, ${Math.round((performance.now() - t0) / 1000)} s, sections: ${only.join(', ')}, ${runs} run(s) each${quick ? ' (--quick: shorter runs, fewer connections: not the reference numbers)' : ''}.`,
      '',
      '```',
      ...info,
      '```',
      '',
      'Sections: [Hot path](#hot-path), [Scale with devices](#scale-with-devices), [Refresh](#refresh), [Fallback](#fallback) (this script, bench/main.ts); the DNS section, when present, is appended by `bench/dns`.',
    ].join('\n');
  } finally {
    await lab.destroy();
  }
  const file = path.join(lab.root, 'bench/RESULTS.md');
  if (values['no-record']) {
    for (const id of ['hotpath', 'scale', 'refresh', 'fallback'] as const) if (blocks[id]) process.stdout.write(`${blocks[id]}\n\n`);
    log('--no-record: bench/RESULTS.md untouched');
  } else {
    writeResults(file, blocks, full);
    log(`wrote ${path.relative(process.cwd(), file)} (${Object.keys(blocks).join(', ')})`);
  }
  return 0;
}

main().then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
