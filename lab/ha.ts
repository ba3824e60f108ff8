// The router-pair lab: two apns-proxy routers with keepalived and
// conntrackd between a client-side switch and an upstream-side switch, with a sync link.
//
//   <base>-c  client    c0 192.0.2.2/24, default via 192.0.2.1 (the shared client-side address)
//   <base>-r  switches  bridges brc (client side: c0's peer r0, pa0, pb0) and bru (upstream side: r1,
//                       pa1, pb1); no addresses, nothing routed: two plain switches
//   <base>-u  upstream  simulated Apple DNS 203.0.113.53 and couriers 203.0.113.10-49, default via
//                       203.0.113.1 (the shared upstream-side address)
//   <base>-a  router A  lan 192.0.2.251/24, wan 203.0.113.251/24, sync 198.51.100.1/30
//   <base>-b  router B  lan 192.0.2.252/24, wan 203.0.113.252/24, sync 198.51.100.2/30
//
// The client, switch and upstream namespaces, the simulated upstream and the process helpers are the
// integration lab's (lab/lab.ts: createLab); this file turns its router namespace into the
// two switches and adds the routers. Each router runs `apns-proxy run`, conntrackd and keepalived
// with the configurations rendered from contrib/ha (src/ops/ha/render.ts) — exactly what ships — and
// each its own pid, socket, lock and state files under the lab's dir. Router namespaces are deleted
// on destroy, on process exit, and by the next run when their owner pid is gone.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { type Lab, type LabProcess, createLab, distPath, nodeBin, repoRoot } from './lab.js';
import { type Pair, type PairPaths, type RouterName, EXAMPLE_PAIR, pairConfigKeys, renderConntrackd, renderKeepalived } from '../src/ops/ha/render.js';
import { systemTool } from '../src/core/tools.js';

const IP = systemTool('ip');

/** The lab's pair: the test address plan, the lab's interface names. */
export function labPair(over: Partial<Pair> = {}): Pair {
  const r = (name: RouterName) => ({
    ...EXAMPLE_PAIR.routers[name],
    client: { interface: 'lan', address: EXAMPLE_PAIR.routers[name].client.address },
    upstream: { interface: 'wan', address: EXAMPLE_PAIR.routers[name].upstream.address },
    sync: { interface: 'sync', address: EXAMPLE_PAIR.routers[name].sync.address },
  });
  return { ...EXAMPLE_PAIR, routers: { a: r('a'), b: r('b') }, failbackDelay: 3, ...over };
}

export interface RouterRun {
  readonly name: RouterName;
  readonly ns: string;
  readonly paths: PairPaths;
  readonly configFile: string;
  conntrackd?: LabProcess;
  keepalived?: LabProcess;
  daemon?: LabProcess;
}

export interface HaLab {
  readonly lab: Lab;
  readonly pair: Pair;
  readonly ns: { client: string; switch: string; upstream: string; a: string; b: string };
  readonly routers: Record<RouterName, RouterRun>;
  /** starts apns-proxy, conntrackd (unless off) and keepalived in the router; resolves when the daemon has programmed its map */
  start(name: RouterName, o?: { conntrackd?: boolean }): Promise<void>;
  /** hard failure: every link of the router down, then every process in its namespace SIGKILLed */
  kill(name: RouterName): Promise<void>;
  /** a reboot: empty conntrack table, no nft table, no shared addresses, links up; then start() */
  revive(name: RouterName, o?: { conntrackd?: boolean }): Promise<void>;
  /** which routers hold the shared client-side address, and the upstream-side one */
  holders(): Promise<{ client: RouterName[]; upstream: RouterName[] }>;
  /** resolves when `name` holds both shared addresses (and the other router neither, unless it is dead:
   *  a killed keepalived leaves its addresses on its downed links); rejects after timeoutMs */
  waitPrimary(name: RouterName, timeoutMs: number): Promise<number>;
  /** number of conntrack entries for VIP flows in the router's kernel table */
  vipFlows(name: RouterName): Promise<number>;
  /** resolves when vipFlows(name) >= n; rejects after timeoutMs */
  waitVipFlows(name: RouterName, n: number, timeoutMs: number): Promise<void>;
  /** the notify script's log lines (state changes and conntrackd steps) */
  notifyLog(name: RouterName): string;
  destroy(): Promise<void>;
}

const NS_RE = /^apx(\d+)-([0-9a-f]{4})-[ab]$/;
const liveRouterNs = new Set<string>();
let exitHook = false;

function delNsSync(ns: string): void {
  const r = spawnSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  for (const pid of (r.stdout ?? '').split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
  spawnSync(IP, ['netns', 'del', ns], { timeout: 5000, stdio: 'ignore' });
}

function pidAlive(pid: number): boolean {
  try { process.kill(pid, 0); } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM'; }
  try { return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('node'); } catch { return true; }
}

/** Router namespaces of earlier runs whose owner is gone (the base lab sweeps its own). */
export function sweepStaleRouters(): string[] {
  const list = spawnSync(IP, ['netns', 'list'], { encoding: 'utf8', timeout: 10000 });
  const removed: string[] = [];
  for (const line of (list.stdout ?? '').split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = NS_RE.exec(name);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    delNsSync(name);
    removed.push(name);
  }
  return removed;
}

async function ipBatch(ns: string, lines: string[]): Promise<void> {
  const r = await execa(IP, ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n', reject: false, timeout: 15000 });
  if (r.exitCode !== 0) throw new Error(`ha lab: ip -n ${ns} -batch failed: ${r.stderr}\n${lines.join('\n')}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface HaLabOptions {
  pair?: Partial<Pair>;
  /** extra top-level keys for both routers' config.json */
  config?: Record<string, unknown>;
}

export async function createHaLab(opts: HaLabOptions = {}): Promise<HaLab> {
  for (const tool of ['keepalived', 'conntrackd', 'conntrack']) {
    if (systemTool(tool) === tool) {
      throw new Error(`ha lab: ${tool} is not installed (apt-get install keepalived conntrackd conntrack; scripts/setup.sh test does it). The pair tests are never skipped${process.env['CI'] ? ' (CI is set)' : ''}.`);
    }
  }
  sweepStaleRouters();
  const lab = await createLab({ scenario: { live: 50 } });
  const ns = { client: lab.ns.client, switch: lab.ns.router, upstream: lab.ns.upstream, a: `${lab.base}-a`, b: `${lab.base}-b` };
  const pair = labPair(opts.pair);
  const repo = repoRoot();
  const kaTemplate = readFileSync(path.join(repo, 'contrib/ha/keepalived.conf.in'), 'utf8');
  const ctTemplate = readFileSync(path.join(repo, 'contrib/ha/conntrackd.conf.in'), 'utf8');
  const notify = path.join(repo, 'contrib/ha/notify.sh');
  const sysctlFile = path.join(repo, 'contrib/ha/sysctl.conf');

  const routers = {} as Record<RouterName, RouterRun>;
  for (const name of ['a', 'b'] as const) {
    const dir = path.join(lab.dir, `router-${name}`);
    mkdirSync(dir, { recursive: true });
    const paths: PairPaths = {
      notify,
      conntrackdConfig: path.join(dir, 'conntrackd.conf'),
      conntrackdSocket: path.join(dir, 'conntrackd.ctl'),
      conntrackdLock: path.join(dir, 'conntrackd.lock'),
      conntrackdLog: path.join(dir, 'conntrackd.log'),
      stateFile: path.join(dir, 'ha-state'),
    };
    writeFileSync(paths.conntrackdConfig, renderConntrackd(ctTemplate, pair, name, paths));
    writeFileSync(path.join(dir, 'keepalived.conf'), renderKeepalived(kaTemplate, pair, name, paths));
    const keys = pairConfigKeys(pair, paths);
    const configFile = path.join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({
      vipPrefix: '198.18.100.0/24',
      couriers: { first: 1, last: 60 },
      upstreamDns: ['203.0.113.53'],
      allowedUpstreamNets: ['203.0.113.0/24'],
      stateDir: path.join(dir, 'state'),
      dns: { listen: keys.dns.listen, allowClients: ['192.0.2.0/24', '127.0.0.0/8'] },
      nft: { snat: keys.nft.snat },
      ha: keys.ha,
      metrics: { listen: [] },
      refresh: { schedule: '*/10 * * * *' },
      ...opts.config,
    }, null, 1));
    routers[name] = { name, ns: ns[name], paths, configFile };
  }

  const dead = new Set<RouterName>();
  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      for (const n of [ns.a, ns.b]) {
        for (let i = 0; i < 20; i++) {
          const r = await execa(IP, ['netns', 'pids', n], { reject: false, timeout: 5000 });
          const pids = r.stdout.split(/\s+/).filter(Boolean).map(Number);
          if (pids.length === 0 || r.exitCode !== 0) break;
          for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
          await sleep(50);
        }
        await execa(IP, ['netns', 'del', n], { reject: false, timeout: 10000 });
        liveRouterNs.delete(n);
      }
      await lab.destroy();
    })();
    return destroyed;
  };
  liveRouterNs.add(ns.a);
  liveRouterNs.add(ns.b);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => { for (const n of liveRouterNs) delNsSync(n); });
  }

  try {
    for (const n of [ns.a, ns.b]) {
      const r = await execa(IP, ['netns', 'add', n], { reject: false, timeout: 10000 });
      if (r.exitCode !== 0) throw new Error(`ha lab: ip netns add ${n}: ${r.stderr}`);
    }
    // the base lab's router becomes the two switches
    await ipBatch(ns.switch, [
      'addr flush dev r0', 'addr flush dev r1',
      'link add brc type bridge', 'link add bru type bridge',
      'link set r0 master brc', 'link set r1 master bru',
      'link add pa0 type veth peer name lan netns ' + ns.a,
      'link add pa1 type veth peer name wan netns ' + ns.a,
      'link add pb0 type veth peer name lan netns ' + ns.b,
      'link add pb1 type veth peer name wan netns ' + ns.b,
      'link set pa0 master brc', 'link set pb0 master brc', 'link set pa1 master bru', 'link set pb1 master bru',
      'link set brc up', 'link set bru up', 'link set pa0 up', 'link set pa1 up', 'link set pb0 up', 'link set pb1 up',
    ]);
    await ipBatch(ns.a, [`link add sync type veth peer name sync netns ${ns.b}`]);
    for (const name of ['a', 'b'] as const) {
      const me = pair.routers[name];
      await ipBatch(ns[name], [
        'link set lo up', 'link set lan up', 'link set wan up', 'link set sync up',
        `addr add ${me.client.address}/24 dev lan`,
        `addr add ${me.upstream.address}/24 dev wan`,
        `addr add ${me.sync.address}/30 dev sync`,
      ]);
      await lab.exec(ns[name], 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1']);
      // conntrack's sysctls appear in a namespace once something there uses conntrack
      await lab.exec(ns[name], 'nft', ['-f', '-'], { input: 'table inet apx_ha_boot {\n chain c {\n  type filter hook prerouting priority 0; policy accept;\n  ct state new accept\n }\n}\ndelete table inet apx_ha_boot\n' });
      await lab.exec(ns[name], 'sysctl', ['-q', '-p', sysctlFile]);
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  const haLab: HaLab = {
    lab, pair, ns, routers, destroy,
    async start(name, o = {}) {
      const r = routers[name];
      if (o.conntrackd ?? true) {
        r.conntrackd = lab.spawn(r.ns, 'conntrackd', ['-C', r.paths.conntrackdConfig]);
        const until = Date.now() + 10000;
        for (;;) {
          const s = await lab.exec(r.ns, 'conntrackd', ['-C', r.paths.conntrackdConfig, '-s'], { reject: false, timeoutMs: 3000 });
          if (s.exitCode === 0) break;
          if (Date.now() > until) throw new Error(`ha lab: conntrackd in router ${name} does not answer: ${s.stderr}\n${r.conntrackd.stderr()}`);
          await sleep(100);
        }
      }
      r.daemon = lab.spawn(r.ns, nodeBin(), [distPath('src/cli.js'), 'run', '--config', r.configFile]);
      await r.daemon.waitForLine(/refresh: \d+ fresh/, 20000);
      const dir = path.dirname(r.configFile);
      r.keepalived = lab.spawn(r.ns, 'keepalived', ['-n', '-l', '-D', '-P', '-f', path.join(dir, 'keepalived.conf'),
        '-p', path.join(dir, 'keepalived.pid'), '-r', path.join(dir, 'vrrp.pid')]);
    },
    async kill(name) {
      const n = ns[name];
      dead.add(name);
      await ipBatch(n, ['link set lan down', 'link set wan down', 'link set sync down']);
      const r = await execa(IP, ['netns', 'pids', n], { reject: false, timeout: 5000 });
      for (const pid of r.stdout.split(/\s+/).filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    },
    async revive(name, o = {}) {
      const n = ns[name];
      const r = routers[name];
      await Promise.all([r.daemon?.exited, r.keepalived?.exited, r.conntrackd?.exited]);
      // what a reboot loses: the connection table, our nft table, the addresses keepalived added
      await lab.exec(n, 'conntrack', ['-F'], { reject: false });
      await lab.exec(n, 'nft', ['delete', 'table', 'inet', 'apns_proxy'], { reject: false });
      for (const cidr of [pair.shared.client, pair.shared.upstream]) {
        for (const dev of ['lan', 'wan']) await lab.exec(n, 'ip', ['addr', 'del', cidr, 'dev', dev], { reject: false });
      }
      for (const f of [r.paths.conntrackdLock, r.paths.conntrackdSocket]) spawnSync('rm', ['-f', f]);
      await ipBatch(n, ['link set lan up', 'link set wan up', 'link set sync up']);
      dead.delete(name);
      await haLab.start(name, o);
    },
    async holders() {
      const out = { client: [] as RouterName[], upstream: [] as RouterName[] };
      for (const name of ['a', 'b'] as const) {
        const r = await lab.exec(ns[name], 'ip', ['-4', '-o', 'addr', 'show'], { reject: false });
        if (r.stdout.includes(` ${pair.shared.client} `)) out.client.push(name);
        if (r.stdout.includes(` ${pair.shared.upstream} `)) out.upstream.push(name);
      }
      return out;
    },
    async waitPrimary(name, timeoutMs) {
      const start = Date.now();
      for (;;) {
        const h = await haLab.holders();
        const live = (list: RouterName[]) => list.filter((r) => !dead.has(r)).join();
        if (live(h.client) === name && live(h.upstream) === name) return Date.now() - start;
        if (Date.now() - start > timeoutMs) throw new Error(`ha lab: router ${name} is not the only holder of the shared addresses after ${timeoutMs} ms: ${JSON.stringify(h)}`);
        await sleep(50);
      }
    },
    async vipFlows(name) {
      const r = await lab.exec(ns[name], 'conntrack', ['-L', '-p', 'tcp'], { reject: false, timeoutMs: 20000 });
      return r.stdout.split('\n').filter((l) => / dst=198\.18\.100\.\d+ /.test(l)).length;
    },
    async waitVipFlows(name, n, timeoutMs) {
      const start = Date.now();
      let seen = 0;
      while (Date.now() - start < timeoutMs) {
        seen = await haLab.vipFlows(name);
        if (seen >= n) return;
        await sleep(200);
      }
      throw new Error(`ha lab: router ${name} has ${seen} VIP flows in its conntrack table, want ${n} (after ${timeoutMs} ms)`);
    },
    notifyLog(name) {
      try { return readFileSync(`${routers[name].paths.stateFile}.log`, 'utf8'); } catch { return ''; }
    },
  };
  return haLab;
}

/** Starts the holder in the client namespace: N connections over couriers 1..spread, port 5223. */
export async function startHolder(ha: HaLab, count: number, spread = 40, timeoutMs = 30000): Promise<{ proc: LabProcess; held: { held: number; failed: number; errors: Record<string, number> } }> {
  const dst = Array.from({ length: spread }, (_, i) => `198.18.100.${i + 1}:5223`).join(',');
  const proc = ha.lab.spawn(ha.ns.client, nodeBin(), [distPath('lab/holder.js'), '--dst', dst, '--count', String(count), '--parallel', '200', '--max-seconds', '900']);
  const line = await proc.waitForLine(/^\{"held":/, timeoutMs);
  return { proc, held: JSON.parse(line) as { held: number; failed: number; errors: Record<string, number> } };
}

export interface CheckResult { check: string; ok: number; noecho: number; dead: number; resets: number; maxMs: number; p50Ms: number }

/** Sends "check ID T" to the holder and waits for its answer (bounded by T + 5 s). */
export async function holderCheck(proc: LabProcess, id: string, timeoutMs: number): Promise<CheckResult> {
  const from = proc.lines.length;
  proc.write(`check ${id} ${timeoutMs}\n`);
  const line = await proc.waitForLine(new RegExp(`^\\{"check":"${id}"`), timeoutMs + 5000, from);
  return JSON.parse(line) as CheckResult;
}
