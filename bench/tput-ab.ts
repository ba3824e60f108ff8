// A/B probe for tuning the fallback relay: one-stream throughput (iperf3) through HAProxy and
// through the fallback, alternating in one lab, with both up at once (no daemon restarts between
// runs, so a relay change shows in a few minutes). Not the recorded benchmark: bench/run is.
//   npm run build:native && npx tsc && node dist/bench/tput-ab.js [rounds=5] [seconds=6]
//   ONLY=fallback (or haproxy) runs one side, e.g. under perf.
import { createLab } from './lib/lab.js';
import { iperf } from './lib/load.js';
import { BULK_PORT, Daemon, apnsConfig, scenario, startHaproxy } from './lib/router.js';
import { fmt, median } from './lib/report.js';
import { FALLBACK_COURIER, LIVE, TARGET } from './sections/hotpath.js';

const rounds = Number(process.argv[2] ?? 5);
const seconds = Number(process.argv[3] ?? 6);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`rounds must be 1..20, not ${process.argv[2]}`);
if (!Number.isInteger(seconds) || seconds < 2 || seconds > 30) throw new Error(`seconds must be 2..30, not ${process.argv[3]}`);
const lab = await createLab();
try {
  const cfg = apnsConfig(lab, 'hot', LIVE);
  await lab.setScenario(scenario(LIVE));
  const haproxy = await startHaproxy(lab);
  const daemon = await Daemon.start(lab, cfg, LIVE, FALLBACK_COURIER, 3000);
  const res: Record<string, number[]> = { haproxy: [], fallback: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (['haproxy', 'fallback'] as const) : (['fallback', 'haproxy'] as const);
      for (const m of order) {
        if (process.env.ONLY && process.env.ONLY !== m) continue;
        console.log(`start ${m}`);
        const x = await iperf(lab, TARGET[m], BULK_PORT, seconds);
        res[m]!.push(x.bps / 1e9);
        console.log(`${m} ${fmt(x.bps / 1e9, 2)} Gbit/s (${x.retransmits} retransmits)`);
      }
    }
  } finally {
    await daemon.stop(lab);
    await haproxy.stop();
  }
  const h = median(res.haproxy!.length ? res.haproxy! : [NaN]), f = median(res.fallback!.length ? res.fallback! : [NaN]);
  console.log(`median haproxy ${fmt(h, 2)} fallback ${fmt(f, 2)} ratio ${fmt(f / h, 3)}`);
} finally {
  await lab.destroy();
}
