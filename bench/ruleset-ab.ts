// A/B probe for the per-packet chains: new connections/s and keep-alive requests/s through the
// kernel path (VIP 198.18.100.1) with the live table's fallback and forward chains swapped between
// variants, alternating in one lab under one daemon (the map, NAT and conntrack stay the same).
//   npx tsc && node dist/bench/ruleset-ab.js [rounds=6] [seconds=5]
// Variants: "current" (as nft/apns-proxy.nft renders them for this config), "previous" (the chains
// before the cheap tests went first: `ip daddr @vips` in the socket rule, no early accepts) and
// "none" (both chains deleted: DNAT and masquerade only, the floor). Not a recorded result.
import { ADDR, createLab } from './lib/lab.js';
import { wrk } from './lib/load.js';
import { Daemon, HTTP_PORT, apnsConfig, scenario } from './lib/router.js';
import { fmt, median } from './lib/report.js';

const rounds = Number(process.argv[2] ?? 6);
const seconds = Number(process.argv[3] ?? 5);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(`rounds must be 1..20, not ${process.argv[2]}`);
if (!Number.isInteger(seconds) || seconds < 2 || seconds > 30) throw new Error(`seconds must be 2..30, not ${process.argv[3]}`);

const TABLE = 'inet apns_proxy';
const LIVE = 60;
type Variant = 'current' | 'previous' | 'none';
const VARIANTS: readonly Variant[] = ['current', 'previous', 'none'];

// The chains as the bench config renders them (fallback mark 0x2a, port 15223, direct mark 0x20000000).
const FALLBACK_HEAD = 'type filter hook prerouting priority dstnat + 10; policy accept;';
const FORWARD_HEAD = 'type filter hook forward priority filter - 5; policy accept;';
const SOCKET = 'meta l4proto tcp socket transparent 1 meta mark set 0x2a accept';
const TPROXY = 'meta l4proto tcp ip daddr . meta l4proto . th dport @vipports tproxy ip to 127.0.0.1:15223 meta mark set 0x2a accept';
const DIRECT = ['ct state new ip daddr . meta l4proto . th dport @direct ct mark set ct mark | 0x20000000 accept', 'ct state new ip daddr @upstream tcp dport 5223 reject with tcp reset'];
const chainsText = (fallback: string[], forward: string[]) =>
  `table ${TABLE} {\n\tchain fallback {\n\t\t${[FALLBACK_HEAD, ...fallback].join('\n\t\t')}\n\t}\n\tchain forward {\n\t\t${[FORWARD_HEAD, ...forward].join('\n\t\t')}\n\t}\n}\n`;
const TEXT: Record<Variant, string> = {
  current: chainsText(['ct status dnat accept', 'ip daddr != @vips accept', SOCKET, TPROXY], ['ct status dnat accept', 'ct state established,related accept', ...DIRECT]),
  previous: chainsText([`ip daddr @vips ${SOCKET}`, TPROXY], ['ct status dnat accept', ...DIRECT]),
  none: '',
};
/** What tells the variants apart in `nft list table`. */
const SIGN: Record<Variant, (listing: string) => boolean> = {
  current: (l) => l.includes('ip daddr != @vips accept') && l.includes('ct state established,related accept'),
  previous: (l) => /ip daddr @vips meta l4proto tcp socket/.test(l) && l.includes('chain forward') && !l.includes('established,related'),
  none: (l) => !l.includes('chain fallback') && !l.includes('chain forward'),
};

const lab = await createLab();
const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
try {
  const cfg = apnsConfig(lab, 'ab', LIVE);
  await lab.setScenario(scenario(LIVE));
  const httpd = lab.bg(lab.ns.u, 'httpd', [lab.bin('httpd'), '--port', String(HTTP_PORT), '--threads', '2', '--max-seconds', '3600']);
  await httpd.waitFor(/^listening/, 10000);
  const daemon = await Daemon.start(lab, cfg, LIVE, undefined, 12000);
  const nft = (args: string[], input?: string) => lab.exec(lab.ns.r, ['nft', ...args], input === undefined ? {} : { input });
  const is = async (v: Variant) => SIGN[v]((await nft(['list', 'table', ...TABLE.split(' ')])).stdout);
  const drop = `delete chain ${TABLE} fallback\ndelete chain ${TABLE} forward\n`;
  let applied: Variant | undefined;
  const set = async (v: Variant) => {
    if (applied === undefined && !(await is('current'))) throw new Error('the live table is not the current ruleset (build first)');
    await nft(['-f', '-'], `${applied === 'none' ? '' : drop}${TEXT[v]}`);
    applied = v;
    if (!(await is(v))) throw new Error(`variant ${v} did not apply:\n${(await nft(['list', 'table', ...TABLE.split(' ')])).stdout}`);
  };
  const res: Record<Variant, { conn: number[]; ka: number[] }> = { current: { conn: [], ka: [] }, previous: { conn: [], ka: [] }, none: { conn: [], ka: [] } };
  const w = { seconds, conns: 64, threads: 2 };
  try {
    await set('current');
    await wrk(lab, ADDR.vip(1), HTTP_PORT, { ...w, seconds: 1, close: true });  // warm-up
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? VARIANTS : [...VARIANTS].reverse();
      for (const v of order) {
        await set(v);
        const c = await wrk(lab, ADDR.vip(1), HTTP_PORT, { ...w, close: true });
        const k = await wrk(lab, ADDR.vip(1), HTTP_PORT, { ...w, close: false });
        if (!(await is(v))) throw new Error(`variant ${v} changed during the run (a full sync?)`);
        res[v].conn.push(c.rps);
        res[v].ka.push(k.rps);
        log(`round ${round} ${v.padEnd(8)} conn ${fmt(c.rps)}/s  ka ${fmt(k.rps)}/s`);
      }
    }
  } finally {
    await set('current').catch(() => undefined);
    await daemon.stop(lab);
    await httpd.stop();
  }
  // the machine is shared: besides the medians, the median of each round's ratio (neighbours in time)
  const paired = (v: Variant, k: 'conn' | 'ka') => median(res[v][k].map((x, i) => x / res.previous[k][i]!)).toFixed(3);
  for (const v of VARIANTS) {
    const c = median(res[v].conn);
    const k = median(res[v].ka);
    log(`median ${v.padEnd(8)} conn ${fmt(c)}/s (${(c / median(res.previous.conn)).toFixed(3)}× previous, per round ${paired(v, 'conn')}×)  ka ${fmt(k)}/s (${(k / median(res.previous.ka)).toFixed(3)}× previous, per round ${paired(v, 'ka')}×)   runs conn ${res[v].conn.map((x) => fmt(x)).join(' / ')}; ka ${res[v].ka.map((x) => fmt(x)).join(' / ')}`);
  }
} finally {
  await lab.destroy();
}
