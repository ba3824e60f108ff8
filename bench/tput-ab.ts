// A/B probe for tuning the fallback relay: one-stream throughput (iperf3) through HAProxy and
// through the fallback, alternating in one lab with both up at once (bench/sections/fallback.ts,
// measureFallbackAb: the same measurement bench/run records, without the rest of the run).
//   npm run build:native && npx tsc && node dist/bench/tput-ab.js [rounds=5] [seconds=6]
//   ONLY=fallback (or haproxy) runs one side, e.g. under perf record -a -g.
import { createLab } from './lib/lab.js';
import { fmt, median } from './lib/report.js';
import { measureFallbackAb } from './sections/fallback.js';

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 6);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`rounds must be 1..20, not ${process.argv[2]}`);
if (!Number.isInteger(seconds) || seconds < 2 || seconds > 30) throw new Error(`seconds must be 2..30, not ${process.argv[3]}`);
const only = process.env.ONLY;
if (only !== undefined && only !== 'haproxy' && only !== 'fallback') throw new Error(`ONLY must be haproxy or fallback, not ${only}`);

const lab = await createLab();
try {
  const ab = await measureFallbackAb(lab, { rounds, seconds, only }, (s) => console.log(s));
  const h = median(ab.haproxy.map((r) => r.gbps));
  const f = median(ab.fallback.map((r) => r.gbps));
  console.log(`median: haproxy ${fmt(h, 2)} Gbit/s, fallback ${fmt(f, 2)} Gbit/s, fallback/haproxy ${Number.isFinite(f / h) ? (f / h).toFixed(3) : 'n/a'}`);
} finally {
  await lab.destroy();
}
