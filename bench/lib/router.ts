// What runs on the router namespace: the real apns-proxy (daemon or one-shot CLI), HAProxy, and
// helpers to inspect the kernel map.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADDR, type Lab, type Scenario } from './lab.js';
import type { Bg } from './proc.js';
import { sleep } from './proc.js';
import { conntrackFlush } from './procfs.js';

export const SLOTS = 8;
export const HTTP_PORT = 5223;   // httpd on the couriers (wrk)
export const BULK_PORT = 443;    // iperf3 or holdd on the couriers

/** Courier n's 8 addresses from the pool 203.0.113.10-49; `offset` shifts every courier to a disjoint set. */
export function courierAddresses(n: number, offset = 0): string[] {
  return Array.from({ length: SLOTS }, (_, k) => ADDR.courier(SLOTS * n + SLOTS * offset + k));
}

/** Couriers 1..live exist, each with 8 addresses; CNAME chains as the real ones (fake-apple). */
export function scenario(live: number, offset = 0): Scenario {
  const addresses: Record<string, string[]> = {};
  for (let n = 1; n <= live; n++) addresses[String(n)] = courierAddresses(n, offset);
  return { live, addresses, ttl: 60 };
}

/** The default name sets' hosts beside the couriers (bag, provider API). */
export const DEFAULT_HOSTS = ['init.push.apple.com', 'init-p01st.push.apple.com', 'init.sandbox.push.apple.com', 'api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com'];

/** Every default set: couriers 1..200 through the fake's CNAME chains; sandbox couriers 0..200 and the hosts as A records (8 each). */
export function allSetsScenario(offset = 0): Scenario & { records: Record<string, string[]> } {
  const records: Record<string, string[]> = {};
  for (let n = 0; n <= 200; n++) records[`${n}-courier.sandbox.push.apple.com`] = courierAddresses(n + 7, offset);
  DEFAULT_HOSTS.forEach((h, i) => { records[h] = courierAddresses(i + 3, offset); });
  return { ...scenario(200, offset), records };
}

export interface ApnsConfig {
  readonly path: string;
  readonly stateDir: string;
}

/** A config for the lab: VIPs 198.18.100.0/24, couriers 1..last, upstream 203.0.113.53. */
export function apnsConfig(lab: Lab, name: string, last: number, maxConnections = 9800): ApnsConfig {
  const stateDir = path.join(lab.dir, `state-${name}`);
  const file = path.join(lab.dir, `apns-${name}.json`);
  writeFileSync(file, JSON.stringify({
    vipPrefix: ADDR.vipPrefix,
    ports: [HTTP_PORT, BULK_PORT],
    couriers: { first: 1, last },
    // couriers only, as the figures before name sets were; the other sets off, on benchmark prefixes
    // (198.18.101.1 is HAProxy's address on the router's loopback here)
    vipPool: '198.18.102.0/24',
    nameSets: { sandbox: { enabled: false, vipPrefix: '198.18.104.0/24' }, bag: { enabled: false }, provider: { enabled: false } },
    upstreamDns: [ADDR.dns],
    allowedUpstreamNets: ['203.0.113.0/24'],
    resolver: { timeoutMs: 1000 },
    dns: { listen: [] },
    // once a year: only the refreshes the benchmark asks for; last-known-good is not kept (holdOnFallback)
    refresh: { schedule: '0 0 1 1 *', maxStaleSeconds: 0 },
    fallback: { enabled: true, maxConnections },
    stateDir,
    log: { level: 'info' },
  }, null, 1));
  return { path: file, stateDir };
}

/**
 * Couriers 0..200 and, with allSets, every other default name set (sandbox VIPs on 198.18.104.0/24:
 * this lab keeps 198.18.101.1 for HAProxy), or the other sets off; refreshes only when asked.
 */
export function nameSetsConfig(lab: Lab, name: string, allSets = true): ApnsConfig {
  const stateDir = path.join(lab.dir, `state-${name}`);
  const file = path.join(lab.dir, `apns-${name}.json`);
  writeFileSync(file, JSON.stringify({
    vipPrefix: ADDR.vipPrefix, couriers: { first: 0, last: 200 },
    nameSets: allSets ? { sandbox: { vipPrefix: '198.18.104.0/24' } } : { sandbox: { enabled: false }, bag: { enabled: false }, provider: { enabled: false } },
    vipPool: '198.18.102.0/24',
    upstreamDns: [ADDR.dns], allowedUpstreamNets: ['203.0.113.0/24'], resolver: { timeoutMs: 1000 },
    dns: { listen: [] }, refresh: { schedule: '0 0 1 1 *' }, stateDir, log: { level: 'info' },
  }, null, 1));
  return { path: file, stateDir };
}

export const cliArgv = (lab: Lab, cfg: ApnsConfig, ...args: string[]): string[] =>
  [process.execPath, path.join(lab.root, 'dist/src/cli.js'), ...args, '--config', cfg.path];

export function cli(lab: Lab, cfg: ApnsConfig, args: string[], timeoutMs = 60000) {
  return lab.exec(lab.ns.r, cliArgv(lab, cfg, ...args), { timeoutMs, check: false });
}

/** `nft -j list map`: "VIP . slot" → courier address. */
export async function kernelMap(lab: Lab): Promise<Map<string, string>> {
  const r = await lab.exec(lab.ns.r, ['nft', '-j', 'list', 'map', 'inet', 'apns_proxy', 'couriers4'], { check: false });
  const out = new Map<string, string>();
  if (r.code !== 0) return out;
  const doc = JSON.parse(r.stdout) as { nftables?: { map?: { elem?: unknown[] } }[] };
  for (const item of doc.nftables ?? []) {
    for (const e of item.map?.elem ?? []) {
      if (!Array.isArray(e) || e.length < 2) continue;
      let key: unknown = e[0];
      if (key && typeof key === 'object' && 'elem' in key) key = (key as { elem: { val: unknown } }).elem.val;
      const parts = key && typeof key === 'object' && 'concat' in key ? (key as { concat: unknown[] }).concat : [key];
      out.set(parts.map(String).join(' . '), String(e[1]));
    }
  }
  return out;
}

export async function vipElements(lab: Lab, n: number): Promise<string[]> {
  const prefix = `${ADDR.vip(n)} . `;
  return [...(await kernelMap(lab)).keys()].filter((k) => k.startsWith(prefix));
}

/**
 * Puts courier n on the fallback path the way a real outage does: its DNS starts answering REFUSED
 * and a refresh runs; with refresh.maxStaleSeconds 0 its last-known-good is too old to stay in the
 * map, so it leaves the map (the daemon repairs any element deleted by hand, so that no longer works).
 * New connections to its VIP miss the DNAT lookup; TPROXY hands them to the daemon, whose lookup
 * fails at once (REFUSED: one DNS query per connection) and which connects to the last-known-good.
 */
export async function holdOnFallback(lab: Lab, cfg: ApnsConfig, n: number): Promise<void> {
  await lab.setScenario({ ...lab.scenario, perCourier: { ...(lab.scenario.perCourier ?? {}), [String(n)]: 'refused' } });
  await cli(lab, cfg, ['refresh']);
  if ((await vipElements(lab, n)).length > 0) throw new Error(`courier ${n} is still in the kernel map: it would not take the fallback path`);
}

export class Daemon {
  private scenarioBefore: Scenario | undefined;  // restored on stop when a courier was held on the fallback

  private constructor(readonly proc: Bg, readonly cfg: ApnsConfig) {}

  /**
   * Starts `apns-proxy run` on a fresh state dir and waits for its first resolution cycle, then
   * `settleMs` more: V8 collects the start-up garbage ~6-10 s after start (a burst of ~100 wakeups
   * and 30-40 ms of CPU), which must not be mistaken for work done on the hot path.
   */
  static async start(lab: Lab, cfg: ApnsConfig, expectFresh: number, fallbackCourier?: number, settleMs = 0): Promise<Daemon> {
    rmSync(cfg.stateDir, { recursive: true, force: true });
    const proc = lab.bg(lab.ns.r, 'apns-proxy-run', cliArgv(lab, cfg, 'run'));
    const d = new Daemon(proc, cfg);
    try {
      await proc.waitFor(new RegExp(`refresh: ${expectFresh} fresh, 0 stale`), 60000);
      await proc.waitFor(/fallback: listening/, 10000);
      if (fallbackCourier !== undefined) {
        d.scenarioBefore = lab.scenario;
        await holdOnFallback(lab, cfg, fallbackCourier);
      }
      await sleep(settleMs);
    } catch (err) {
      await d.stop(lab);
      throw err;
    }
    return d;
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** SIGTERM, then `apns-proxy flush` (table and policy routing) and an empty conntrack table. */
  async stop(lab: Lab): Promise<void> {
    await this.proc.stop(10000);
    if (this.scenarioBefore !== undefined) await lab.setScenario(this.scenarioBefore);
    await cli(lab, this.cfg, ['flush']);
    await conntrackFlush(lab, lab.ns.r);
  }
}

/** HAProxy (Debian), mode tcp with splice, on the router for the "VIP" 198.18.101.1, both ports. */
export function haproxyConfig(lab: Lab, maxconn: number): string {
  const servers = (port: number) => Array.from({ length: SLOTS }, (_, i) => `    server c${i} ${ADDR.courier(i)}:${port}`).join('\n');
  const file = path.join(lab.dir, 'haproxy.cfg');
  writeFileSync(file, `global
    maxconn ${maxconn}
    # splice pipes cost 2 fds each and count against ulimit-n; idle connections hold none
    maxpipes 128
    ulimit-n 20000
    nbthread 2
defaults
    mode tcp
    maxconn ${maxconn}
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 4h
    timeout server 4h
frontend apns${HTTP_PORT}
    bind ${ADDR.haproxyVip}:${HTTP_PORT}
    default_backend couriers${HTTP_PORT}
frontend apns${BULK_PORT}
    bind ${ADDR.haproxyVip}:${BULK_PORT}
    default_backend couriers${BULK_PORT}
backend couriers${HTTP_PORT}
    balance roundrobin
${servers(HTTP_PORT)}
backend couriers${BULK_PORT}
    balance roundrobin
${servers(BULK_PORT)}
`);
  return file;
}

export async function startHaproxy(lab: Lab, maxconn = 9800): Promise<Bg> {
  const cfg = haproxyConfig(lab, maxconn);
  const proc = lab.bg(lab.ns.r, 'haproxy', ['haproxy', '-db', '-f', cfg]);
  await waitListening(lab, lab.ns.r, [`${ADDR.haproxyVip}:${HTTP_PORT}`, `${ADDR.haproxyVip}:${BULK_PORT}`], proc);
  return proc;
}

/** Polls `ss -ltn` in ns until every addr:port listens (10 s). */
export async function waitListening(lab: Lab, ns: string, addrs: string[], proc?: Bg): Promise<void> {
  const deadline = Date.now() + 10000;
  for (;;) {
    const r = await lab.exec(ns, ['ss', '-Hltn'], { check: false });
    if (addrs.every((a) => r.stdout.includes(a))) return;
    if (proc && !proc.running) throw new Error(`${proc.name} exited: ${proc.lines().slice(-5).join('\n')}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on ${addrs.join(', ')} in ${ns}: ${r.stdout}`);
    await sleep(100);
  }
}

export async function routerTables(lab: Lab): Promise<string> {
  return (await lab.exec(lab.ns.r, ['nft', 'list', 'tables'], { check: false })).stdout.trim();
}
