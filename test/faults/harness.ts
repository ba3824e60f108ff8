// Shared pieces of the fault suite: start the daemon in the lab's router namespace, read
// the kernel map, fetch /metrics and /healthz, ask DNS from the client, and ONE invariant check used
// by every test: assertMapInvariant.
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { parseMapJson, parseTableJson } from '../../src/nft/runner.js';
import { type Lab, type LabProcess, createLab, distPath, nodeBin, writeLabConfig } from '../../lab/lab.js';
import type { Scenario } from '../fixtures/fake-apple.js';
import { addressByKey, directKey, portKey } from '../../src/nft/elements.js';

export const CLI = distPath('src/cli.js');
export const TOOL = distPath('test/faults/tools/netload.js');
export const ALLOWED = ['203.0.113.0/24'];
export const LIVE = 50;
export const FULL = LIVE * 8;

export type KMap = ReadonlyMap<string, string>;

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function newLab(scenario?: Scenario): Promise<Lab> {
  return createLab(scenario ? { scenario } : {});
}

/** The config every fault test starts from: DNS on 192.0.2.1:53 for the client net, metrics on loopback. */
export function baseConfig(lab: Lab, overrides: Record<string, unknown> = {}, name = 'config.json'): Promise<string> {
  return writeLabConfig(lab, {
    resolver: { timeoutMs: 300 },
    dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24'] },
    fallback: { enabled: false },
    refresh: { schedule: '0 0 1 1 *' },  // cycles only when a test asks (plus the one at start)
    metrics: { listen: ['127.0.0.1:9523'] },
    ...overrides,
  }, name);
}

export function stateDir(lab: Lab): string {
  return join(lab.dir, 'state');
}

export function spawnRun(lab: Lab, config: string, env?: Record<string, string>): LabProcess {
  return lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config], env ? { env } : {});
}

/** Spawns `run` and waits for the first refresh line (the start-up cycle with upstream as it is). */
export async function startRun(lab: Lab, config: string, re = /refresh: \d+ fresh/, timeoutMs = 15_000): Promise<LabProcess> {
  const d = spawnRun(lab, config);
  await d.waitForLine(re, timeoutMs);
  return d;
}

/** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
export async function stop(d: LabProcess | undefined): Promise<number | null | undefined> {
  if (!d) return undefined;
  d.kill('SIGTERM');
  const code = await Promise.race([d.exited, sleep(5000).then(() => 'timeout' as const)]);
  if (code !== 'timeout') return code;
  d.kill('SIGKILL');
  await Promise.race([d.exited, sleep(3000)]);
  return null;
}

export function alive(d: LabProcess): Promise<boolean> {
  return Promise.race([d.exited.then(() => false), sleep(0).then(() => true)]);
}

/** `apns-proxy ARGS --config CONFIG` in the router namespace; never throws. */
export function cli(lab: Lab, config: string, args: string[], timeoutMs = 20_000) {
  return lab.exec(lab.ns.router, nodeBin(), [CLI, ...args, '--config', config], { reject: false, timeoutMs });
}

/** The kernel map (key "VIP . slot" → address), or null when there is no table/map. */
export async function readMap(lab: Lab, table = 'apns_proxy'): Promise<Map<string, string> | null> {
  const r = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'map', 'inet', table, 'couriers4'], { reject: false, timeoutMs: 10_000 });
  if (r.exitCode !== 0) return null;
  return addressByKey(parseMapJson(r.stdout).elements);
}

export interface KSets { vipports: string[]; vips: string[]; direct: string[]; upstream: string[] }

/** Our table's sets (elements as nft spells them, sorted) from one `nft -j list table`; null when there is no table. */
export async function readSets(lab: Lab, table = 'apns_proxy'): Promise<KSets | null> {
  const r = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'table', 'inet', table], { reject: false, timeoutMs: 10_000 });
  if (r.exitCode !== 0) return null;
  const live = parseTableJson(r.stdout, table);
  return {
    vipports: (live.ports ?? []).map(portKey).sort(), vips: [...(live.vips ?? [])].sort(),
    direct: (live.direct ?? []).map(directKey).sort(), upstream: [...(live.upstream ?? [])].sort(),
  };
}

/** Reads the map every intervalMs for durationMs (bounded); returns every sample (null = no map). */
export async function sampleMap(lab: Lab, durationMs: number, intervalMs = 150): Promise<(Map<string, string> | null)[]> {
  const samples: (Map<string, string> | null)[] = [];
  const end = Date.now() + durationMs;
  for (let i = 0; i < 200 && Date.now() < end; i++) {
    samples.push(await readMap(lab));
    await sleep(intervalMs);
  }
  return samples;
}

/** Polls fn until it returns a truthy value or timeoutMs passes; returns the last value. */
export async function waitFor<T>(fn: () => Promise<T>, timeoutMs: number, intervalMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let v = await fn();
  for (let i = 0; i < 1000 && !v && Date.now() < end; i++) {
    await sleep(intervalMs);
    v = await fn();
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// the invariant

function ipv4(a: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return null;
  const p = m.slice(1).map(Number);
  if (p.some((x) => x > 255)) return null;
  return ((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!;
}

export function inNets(addr: string, nets: readonly string[]): boolean {
  const a = ipv4(addr);
  if (a === null) return false;
  return nets.some((n) => {
    const [base, len] = n.split('/');
    const b = ipv4(base!);
    const l = Number(len);
    if (b === null) return false;
    const mask = l === 0 ? 0 : (~0 << (32 - l)) >>> 0;
    return ((a & mask) >>> 0) === ((b & mask) >>> 0);
  });
}

export interface MapInvariant {
  /** every key (VIP . slot) of this map must be present (a number: at least that many elements) */
  atLeast?: KMap | number;
  /** every address must lie in these nets (default: the lab's allowedUpstreamNets) */
  allowed?: readonly string[];
  /** these addresses must not appear */
  never?: readonly string[];
  /** the map must equal this one exactly */
  equals?: KMap;
}

/** Problems with map under inv ([] = fine). */
export function mapProblems(map: KMap | null, inv: MapInvariant = {}): string[] {
  if (map === null) return ['the kernel has no map inet apns_proxy couriers4'];
  const problems: string[] = [];
  const allowed = inv.allowed ?? ALLOWED;
  const outside = [...map].filter(([, a]) => !inNets(a, allowed));
  if (outside.length) problems.push(`${outside.length} element(s) outside ${allowed.join(',')}: ${outside.slice(0, 5).map(([k, a]) => `${k} : ${a}`).join(', ')}`);
  const bad = [...map].filter(([, a]) => inv.never?.includes(a));
  if (bad.length) problems.push(`forbidden address(es) programmed: ${bad.slice(0, 5).map(([k, a]) => `${k} : ${a}`).join(', ')}`);
  if (typeof inv.atLeast === 'number') {
    if (map.size < inv.atLeast) problems.push(`map holds ${map.size} elements, fewer than ${inv.atLeast}`);
  } else if (inv.atLeast) {
    const missing = [...inv.atLeast.keys()].filter((k) => !map.has(k));
    if (missing.length) problems.push(`map holds ${map.size} elements and lost ${missing.length} of the last-known-good ${inv.atLeast.size} (e.g. ${missing.slice(0, 3).join(', ')})`);
  }
  if (inv.equals) {
    const diff = [...new Set([...inv.equals.keys(), ...map.keys()])].filter((k) => inv.equals!.get(k) !== map.get(k));
    if (diff.length) problems.push(`map differs from the expected one in ${diff.length} element(s): ${diff.slice(0, 4).map((k) => `${k}: ${String(map.get(k))} (want ${String(inv.equals!.get(k))})`).join(', ')}`);
  }
  return problems;
}

/** THE invariant of the fault suite: one assertion, with a message saying what broke. */
export function assertMapInvariant(t: ExecutionContext<any>, map: KMap | null, inv: MapInvariant = {}, what = 'map'): boolean {
  const p = mapProblems(map, inv);
  return t.deepEqual(p, [], `${what}: ${p.join('; ')}`);
}

/** The invariant over every sample of sampleMap. */
export function assertSamplesInvariant(t: ExecutionContext<any>, samples: (KMap | null)[], inv: MapInvariant = {}, what = 'map'): boolean {
  t.true(samples.length > 0, `${what}: no sample taken`);
  const firstBad = samples.findIndex((s) => mapProblems(s, inv).length > 0);
  if (firstBad < 0) return t.pass();
  return t.deepEqual(mapProblems(samples[firstBad]!, inv), [], `${what}, sample ${firstBad + 1} of ${samples.length}: ${mapProblems(samples[firstBad]!, inv).join('; ')}`);
}

// ---------------------------------------------------------------------------------------------
// metrics, health, DNS

/** GET http://127.0.0.1:PORT/PATH from inside the router namespace; null when nothing answers. */
export async function httpGet(lab: Lab, path: string, port = 9523): Promise<{ status: number; body: string } | null> {
  const script = `fetch('http://127.0.0.1:${port}${path}', { signal: AbortSignal.timeout(3000) })` +
    `.then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })), () => console.log('null'))`;
  const r = await lab.exec(lab.ns.router, nodeBin(), ['-e', script], { reject: false, timeoutMs: 8000 });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as { status: number; body: string } | null;
  } catch {
    return null;
  }
}

/** A sample's value in Prometheus text; undefined when the series is absent. */
export function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export interface DnsAnswer { rcode: string; answers: string[]; ms: number; error?: string }

/** One query from the client namespace via netload `ask` (UDP, or TCP with tcp=true). */
export async function ask(lab: Lab, name: string, opts: { tcp?: boolean; source?: string; timeoutMs?: number } = {}): Promise<DnsAnswer> {
  const args = [TOOL, 'ask', '192.0.2.1', name, '--count', '1', '--timeout-ms', String(opts.timeoutMs ?? 2000)];
  if (opts.tcp) args.push('--tcp');
  if (opts.source) args.push('--source', opts.source);
  const r = await lab.exec(lab.ns.client, nodeBin(), args, { reject: false, timeoutMs: 15_000 });
  try {
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { results: DnsAnswer[] };
    return out.results[0] ?? { rcode: 'NONE', answers: [], ms: 0, error: 'no result' };
  } catch {
    return { rcode: 'NONE', answers: [], ms: 0, error: `netload printed no JSON (exit ${r.exitCode}): ${r.stderr.slice(-300)}` };
  }
}

/** DNS keeps answering allowed clients: courier 5's name resolves to its VIP. */
export async function assertDnsAnswers(t: ExecutionContext<any>, lab: Lab, opts: { tcp?: boolean } = {}, what = 'DNS'): Promise<boolean> {
  const a = await ask(lab, '5-courier.push.apple.com', opts);
  return t.deepEqual({ rcode: a.rcode, answers: a.answers }, { rcode: 'NOERROR', answers: ['198.18.100.5'] },
    `${what}: 5-courier.push.apple.com from 192.0.2.2${opts.tcp ? ' over TCP' : ''} → ${a.rcode} ${a.answers.join(',')} ${a.error ?? ''}`);
}

/** Runs `run` once with upstream ok so the map holds every live courier and state.json exists; returns that map. */
export async function primeMap(lab: Lab, config: string, scenario: Scenario = {}): Promise<Map<string, string>> {
  await lab.setScenario(scenario);
  const d = await startRun(lab, config, /refresh: 50 fresh/);
  const code = await stop(d);
  if (code !== 0) throw new Error(`priming: run exited ${String(code)}: ${d.stderr().slice(-1000)}`);
  const map = await readMap(lab);
  if (!map || map.size !== FULL) throw new Error(`priming: the map holds ${map?.size ?? 'no'} elements, not ${FULL}`);
  return map;
}
