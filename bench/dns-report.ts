// Helper for bench/dns: reads the saved dnsperf outputs (<server>-<round>.txt), prints a table of
// medians and ratios, and writes the DNS section of bench/RESULTS.md: the block between
// <!-- bench:dns --> markers is replaced (appended the first time); everything else is kept.
// A run with SERVER_CPU set (servers capped) has its own block, <!-- bench:dns-capped -->.
//   node dist/bench/dns-report.js OUT_DIR RESULTS_MD COMMAND ENV_FILE [SERVER_CPU]
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Run {
  server: string;
  round: number;
  qps: number;
  latencyAvgMs: number;
  latencyMaxMs: number;
  latencyStdMs: number;
  sent: number;
  completed: number;
  lost: number;
  cpuUsPerQuery: number;  // server CPU time (user + system) per completed query
  cpuPercent: number;     // of one core, over the run
  clientCpuPercent: number; // dnsperf's, of one core: near 100 means the client, not the server, set the pace
  rcodes: string;
}

/** Parses one dnsperf 2.x report; undefined when it has no statistics (the run failed). */
export function parseDnsperf(text: string): Omit<Run, 'server' | 'round'> | undefined {
  const num = (re: RegExp): number | undefined => {
    const m = re.exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const qps = num(/Queries per second:\s+([\d.]+)/);
  const avg = /Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)/.exec(text);
  if (qps === undefined || !avg) return undefined;
  const completed = num(/Queries completed:\s+(\d+)/) ?? 0;
  const runTime = num(/Run time \(s\):\s+([\d.]+)/) ?? NaN;
  const cpu = /server CPU ticks: (\d+) of (\d+)\/s/.exec(text);
  const cpuSeconds = cpu ? Number(cpu[1]) / Number(cpu[2]) : NaN;
  return {
    completed,
    cpuUsPerQuery: (cpuSeconds * 1e6) / completed,
    cpuPercent: (cpuSeconds / runTime) * 100,
    clientCpuPercent: ((Number(/client CPU seconds: ([\d.]+) ([\d.]+)/.exec(text)?.[1] ?? NaN) +
      Number(/client CPU seconds: ([\d.]+) ([\d.]+)/.exec(text)?.[2] ?? NaN)) / runTime) * 100,
    qps,
    latencyAvgMs: Number(avg[1]) * 1000,
    latencyMaxMs: Number(avg[3]) * 1000,
    latencyStdMs: (num(/Latency StdDev \(s\):\s+([\d.]+)/) ?? NaN) * 1000,
    sent: num(/Queries sent:\s+(\d+)/) ?? 0,
    lost: num(/Queries lost:\s+(\d+)/) ?? 0,
    rcodes: /Response codes:\s+(.*)/.exec(text)?.[1]?.trim() ?? '',
  };
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function report(runs: readonly Run[], order: readonly string[]): string {
  const rows: string[] = [
    '| server | qps (median) | qps runs | vs unbound | vs dnsmasq | avg latency ms (median) | max latency ms (worst) | lost | server CPU µs/query (median) | server CPU % of a core (median) | dnsperf CPU % (median) |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const med = new Map<string, number>();
  for (const server of order) med.set(server, median(runs.filter((r) => r.server === server).map((r) => r.qps)));
  for (const server of order) {
    const mine = runs.filter((r) => r.server === server);
    if (mine.length === 0) continue;
    const q = med.get(server)!;
    const ratio = (other: string) => (med.get(other) ? `${(q / med.get(other)!).toFixed(2)}×` : '-');
    const lost = mine.reduce((s, r) => s + r.lost, 0);
    const sent = mine.reduce((s, r) => s + r.sent, 0);
    rows.push(`| ${server} | ${fmt(q)} | ${mine.map((r) => fmt(r.qps)).join(' / ')} | ${ratio('unbound')} | ${ratio('dnsmasq')} | ` +
      `${fmt(median(mine.map((r) => r.latencyAvgMs)), 3)} | ${fmt(Math.max(...mine.map((r) => r.latencyMaxMs)), 1)} | ${lost} of ${fmt(sent)} | ` +
      `${fmt(median(mine.map((r) => r.cpuUsPerQuery)), 2)} | ${fmt(median(mine.map((r) => r.cpuPercent)))} | ${fmt(median(mine.map((r) => r.clientCpuPercent)))} |`);
  }
  return rows.join('\n');
}

function main(argv: string[]): void {
  const [outDir, resultsPath, command, envFile, serverCpu] = argv;
  if (!outDir || !resultsPath || !command || !envFile) {
    process.stderr.write('usage: dns-report OUT_DIR RESULTS_MD COMMAND ENV_FILE [SERVER_CPU]\n');
    process.exit(2);
  }
  const order = ['apns-proxy', 'apns-proxy-dgram', 'unbound', 'dnsmasq', 'node-udp-echo'];
  const runs: Run[] = [];
  for (const file of readdirSync(outDir).sort()) {
    const m = /^(.+)-(\d+)\.txt$/.exec(file);
    if (!m) continue;
    const parsed = parseDnsperf(readFileSync(join(outDir, file), 'utf8'));
    if (!parsed) throw new Error(`${file}: no dnsperf statistics (did the run fail?)`);
    runs.push({ server: m[1]!, round: Number(m[2]), ...parsed });
  }
  if (runs.length === 0) throw new Error(`no dnsperf outputs in ${outDir}`);
  const table = report(runs, order);
  const env = readFileSync(envFile, 'utf8').trim();
  process.stdout.write(`${table}\n`);
  const rcodes = order.filter((o) => runs.some((r) => r.server === o))
    .map((o) => `${o}: ${[...new Set(runs.filter((r) => r.server === o).map((r) => r.rcodes.replace(/ \d+ \(([\d.]+%)\)/g, ' $1')))].join(', ')}`)
    .join('; ');
  const section = [
    `## DNS: courier answers, apns-proxy vs unbound vs dnsmasq${serverCpu ? `, every server capped at ${serverCpu} % of a core` : ''} (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC)`,
    '',
    `Command: \`${command}\``,
    '',
    '```',
    env,
    '```',
    '',
    table,
    '',
    `Response codes seen: ${rcodes}.`,
    ...verdict(runs).map((line) => `\n${line}`),
  ].join('\n');
  writeFileSync(resultsPath, withSection(existsSync(resultsPath) ? readFileSync(resultsPath, 'utf8') : undefined, section, serverCpu ? 'dns-capped' : 'dns'));
}

/** The DNS target (courier qps at least unbound's), and whether dnsperf rather than the servers set the pace (its core saturated). */
export function verdict(runs: readonly Run[]): string[] {
  const qps = (server: string) => median(runs.filter((r) => r.server === server).map((r) => r.qps));
  const mine = runs.filter((r) => r.server === 'apns-proxy');
  if (mine.length === 0 || !runs.some((r) => r.server === 'unbound')) return [];
  const ratio = qps('apns-proxy') / qps('unbound');
  const out = [`Target: apns-proxy's courier qps ≥ unbound's: ${ratio.toFixed(2)}× — **${ratio >= 1 ? 'met' : 'missed'}**.`];
  const clientBound = runs.filter((r) => r.server === 'apns-proxy' || r.server === 'unbound').every((r) => r.clientCpuPercent >= 95);
  if (clientBound) {
    out.push('dnsperf used ≥ 95 % of its core in every apns-proxy and unbound run: the client set the pace, not the servers, ' +
      'so their qps only says neither is slower than dnsperf; server CPU µs/query compares them, and `SERVER_CPU=50 bench/dns` ' +
      'caps every server at the same share of its core so that they set the pace.');
  }
  return out;
}

/** The results file with our block (`key`: dns, or dns-capped) replaced, or appended; a missing file gets a short header. */
export function withSection(old: string | undefined, section: string, key: 'dns' | 'dns-capped' = 'dns'): string {
  const block = `<!-- bench:${key} -->\n${section.trim()}\n<!-- /bench:${key} -->\n`;
  const re = new RegExp(`<!-- bench:${key} -->\\n[\\s\\S]*?<!-- /bench:${key} -->\\n?`);
  if (old === undefined) {
    return `# Benchmark results\n\nEach section is written by a benchmark script under \`bench/\`, with its exact command, the machine and the raw numbers; medians of repeated runs, ratios of medians.\n\n${block}`;
  }
  return re.test(old) ? old.replace(re, () => block) : `${old.trimEnd()}\n\n${block}`;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) main(process.argv.slice(2));
