#!/usr/bin/env node
// The lab anyone can run: `npm run lab` (scripts/lab.sh installs what is missing, then runs this).
//
// It builds the namespaces of lab/lab.ts (client, router, simulated Apple upstream with
// 50 live couriers and NXDOMAIN above), runs the real `apns-proxy run` in the router namespace with
// DNS on the router's client-side address 192.0.2.1:53 and the fallback on, and walks the path:
//   1. the router starts;
//   2. the client resolves couriers through the router's DNS and connects: which courier server
//      answered, and whether the kernel (nftables DNAT) or the userspace fallback carried it;
//   3. upstream DNS goes silent: last-known-good keeps forwarding;
//   4. DNS is back: a courier that was never resolved is served by the fallback at once, and the
//      kernel takes it over;
//   5. every name APNs needs (name sets, DESIGN.md §7): a simulated MDM server at 192.0.2.20 pushes
//      through api.push.apple.com (2197), a device fetches the bag over HTTP and HTTPS via its VIP
//      (the HTTPS certificate, made for init.push.apple.com at lab start, verified), courier 0,
//      a sandbox courier. Only when this apns-proxy serves name sets (its configuration knows
//      `nameSets` and its DNS answers init.push.apple.com with a pool VIP); before that, step 5 says
//      so and shows the name forwarded instead.
//
//   demo.js [--check] [--keep]   --check: assert every step, exit 1 on any failed assertion
//                                --keep: leave the lab up for exploring (a detached keeper holds it)
//   demo.js down                 remove kept labs
//
// Network: only inside the lab's own namespaces (named apx<pid>-<hex>-c/r/u), only documentation
// and benchmark addresses (192.0.2.0/24, 203.0.113.0/24, 198.18.100.0/24–198.18.102.0/24, 198.51.100.0/24).
import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Lab, type LabProcess, type Scenario, MDM_ADDRESS, bagBody, createLab, defaultSandboxAddresses, distPath, fixturePath, nodeBin, repoRoot } from './lab.js';
import { parseMapJson } from '../src/nft/runner.js';
import { parseConfig } from '../src/core/config.js';
import { systemTool } from '../src/core/tools.js';
import { alive, ensureRegistry, labDown, listKept, removeKept, writeKept } from './kept.js';
import { addressByKey } from '../src/nft/elements.js';

const USAGE = `usage: npm run lab [-- [--check] [--keep]]   build the lab, show the path, clean up
       npm run lab -- down                       remove a lab left up with --keep

  --check   non-interactive: assert every step end to end; exit 1 on any failed assertion
  --keep    leave the lab up afterwards and print how to get into its namespaces
`;

const PREFIX = '198.18.100';
const ROUTER_DNS = '192.0.2.1';
const CLI = distPath('src/cli.js');
const PROBE = fixturePath('probe.js');
const SELF = distPath('lab/demo.js');

/** Couriers the demo talks about, with easy-to-read server addresses. */
const SPREAD = 5;            // three servers: new connections spread over them
const SINGLE = 17;           // one server
const NEVER = 42;            // its DNS does not answer when the router starts: never resolved
const NX = 51;               // above the 50 live couriers: NXDOMAIN
const ADDR: Record<number, string[]> = {
  [SPREAD]: ['203.0.113.11', '203.0.113.12', '203.0.113.13'],
  [SINGLE]: ['203.0.113.17'],
  [NEVER]: ['203.0.113.42'],
};
/** A name no name set carries: forwarded upstream untouched, before and after name sets. */
const FWD_NAME = 'gsa.apple.com';
const FWD_ADDR = '203.0.113.9';
const ZERO_ADDR = '203.0.113.45';   // courier 0's one server (step 5)

const HEALTHY: Scenario = {
  live: 50,
  addresses: { ...Object.fromEntries(Object.entries(ADDR)), '0': [ZERO_ADDR] },
  records: { [FWD_NAME]: [FWD_ADDR] },
};

// Step 5: the name sets on the test address plan (DESIGN.md §9).
const POOL = '198.18.102';
const SANDBOX_PREFIX = '198.18.101';
const SANDBOX_COURIER = 7;
const NAME_SETS = {
  sandbox: { template: '{n}-courier.sandbox.push.apple.com', first: 0, last: 200, vipPrefix: `${SANDBOX_PREFIX}.0/24`, tcp: [5223, 443], udp: [] },
  bag: { names: ['init.push.apple.com', 'init-p01st.push.apple.com', 'init.sandbox.push.apple.com'], tcp: [80, 443], udp: [] },
  provider: { names: ['api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com'], tcp: [443, 2197], udp: [] },
};
const NAME_SET_KEYS = { vipPool: `${POOL}.0/24`, nameSets: NAME_SETS };

/** Whether this build's configuration knows name sets (`vipPool`, `nameSets`): else step 5 waits for them. */
function nameSetsConfigurable(): boolean {
  try {
    parseConfig({ ...NAME_SET_KEYS });
    return true;
  } catch {
    return false;
  }
}
const AT_START: Scenario = { ...HEALTHY, perCourier: { [String(NEVER)]: 'silent' } };
const SILENT: Scenario = { ...AT_START, mode: 'silent' };

function labConfig(dir: string, names: boolean): Record<string, unknown> {
  return {
    ...(names ? NAME_SET_KEYS : {}),
    vipPrefix: `${PREFIX}.0/24`,
    ports: [5223, 443],
    couriers: { first: 1, last: 60 },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    resolver: { timeoutMs: 500 },
    dns: { listen: [`${ROUTER_DNS}:53`], allowClients: ['192.0.2.0/24', '127.0.0.0/8'], ttl: 30, forwardTimeoutMs: 1000 },
    refresh: { schedule: '* * * * *', maxStaleSeconds: 86400 },
    fallback: { enabled: true, resolveTimeoutMs: 1000 },
    stateDir: path.join(dir, 'state'),
    log: { level: 'debug', format: 'text' },
  };
}

// ---------------------------------------------------------------------------------------------
// output and assertions

class Narrator {
  passed = 0;
  readonly failures: string[] = [];
  constructor(readonly check: boolean, private readonly tty: boolean) {}

  /** Set when the lab is being torn down by a signal: the steps still running must not report. */
  muted = false;
  line(s = ''): void { if (!this.muted) process.stdout.write(`${s}\n`); }
  private style(code: string, s: string): string { return this.tty ? `\x1b[${code}m${s}\x1b[0m` : s; }
  title(s: string): void { this.line(); this.line(this.style('1', `── ${s} ${'─'.repeat(Math.max(3, 74 - s.length))}`)); }
  say(s: string): void { for (const l of s.split('\n')) this.line(`  ${l}`); }
  cmd(where: 'client' | 'router' | 'apple' | 'mdm', s: string): void { this.line(this.style('36', `${where}# ${s}`)); }
  result(s: string): void { this.line(`    → ${s}`); }
  block(text: string, prefix = '    │ '): void {
    for (const l of text.replace(/\n+$/, '').split('\n')) this.line(`${prefix}${l}`);
  }
  /** Records an assertion; --check prints every one, otherwise only failures are shown. */
  expect(cond: boolean, what: string, detail = ''): boolean {
    if (this.muted) return cond;
    if (cond) {
      this.passed++;
      if (this.check) this.line(this.style('32', `    [ok] ${what}`));
    } else {
      this.failures.push(what);
      this.line(this.style('31', `    [FAIL] ${what}${detail ? `\n           ${detail.replace(/\n/g, '\n           ')}` : ''}`));
    }
    return cond;
  }
}

// ---------------------------------------------------------------------------------------------
// the steps

interface Ctx {
  readonly lab: Lab;
  readonly n: Narrator;
  readonly config: string;
  /** the configuration carries the name sets (this build knows them) */
  readonly names: boolean;
  daemon: LabProcess;
  shown: number;  // daemon log lines already considered for display
}

interface DigResult { status: string; answers: { name: string; ttl: number; type: string; data: string }[]; raw: string }

let digTool: 'dig' | 'kdig' | undefined;
function pickDig(): 'dig' | 'kdig' {
  if (digTool) return digTool;
  digTool = systemTool('dig') !== 'dig' || systemTool('kdig') === 'kdig' ? 'dig' : 'kdig';
  return digTool;
}

/** Asks the router's DNS from the client namespace; `show` false: a silent poll (nothing printed). */
async function dig(ctx: Ctx, name: string, type = 'A', show = true): Promise<DigResult> {
  const tool = pickDig();
  const opts = tool === 'dig' ? ['+time=3', '+tries=1'] : ['+time=3', '+retry=0'];
  if (show) ctx.n.cmd('client', `${tool} @${ROUTER_DNS} ${name} ${type}`);
  const r = await ctx.lab.exec(ctx.lab.ns.client, tool, [`@${ROUTER_DNS}`, ...opts, name, type], { reject: false, timeoutMs: 15_000 });
  const res: DigResult = { status: /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? (r.exitCode === 9 ? 'TIMEOUT' : `exit ${r.exitCode}`), answers: [], raw: r.stdout + r.stderr };
  let inAnswer = false;
  for (const l of r.stdout.split('\n')) {
    if (/^;; ANSWER SECTION/.test(l)) { inAnswer = true; continue; }
    if (/^;;/.test(l) || l.trim() === '') { inAnswer = false; continue; }
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.+)$/.exec(l);
    if (m && inAnswer) res.answers.push({ name: m[1]!, ttl: Number(m[2]), type: m[3]!, data: m[4]!.trim() });
  }
  const shown = res.answers.map((a) => `${a.type} ${a.data} (ttl ${a.ttl})`).join(', ');
  if (show) ctx.n.result(`${res.status}${shown ? `  ${shown}` : ''}`);
  return res;
}

const aRecords = (r: DigResult): string[] => r.answers.filter((a) => a.type === 'A').map((a) => a.data);

async function mapElements(ctx: Ctx): Promise<Map<string, string> | null> {
  const r = await ctx.lab.exec(ctx.lab.ns.router, 'nft', ['-j', 'list', 'map', 'inet', 'apns_proxy', 'couriers4'], { reject: false });
  return r.exitCode === 0 ? addressByKey(parseMapJson(r.stdout).elements) : null;
}

const vip = (n: number): string => `${PREFIX}.${n === 0 ? 254 : n}`;  // courier 0: broadcast − 1
const mappedAddresses = (m: Map<string, string> | null, n: number): string[] =>
  [...new Set([...(m ?? new Map<string, string>())].filter(([k]) => k.startsWith(`${vip(n)} . `)).map(([, a]) => a))].sort();
/** The production couriers' elements only (the map also carries the other name sets' VIPs). */
const courierElements = (m: Map<string, string> | null): string[] => [...(m ?? new Map<string, string>()).keys()].filter((k) => k.startsWith(`${PREFIX}.`));
const courierCount = (m: Map<string, string> | null): number => new Set(courierElements(m).map((k) => k.split(' . ')[0])).size;

/** Shows the daemon's log lines since the last call (not the per-query resolver debug lines). */
function showDaemon(ctx: Ctx, max = 14): void {
  const fresh = ctx.daemon.lines.slice(ctx.shown).filter((l) => !/^debug: query /.test(l));
  ctx.shown = ctx.daemon.lines.length;
  if (fresh.length === 0) return;
  ctx.n.line('    router: apns-proxy log');
  const extra = fresh.length - max;
  ctx.n.block(fresh.slice(0, max).join('\n'));
  if (extra > 0) ctx.n.block(`… ${extra} more line(s)`);
}

type Carrier = 'kernel' | 'fallback' | 'none';
interface Conn { server: string | undefined; error: string | undefined; carrier: Carrier; fallbackLine: string | undefined }

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * One client connection to PREFIX.n:port. Which path carried it: the fallback logs every
 * connection it takes (courier, client address, where it went); a connection to a VIP that has
 * elements in couriers4 is DNATed in the kernel before the fallback's hook ever sees it.
 */
async function connect(ctx: Ctx, n: number, port: number): Promise<Conn> {
  const mapped = mappedAddresses(await mapElements(ctx), n).length > 0;
  const from = ctx.daemon.lines.length;
  ctx.n.cmd('client', `connect ${vip(n)}:${port}`);
  const r = (await ctx.lab.probe(['connect', vip(n), String(port), '--timeout-ms', '4000'], 15_000)) as
    { hellos: string[]; errors: { code: string }[]; locals: string[] };
  const server = r.hellos[0];
  const error = r.errors[0]?.code;
  const local = r.locals[0];
  const re = new RegExp(`fallback #\\d+: courier ${n}(?: ${local ? escapeRe(local) : '\\S+'} →|: )`);
  let fallbackLine = ctx.daemon.lines.slice(from).find((l) => re.test(l));
  if (!fallbackLine) fallbackLine = await ctx.daemon.waitForLine(re, mapped ? 300 : 2000, from).catch(() => undefined);
  const carrier: Carrier = fallbackLine ? 'fallback' : mapped && server ? 'kernel' : 'none';
  const how = carrier === 'kernel' ? 'carried by the kernel (nftables DNAT via map couriers4)'
    : carrier === 'fallback' ? (server ? 'carried by the userspace fallback (TPROXY → apns-proxy → native relay)' : 'refused by the userspace fallback')
      : 'not carried';
  ctx.n.result(server ? `HELLO from courier server ${server} — ${how}` : `failed (${error ?? 'no answer'}) — ${how}`);
  if (fallbackLine) ctx.n.result(`fallback said: ${fallbackLine.replace(/^\w+: /, '')}`);
  return { server, error, carrier, fallbackLine };
}

async function cli(ctx: Ctx, args: string[], show = true): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  if (show) ctx.n.cmd('router', `apns-proxy ${args.join(' ')}`);
  return ctx.lab.exec(ctx.lab.ns.router, nodeBin(), [CLI, ...args, '--config', ctx.config], { reject: false, timeoutMs: 60_000 });
}

interface StatusRow { courier: number; state: string; kernel: string[] | null; note: string }
async function statusJson(ctx: Ctx): Promise<Map<number, StatusRow>> {
  const r = await cli(ctx, ['status', '--json'], false);
  try {
    const rows = (JSON.parse(r.stdout) as { couriers: StatusRow[] }).couriers;
    return new Map(rows.map((c) => [c.courier, c]));
  } catch {
    return new Map();
  }
}

/** `apns-proxy status`, whole or only the rows of some couriers. */
async function showStatus(ctx: Ctx, only?: number[]): Promise<void> {
  const r = await cli(ctx, ['status']);
  const lines = r.stdout.replace(/\n$/, '').split('\n');
  const keep = only ? lines.filter((l, i) => i === 0 || /^kernel:/.test(l) || only.includes(Number(l.split(/\s+/)[0]))) : lines;
  ctx.n.block(keep.join('\n'));
  if (only) ctx.n.block(`(rows of couriers ${only.join(', ')}; \`apns-proxy status\` lists all ${lines.length - 1})`);
  if (r.exitCode !== 0) ctx.n.block(r.stderr);
}

async function showMap(ctx: Ctx, maxLines: number): Promise<void> {
  ctx.n.cmd('router', 'nft list map inet apns_proxy couriers4');
  const r = await ctx.lab.exec(ctx.lab.ns.router, 'nft', ['list', 'map', 'inet', 'apns_proxy', 'couriers4'], { reject: false });
  const lines = (r.stdout || r.stderr).replace(/\n$/, '').split('\n');
  const elemStart = lines.findIndex((l) => /elements = \{/.test(l));
  if (lines.length <= maxLines || elemStart < 0) {
    ctx.n.block(lines.join('\n'));
    return;
  }
  const head = lines.slice(0, Math.max(maxLines - 3, elemStart + 1));
  ctx.n.block([...head, `\t\t\t     … ${lines.length - head.length - 3} more lines …`, ...lines.slice(-3)].join('\n'));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The schedule is every minute on the minute: keep a demonstrated race-free from that tick. */
async function clearOfScheduledRefresh(): Promise<void> {
  const intoMinute = Date.now() % 60_000;
  if (intoMinute > 52_000) await sleep(60_000 - intoMinute + 3000);  // at most 11 s
}

async function demo(ctx: Ctx): Promise<void> {
  const { lab, n } = ctx;

  n.title('1. The router starts apns-proxy');
  n.say(`config ${ctx.config}:\n  DNS on ${ROUTER_DNS}:53 for clients 192.0.2.0/24, VIPs ${PREFIX}.0/24, couriers 1-60,\n  upstream DNS 203.0.113.53 (the simulated Apple), fallback on, refresh every minute`);
  n.say(`The simulated Apple DNS drops every query for courier ${NEVER} for now: that courier is never resolved.`);
  n.cmd('router', `apns-proxy run --config ${ctx.config}`);
  // The daemon first programs last-known-good from its state file (empty here), then starts DNS and
  // the fallback, logs "running", and resolves every courier: wait for that first real refresh.
  const started = await (async () => {
    const dnsLine = await ctx.daemon.waitForLine(/dns: serving on /, 20_000);
    await ctx.daemon.waitForLine(/fallback: listening/, 20_000);
    await ctx.daemon.waitForLine(/running: /, 20_000);
    const at = ctx.daemon.lines.findIndex((l) => /running: /.test(l));
    return [dnsLine, await ctx.daemon.waitForLine(/refresh: \d+ fresh/, 20_000, at)] as const;
  })().catch((err: Error) => { n.expect(false, 'the daemon started', err.message); return undefined; });
  showDaemon(ctx);
  if (!started) return;
  n.expect(/refresh: 49 fresh, 0 stale, 11 absent; \w+ sync/.test(started[1]), 'first refresh: 49 couriers mapped; 42 (DNS silent) and 51-60 (NXDOMAIN) absent', started[1]);
  n.expect(started[0].includes(`${ROUTER_DNS}:53`), `DNS serves on ${ROUTER_DNS}:53`, started[0]);

  n.title('2. A client resolves couriers through the router and connects');
  n.say(`The router answers courier names with its own VIP ${PREFIX}.N (no CNAME, no real address leaks).`);
  const d5 = await dig(ctx, `${SPREAD}-courier.push.apple.com`);
  n.expect(d5.status === 'NOERROR' && aRecords(d5).join() === vip(SPREAD) && d5.answers.length === 1, `${SPREAD}-courier resolves to ${vip(SPREAD)} only`, d5.raw);
  const dMixed = await dig(ctx, `${SINGLE}-Courier.Push.Apple.com`);
  n.expect(aRecords(dMixed).join() === vip(SINGLE) && dMixed.answers[0]?.name === `${SINGLE}-Courier.Push.Apple.com.`, 'the answer echoes the name as asked (0x20 case)', dMixed.raw);
  const d51 = await dig(ctx, `${NX}-courier.push.apple.com`);
  n.expect(d51.status === 'NXDOMAIN', `${NX}-courier is NXDOMAIN, as upstream says (only ~50 couriers exist)`, d51.raw);
  const dAaaa = await dig(ctx, `${SPREAD}-courier.push.apple.com`, 'AAAA');
  n.expect(dAaaa.status === 'NOERROR' && dAaaa.answers.length === 0, 'AAAA for a courier is NODATA: devices use the IPv4 VIP', dAaaa.raw);
  n.say(`Other names, such as ${FWD_NAME}, are forwarded untouched:`);
  const dMdm = await dig(ctx, FWD_NAME);
  n.expect(aRecords(dMdm).join() === FWD_ADDR, `${FWD_NAME} is forwarded upstream and answered with the real address`, dMdm.raw);
  showDaemon(ctx);

  n.say('');
  n.say(`Connecting to the VIP the router handed out: the simulated courier server answers "HELLO <its address>".`);
  const c17 = await connect(ctx, SINGLE, 5223);
  n.expect(c17.server === `${ADDR[SINGLE]![0]}:5223` && c17.carrier === 'kernel', `courier ${SINGLE} answered from ${ADDR[SINGLE]![0]}:5223 via the kernel`, JSON.stringify(c17));
  const c17b = await connect(ctx, SINGLE, 443);
  n.expect(c17b.server === `${ADDR[SINGLE]![0]}:443` && c17b.carrier === 'kernel', 'port 443 (the APNs fallback port) works the same', JSON.stringify(c17b));
  n.say('');
  n.say(`Courier ${SPREAD} has three servers; every new connection picks one of its 8 map slots at random:`);
  n.cmd('client', `connect ${vip(SPREAD)}:5223, 12 times`);
  const from = ctx.daemon.lines.length;
  const many = (await lab.probe(['connect', vip(SPREAD), '5223', '--count', '12'], 30_000)) as { hellos: string[]; errors: unknown[] };
  const bySrv = new Map<string, number>();
  for (const h of many.hellos) bySrv.set(h, (bySrv.get(h) ?? 0) + 1);
  n.result(`${many.hellos.length} HELLOs: ${[...bySrv].sort().map(([s, c]) => `${s} ×${c}`).join(', ')} — all via the kernel`);
  await sleep(300);
  const fbSpread = ctx.daemon.lines.slice(from).some((l) => new RegExp(`fallback #\\d+: courier ${SPREAD} `).test(l));
  n.expect(many.hellos.length === 12 && many.errors.length === 0, `12 connections to courier ${SPREAD} answered`, JSON.stringify(many));
  n.expect(bySrv.size >= 2 && [...bySrv.keys()].every((s) => ADDR[SPREAD]!.map((a) => `${a}:5223`).includes(s)), 'spread over more than one of its servers', JSON.stringify([...bySrv]));
  n.expect(!fbSpread, 'none of them went through the fallback');

  n.say('');
  n.say('What the router holds: per courier its VIP, state, age and the addresses in the kernel map.');
  await showStatus(ctx);
  await showMap(ctx, 24);
  const map1 = await mapElements(ctx);
  n.expect(courierCount(map1) === 49 && courierElements(map1).length === 49 * 8, 'the kernel map holds 49 couriers × 8 slots', `courier elements ${courierElements(map1).length}`);
  n.expect(mappedAddresses(map1, SPREAD).join() === ADDR[SPREAD]!.join(), `courier ${SPREAD}'s slots hold its three servers`);
  showDaemon(ctx);

  n.title('3. Failure: upstream DNS goes silent');
  n.say('The simulated Apple DNS now drops every query. The next refresh fails; the map is kept.');
  n.cmd('apple', 'DNS: drop every query');
  await lab.setScenario(SILENT);
  const before = await mapElements(ctx);
  const rf = await cli(ctx, ['refresh']);
  n.block([rf.stdout, rf.stderr].filter(Boolean).join("\n").trim() + `\n(exit ${rf.exitCode})`);
  n.expect(rf.exitCode === 1 && /resolution failed for 60 courier\(s\)/.test(rf.stderr), 'refresh exits 1 and says resolution failed for all 60', rf.stderr);
  n.expect(/0 fresh, 49 stale, 11 absent/.test(rf.stdout), '49 couriers are now stale (last-known-good)', rf.stdout);
  const during = await mapElements(ctx);
  n.expect(during !== null && before !== null && JSON.stringify([...during].sort()) === JSON.stringify([...before].sort()), 'the kernel map is unchanged');
  await showStatus(ctx, [SPREAD, SINGLE, NEVER, NX]);
  n.say('');
  n.say('Devices still resolve couriers (answered by the router, not upstream) and connect:');
  const d5s = await dig(ctx, `${SPREAD}-courier.push.apple.com`);
  n.expect(aRecords(d5s).join() === vip(SPREAD), `${SPREAD}-courier still resolves to ${vip(SPREAD)}`, d5s.raw);
  const c5s = await connect(ctx, SPREAD, 5223);
  n.expect(c5s.carrier === 'kernel' && ADDR[SPREAD]!.map((a) => `${a}:5223`).includes(c5s.server ?? ''), `courier ${SPREAD} is still reached via the kernel on its last-known-good addresses`, JSON.stringify(c5s));
  n.say(`Forwarded names have no last-known-good: ${FWD_NAME} gets SERVFAIL while upstream is silent.`);
  const dMdmS = await dig(ctx, FWD_NAME);
  n.expect(dMdmS.status === 'SERVFAIL', `${FWD_NAME} is SERVFAIL while upstream is silent`, dMdmS.raw);
  n.say('');
  n.say(`Courier ${NEVER} never answered, so it has no mapping. Its name still gets a VIP (existence unknown),`);
  n.say('and the fallback catches the connection — but with no DNS and no last-known-good it can only refuse:');
  const d42 = await dig(ctx, `${NEVER}-courier.push.apple.com`);
  n.expect(aRecords(d42).join() === vip(NEVER), `${NEVER}-courier resolves to ${vip(NEVER)}`, d42.raw);
  const c42s = await connect(ctx, NEVER, 5223);
  n.expect(c42s.carrier === 'fallback' && !c42s.server && /resolution failed \(E_TIMEOUT\) and no last-known-good/.test(c42s.fallbackLine ?? ''), `courier ${NEVER}: the fallback resets the connection (no address known)`, JSON.stringify(c42s));
  showDaemon(ctx);

  n.title('4. DNS is back: the fallback serves the never-resolved courier at once');
  await clearOfScheduledRefresh();
  n.cmd('apple', 'DNS: answer again (courier 42 included)');
  await lab.setScenario(HEALTHY);
  n.say(`No refresh has run yet, so courier ${NEVER} is still not in the kernel map. The fallback resolves it`);
  n.say('while the client waits, relays the connection, and asks the daemon to refresh:');
  const c42 = await connect(ctx, NEVER, 5223);
  n.expect(c42.carrier === 'fallback' && c42.server === `${ADDR[NEVER]![0]}:5223` && /\(resolved\)/.test(c42.fallbackLine ?? ''), `courier ${NEVER} answered from ${ADDR[NEVER]![0]}:5223 through the fallback`, JSON.stringify(c42));
  const took = await ctx.daemon.waitForLine(new RegExp(`courier ${NEVER}: none → ${escapeRe(ADDR[NEVER]![0]!)}`), 10_000).catch((e: Error) => e.message);
  n.expect(!took.includes('no line matching'), `the refresh that followed mapped courier ${NEVER} in the kernel`, took);
  await ctx.daemon.waitForLine(/refresh: 50 fresh/, 10_000).catch(() => undefined);
  showDaemon(ctx);
  n.say('');
  n.say('The next connection no longer needs userspace:');
  const c42k = await connect(ctx, NEVER, 443);
  n.expect(c42k.carrier === 'kernel' && c42k.server === `${ADDR[NEVER]![0]}:443`, `courier ${NEVER} now goes via the kernel`, JSON.stringify(c42k));
  const rf2 = await cli(ctx, ['refresh']);
  n.block([rf2.stdout, rf2.stderr].filter(Boolean).join("\n").trim() + `\n(exit ${rf2.exitCode})`);
  n.expect(rf2.exitCode === 0 && /50 fresh, 0 stale, 10 absent/.test(rf2.stdout), 'a refresh now succeeds: 50 fresh, 10 absent (NXDOMAIN)', rf2.stdout + rf2.stderr);
  await showStatus(ctx, [SPREAD, SINGLE, NEVER, NX]);
  const st = await statusJson(ctx);
  n.expect(st.get(NEVER)?.state === 'fresh' && st.get(SPREAD)?.state === 'fresh' && st.get(NX)?.note === 'NXDOMAIN', `status: ${SPREAD} and ${NEVER} fresh, ${NX} absent (NXDOMAIN)`, JSON.stringify([st.get(SPREAD), st.get(NEVER), st.get(NX)]));
  showDaemon(ctx);

  await nameSetSteps(ctx);
}

/** One connection to host:port (any name set's VIP); the kernel carried it when the VIP has map elements and the fallback logged nothing. */
async function connectVip(ctx: Ctx, host: string, port: number): Promise<Conn> {
  const mapped = [...((await mapElements(ctx)) ?? new Map<string, string>()).keys()].some((k) => k.startsWith(`${host} . `));
  const from = ctx.daemon.lines.length;
  ctx.n.cmd('client', `connect ${host}:${port}`);
  const r = (await ctx.lab.probe(['connect', host, String(port), '--timeout-ms', '4000'], 15_000)) as { hellos: string[]; errors: { code: string }[] };
  await sleep(300);
  const fallbackLine = ctx.daemon.lines.slice(from).find((l) => /fallback #\d+: /.test(l));
  const server = r.hellos[0];
  const carrier: Carrier = fallbackLine ? 'fallback' : mapped && server ? 'kernel' : 'none';
  ctx.n.result(server ? `HELLO from ${server} — ${carrier === 'kernel' ? 'carried by the kernel (nftables DNAT via map couriers4)' : carrier === 'fallback' ? 'carried by the userspace fallback' : 'forwarded by the router (not a VIP)'}`
    : `failed (${r.errors[0]?.code ?? 'no answer'})`);
  return { server, error: r.errors[0]?.code, carrier, fallbackLine };
}

/** Lines of `nft list map inet apns_proxy couriers4` whose element comment names one of `names`. */
async function showMapComments(ctx: Ctx, names: string[]): Promise<string> {
  ctx.n.cmd('router', `nft list map inet apns_proxy couriers4 | grep -E '${names.map((x) => `comment "${x}"`).join('|')}'`);
  const r = await ctx.lab.exec(ctx.lab.ns.router, 'nft', ['list', 'map', 'inet', 'apns_proxy', 'couriers4'], { reject: false });
  // the elements are printed comma-separated, possibly several on one line
  const items = r.stdout.split(/,\s*|\n/).map((l) => l.trim().replace(/^elements = \{\s*/, '').replace(/\s*\}$/, ''));
  const hits = items.filter((l) => names.some((x) => l.includes(`comment "${x}"`)));
  ctx.n.block(hits.length ? hits.slice(0, 12).join('\n') : '(no element with those comments)');
  return hits.join('\n');
}

async function nameSetSteps(ctx: Ctx): Promise<void> {
  const { lab, n } = ctx;
  n.title('5. Every name APNs needs: name sets (MDM server, the bag, courier 0, sandbox, direct addresses)');
  n.say('Devices and MDM servers need more than N-courier.push.apple.com: the bag (init*.push.apple.com),');
  n.say('the provider API (api*.push.apple.com), sandbox couriers, courier 0. Name sets give each of those');
  n.say(`names its own VIP: numbered sets N → PREFIX.N (0 → .254), exact names a stable VIP from ${POOL}.0/24.`);
  const gate = await dig(ctx, 'init.push.apple.com');
  const gateVip = aRecords(gate).find((a) => a.startsWith(`${POOL}.`));
  if (!ctx.names) {
    n.say('');
    n.say(`This apns-proxy does not serve name sets yet: its configuration has no \`nameSets\`, and`);
    n.say(`init.push.apple.com was forwarded upstream (${aRecords(gate).join(', ') || gate.status}) instead of answered with a ${POOL}.x VIP.`);
    n.say('Steps 5a–5d (MDM server via api.push.apple.com on 2197, the bag over HTTP and HTTPS, courier 0, a sandbox courier)');
    n.say('run once the name sets (branch f-names) are in; this is not a failure of this build.');
    return;
  }
  if (!n.expect(gateVip !== undefined && gate.answers.length === 1, `init.push.apple.com is answered by the router with a pool VIP (${POOL}.x)`, gate.raw)) return;

  n.title('5a. An MDM server pushes through api.push.apple.com (2197)');
  n.say(`The simulated MDM server at ${MDM_ADDRESS} (client side) resolves api.push.apple.com through the router,`);
  n.say('connects to the VIP on 443 and on 2197 (the provider API ports) and sends a push; the simulated API server echoes it.');
  n.cmd('mdm', `mdm-server --dns ${ROUTER_DNS} --name api.push.apple.com --ports 443,2197`);
  const m = (await lab.mdm(['--dns', ROUTER_DNS, '--name', 'api.push.apple.com', '--ports', '443,2197'])) as {
    ok: boolean; vip: string | null; dns: { rcode: string; answers: string[]; cnames: string[] }; pushes: { port: number; hello?: string; echoed: boolean; local?: string; error?: string }[];
  };
  n.result(`DNS ${m.dns.rcode}  A ${m.dns.answers.join(', ') || '-'}`);
  for (const p of m.pushes) n.result(`port ${p.port} from ${p.local ?? '?'}: ${p.hello ? `HELLO from API server ${p.hello}` : 'no HELLO'}, push ${p.echoed ? 'echoed' : `failed (${p.error ?? '?'})`}`);
  const apiVip = m.vip ?? '';
  n.expect(m.ok && apiVip.startsWith(`${POOL}.`) && m.dns.answers.length === 1 && m.dns.cnames.length === 0, 'api.push.apple.com resolves to its pool VIP only, and both pushes went through', JSON.stringify(m));
  n.expect(m.pushes.some((p) => p.port === 2197 && /^203\.0\.113\.9[01]:2197$/.test(p.hello ?? '')), 'on 2197 the provider API server (203.0.113.90/91) answered', JSON.stringify(m.pushes));
  const no5223 = await connectVip(ctx, apiVip, 5223);
  n.expect(!no5223.server, `api.push.apple.com's VIP is not forwarded on 5223 (only its set's ports 443, 2197)`, JSON.stringify(no5223));

  n.title('5b. A device fetches the bag over HTTP and HTTPS via its VIP');
  const dBag = await dig(ctx, 'init-p01st.push.apple.com');
  const bagVip = aRecords(dBag)[0] ?? '';
  n.expect(bagVip.startsWith(`${POOL}.`) && dBag.answers.length === 1, `init-p01st.push.apple.com resolves to its pool VIP`, dBag.raw);
  n.cmd('client', `GET http://${bagVip}/ (Host: init-p01st.push.apple.com)`);
  const bag = (await lab.probe(['http', bagVip, '80', '--path', '/', '--host-header', 'init-p01st.push.apple.com'], 15_000)) as { status?: number; server?: string; body?: string; error?: string };
  n.result(bag.status ? `HTTP ${bag.status} from bag server ${bag.server ?? '?'}` : `failed (${bag.error ?? '?'})`);
  if (bag.body) n.block(bag.body.split('\n').filter((l) => /<key>/.test(l)).join('\n'));
  n.expect(bag.status === 200 && bag.server === '203.0.113.82:80' && bag.body === bagBody('203.0.113.82:80'), 'the bag came from init-p01st\'s server 203.0.113.82 on port 80', JSON.stringify(bag));
  // init.push.apple.com is HTTPS: the device checks the certificate against the name, so an answer
  // proves the VIP led to that name's server (it trusts only the certificate the lab made for the name)
  const TLS_BAG = 'init.push.apple.com';
  const dTls = await dig(ctx, TLS_BAG);
  const tlsVip = aRecords(dTls)[0] ?? '';
  n.expect(tlsVip.startsWith(`${POOL}.`) && dTls.answers.length === 1, `${TLS_BAG} resolves to its pool VIP`, dTls.raw);
  const ca = lab.tlsCert(TLS_BAG);
  n.cmd('client', `GET https://${TLS_BAG}/ via ${tlsVip}:443 (SNI and Host ${TLS_BAG}; certificate checked against the lab's for the name)`);
  const sbag = (ca === undefined ? { error: 'the lab made no certificate' } : await lab.probe(['https', tlsVip, '443', '--servername', TLS_BAG, '--ca', ca], 15_000)) as {
    status?: number; server?: string; body?: string; tls?: { verified: boolean; subject: string | null; protocol: string }; error?: string;
  };
  n.result(sbag.status ? `HTTPS ${sbag.status} from bag server ${sbag.server ?? '?'}, certificate for ${sbag.tls?.subject ?? '?'} ${sbag.tls?.verified ? 'verified' : 'NOT verified'} (${sbag.tls?.protocol ?? '?'})` : `failed (${sbag.error ?? '?'})`);
  if (sbag.body) n.block(sbag.body.split('\n').filter((l) => /<key>/.test(l)).join('\n'));
  const tlsServer = sbag.server ?? '';
  n.expect(sbag.status === 200 && sbag.tls?.verified === true && sbag.tls.subject === TLS_BAG && /^203\.0\.113\.8[01]:443$/.test(tlsServer) && sbag.body === bagBody(tlsServer),
    `the bag came over TLS from ${TLS_BAG}'s server (203.0.113.80/81) on 443, its certificate verified for the name`, JSON.stringify(sbag));

  n.title('5c. Courier 0');
  n.say('Devices pick a courier in 0..count (apsd: arc4random() % (count+1)): courier 0 exists. Its VIP is the');
  n.say(`last usable address of the prefix, ${vip(0)}. This lab started with couriers 1–60; now couriers.first = 0:`);
  const cfg = JSON.parse(readFileSync(ctx.config, 'utf8')) as Record<string, any>;
  writeFileSync(ctx.config, `${JSON.stringify({ ...cfg, couriers: { ...cfg['couriers'], first: 0 } }, null, 2)}\n`);
  n.cmd('router', `set couriers.first to 0 in ${path.basename(ctx.config)}; kill -HUP <apns-proxy>`);
  ctx.shown = ctx.daemon.lines.length;  // show only what the reload logs
  ctx.daemon.kill('SIGHUP');
  // The daemon answers DNS for a name only once the kernel holds it (publish follows the transaction
  // and the routing check): wait for both, not for the map alone, before judging either.
  let zeroMapped = false;
  for (let i = 0; i < 60; i++) {
    zeroMapped = mappedAddresses(await mapElements(ctx), 0).length > 0;
    if (zeroMapped && aRecords(await dig(ctx, '0-courier.push.apple.com', 'A', false)).join() === vip(0)) break;
    await sleep(250);
  }
  showDaemon(ctx, 6);
  n.expect(zeroMapped, `after the reload courier 0 is in the kernel map at ${vip(0)}`);
  const d0 = await dig(ctx, '0-courier.push.apple.com');
  n.expect(aRecords(d0).join() === vip(0) && d0.answers.length === 1, `0-courier.push.apple.com resolves to ${vip(0)}`, d0.raw);
  const c0 = await connectVip(ctx, vip(0), 5223);
  n.expect(c0.server === `${ZERO_ADDR}:5223` && c0.carrier === 'kernel', `courier 0 answered from ${ZERO_ADDR}:5223 via the kernel`, JSON.stringify(c0));

  n.title('5d. A sandbox courier (development apps)');
  const sVip = `${SANDBOX_PREFIX}.${SANDBOX_COURIER}`;
  const ds = await dig(ctx, `${SANDBOX_COURIER}-courier.sandbox.push.apple.com`);
  n.expect(aRecords(ds).join() === sVip && ds.answers.length === 1, `${SANDBOX_COURIER}-courier.sandbox.push.apple.com resolves to ${sVip} (the sandbox set's prefix)`, ds.raw);
  const cs = await connectVip(ctx, sVip, 5223);
  n.expect(defaultSandboxAddresses(SANDBOX_COURIER).map((a) => `${a}:5223`).includes(cs.server ?? '') && cs.carrier === 'kernel', `sandbox courier ${SANDBOX_COURIER} answered from its own server via the kernel`, JSON.stringify(cs));
  const d201 = await dig(ctx, '201-courier.sandbox.push.apple.com');
  n.expect(d201.status === 'NXDOMAIN', '201-courier.sandbox.push.apple.com (outside the set\'s 0..200) is NXDOMAIN, answered by the router', d201.raw);

  n.title('5e. A device that connects to an Apple address directly (a cached courier address)');
  n.say('Some devices reconnect to an address they cached, without DNS. An address a name maps right now is');
  n.say('forwarded like a VIP connection; any other Apple address on 5223 gets a TCP reset at once, so the');
  n.say('device asks DNS again instead of waiting for a timeout (443 only with direct.reset443).');
  const map5 = await mapElements(ctx);
  const live = mappedAddresses(map5, 5)[0] ?? '';
  const allMapped = new Set((map5 ?? new Map<string, string>()).values());
  const dead = '203.0.113.200';  // inside allowedUpstreamNets, no host there: without the reset a SYN would wait in vain
  const liveConn = await connectVip(ctx, live, 5223);
  n.expect(liveConn.server === `${live}:5223`, `a direct connection to courier 5's address ${live} reaches its server`, JSON.stringify(liveConn));
  n.expect(!allMapped.has(dead), `${dead} is an Apple address (inside allowedUpstreamNets) that no name maps now`);
  const t0 = Date.now();
  const deadConn = await connectVip(ctx, dead, 5223);
  const ms = Date.now() - t0;
  n.expect(!deadConn.server && deadConn.error === 'ECONNREFUSED' && ms < 3000, `a direct connection to ${dead}:5223 is reset at once by the router (ECONNREFUSED; ${ms} ms including the probe's start)`, JSON.stringify(deadConn));

  n.say('');
  n.say('Every element of the map carries its name as a comment, and a counter of new connections:');
  const hits = await showMapComments(ctx, ['api.push.apple.com', 'init-p01st.push.apple.com', '0-courier.push.apple.com', `${SANDBOX_COURIER}-courier.sandbox.push.apple.com`]);
  n.expect(['api.push.apple.com', 'init-p01st.push.apple.com', '0-courier.push.apple.com', `${SANDBOX_COURIER}-courier.sandbox.push.apple.com`].every((x) => hits.includes(`comment "${x}"`)), 'the map\'s elements are commented with their names', hits);
  showDaemon(ctx);
}

// ---------------------------------------------------------------------------------------------
// modes

function describeLab(lab: Lab, n: Narrator): void {
  n.line(`apns-proxy lab ${lab.base}: three network namespaces on this machine; nothing leaves them.`);
  n.block([
    `client    ${lab.ns.client.padEnd(18)} 192.0.2.2/24, default via the router`,
    `router    ${lab.ns.router.padEnd(18)} 192.0.2.1 (client side), 203.0.113.1 (upstream side): runs apns-proxy`,
    `apple     ${lab.ns.upstream.padEnd(18)} 203.0.113.53 simulated Apple DNS (CNAME chains; couriers 1-50 live, 51+ NXDOMAIN)`,
    `          ${''.padEnd(18)} 203.0.113.10-49 simulated courier servers on 5223 and 443`,
    `          ${''.padEnd(18)} 203.0.113.60-99 simulated servers of the other names (sandbox couriers, bag on HTTP 80 and HTTPS 443, provider API on 443/2197)`,
    `mdm       ${lab.ns.client.padEnd(18)} ${MDM_ADDRESS}/24 on the client side: a simulated MDM server`,
  ].join('\n'), '  ');
}

function exploreHelp(lab: Lab, config: string, daemonLog: string): string {
  const cd = repoRoot();
  return [
    'The lab stays up. Explore it (as root):',
    `  ip netns exec ${lab.ns.client} bash     # the client: dig @${ROUTER_DNS} 7-courier.push.apple.com`,
    `      node ${path.relative(cd, PROBE)} connect ${vip(7)} 5223   # (from ${cd}) which server answers`,
    `      node ${path.relative(cd, fixturePath('mdm-server.js'))} --name api.push.apple.com --ports 2197   # the MDM server (${MDM_ADDRESS}) pushes`,
    `  ip netns exec ${lab.ns.router} bash     # the router: nft list map inet apns_proxy couriers4`,
    `      node ${path.relative(cd, CLI)} status --config ${config}`,
    `  ip netns exec ${lab.ns.upstream} bash     # the simulated Apple side`,
    `  tail -f ${daemonLog}     # the daemon's log`,
    '  npm run lab -- down                    # remove the lab',
  ].join('\n');
}

async function runLab(opts: { check: boolean; keeper: boolean }): Promise<number> {
  const n = new Narrator(opts.check, process.stdout.isTTY === true && !opts.check);
  let lab: Lab | undefined;
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    n.line(`\n${sig}: removing the lab…`);
    n.muted = true;
    void (lab?.destroy() ?? Promise.resolve()).finally(() => {
      if (lab) removeKept(lab.base);
      process.stdout.write(`lab ${lab?.base ?? ''} removed\n`);
      process.exit(opts.keeper ? 0 : 130);
    });
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  n.line('building the lab (namespaces, simulated Apple DNS and courier servers)…');
  try {
    lab = await createLab({ scenario: AT_START, nameSets: true });
  } catch (err) {
    n.line(`lab: ${(err as Error).message}`);
    return 1;
  }
  describeLab(lab, n);
  const config = path.join(lab.dir, 'config.json');
  const names = nameSetsConfigurable();
  writeFileSync(config, `${JSON.stringify(labConfig(lab.dir, names), null, 2)}\n`);
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  const ctx: Ctx = { lab, n, config, names, daemon, shown: 0 };
  try {
    await demo(ctx);
  } catch (err) {
    n.expect(false, 'the demo ran to the end', (err as Error).stack ?? String(err));
  }
  const failed = n.failures.length;
  n.line();
  if (opts.check || failed > 0) {
    n.line(`lab check: ${n.passed} passed, ${failed} failed${failed ? ` (${n.failures.join('; ')})` : ''}`);
  }

  if (!opts.keeper) {
    daemon.kill('SIGTERM');
    await Promise.race([daemon.exited, sleep(5000)]);
    await lab.destroy();
    n.line(`lab ${lab.base} removed (namespaces deleted, processes stopped). Keep it up with: npm run lab -- --keep`);
    return failed > 0 ? 1 : 0;
  }

  // --keep: this process is the detached keeper; it holds the lab until `lab down` (SIGTERM).
  const daemonLog = path.join(lab.dir, 'apns-proxy.log');
  let written = 0;
  const flush = (): void => {
    const lines = daemon.lines.slice(written);
    written += lines.length;
    if (lines.length) appendFileSync(daemonLog, `${lines.join('\n')}\n`);
  };
  flush();
  setInterval(flush, 1000);
  void daemon.exited.then((code) => n.line(`apns-proxy run exited (${String(code)}); the lab stays up until npm run lab -- down`));
  n.line(exploreHelp(lab, config, daemonLog));
  writeKept({
    base: lab.base, keeperPid: process.pid, namespaces: [lab.ns.client, lab.ns.router, lab.ns.upstream], dir: lab.dir,
    config, daemonLog, keeperLog: process.env['APNS_PROXY_LAB_KEEPER_LOG'] ?? '', failed, startedAt: new Date().toISOString(),
  });
  // Until `lab down` (SIGTERM). Tests bound a keeper's life, so a crashed test run leaves nothing up.
  const maxSeconds = Number(process.env['APNS_PROXY_LAB_KEEP_MAX_SECONDS'] ?? 0);
  if (Number.isInteger(maxSeconds) && maxSeconds > 0) {
    setTimeout(() => { n.line(`kept for ${maxSeconds} s (APNS_PROXY_LAB_KEEP_MAX_SECONDS): removing the lab`); process.kill(process.pid, 'SIGTERM'); }, maxSeconds * 1000);
  }
  await new Promise<never>(() => undefined);
  return 0;
}

/** --keep: runs the demo in a detached keeper that outlives this command, and shows its output. */
async function keep(args: string[]): Promise<number> {
  const dir = ensureRegistry();
  const log = path.join(dir, `keeper-${process.pid}-${Date.now()}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(nodeBin(), [SELF, '--keeper', ...args], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, APNS_PROXY_LAB_KEEPER_LOG: log },
  });
  closeSync(fd);
  child.unref();
  const pid = child.pid ?? -1;
  let exited = false;  // (a dead child not yet reaped still answers kill(pid, 0))
  child.on('exit', () => { exited = true; });
  const stop = (): void => { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } };
  process.on('SIGINT', () => { stop(); process.stdout.write('\ninterrupted: the keeper removes the lab\n'); process.exit(130); });
  process.on('SIGTERM', () => { stop(); process.exit(143); });

  let offset = 0;
  const buf = Buffer.alloc(64 * 1024);
  const pump = (): void => {
    const rfd = openSync(log, 'r');
    try {
      for (let i = 0; i < 1000; i++) {
        const got = readSync(rfd, buf, 0, buf.length, offset);
        if (got <= 0) break;
        process.stdout.write(buf.subarray(0, got));
        offset += got;
      }
    } finally {
      closeSync(rfd);
    }
  };
  const deadline = Date.now() + 5 * 60_000;
  while (Date.now() < deadline) {
    pump();
    const kept = listKept().find((k) => k.keeperPid === pid);
    if (kept) {
      await sleep(100);
      pump();
      return kept.failed > 0 ? 1 : 0;
    }
    if (exited || !alive(pid)) {
      pump();
      rmSync(log, { force: true });
      process.stdout.write('lab: the keeper exited before the lab was up\n');
      return 1;
    }
    await sleep(200);
  }
  stop();
  process.stdout.write('lab: the keeper did not bring the lab up within 5 minutes; stopped it\n');
  return 1;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { check: { type: 'boolean' }, keep: { type: 'boolean' }, keeper: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cmd = positionals[0] ?? 'up';
  if (positionals.length > 1 || (cmd !== 'up' && cmd !== 'down')) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('lab: needs root (it creates network namespaces and nftables tables): sudo npm run lab\n');
    return 1;
  }
  if (cmd === 'down') {
    await labDown((l) => process.stdout.write(`${l}\n`));
    return 0;
  }
  if (values.keeper) return runLab({ check: values.check === true, keeper: true });
  if (values.keep) return keep(values.check ? ['--check'] : []);
  return runLab({ check: values.check === true, keeper: false });
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    process.stderr.write(`lab: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
