// The namespace lab used by the tests, `npm run lab` (lab/demo.ts) and the benchmarks (bench/lib/lab.ts):
// three network namespaces on this address plan (the one README's "See it work" table shows),
// documentation and benchmark addresses only, so nothing leaves the namespaces:
//
//   <base>-c  client    c0 192.0.2.2/24, default via 192.0.2.1
//                       (+ 192.0.2.10.. with deviceSources: extra device source addresses)
//   <base>-r  router    r0 192.0.2.1/24 (client side); r1 203.0.113.1/24 + 198.51.100.1/24 (upstream side);
//                       net.ipv4.ip_forward=1; no NAT, no firewall (the program under test adds its own table)
//                       (+ routerLoopback addresses on lo, e.g. the benchmarks' HAProxy VIP 198.18.101.1/32)
//   <base>-u  upstream  u0 203.0.113.53/24 (simulated Apple DNS), 203.0.113.10–49/24 (couriers),
//                       198.51.100.10/24 ("outside allowedUpstreamNets"), default via 203.0.113.1
//
// With { nameSets: true } (DESIGN.md §9; every name APNs needs), additionally:
//   client    192.0.2.20/24 on c0: the simulated MDM server (test/fixtures/mdm-server.ts)
//   upstream  203.0.113.60–99/24: the simulated Apple servers of the other names (sandbox couriers,
//             bag, provider API, time; test/fixtures/apple-services.ts), and createLab's server
//             fixture listens on TCP 5223, 443, 2197 (HELLO + echo), HTTP 80 (the bag) and UDP 123
//             (an NTP-like echo) on every upstream address; on 443 of the HTTPS bag hosts'
//             addresses (init.push.apple.com, init.sandbox.push.apple.com) it serves the bag over
//             HTTPS with a self-signed certificate for that name, made at start in <dir>/tls
//             (lab/certs.ts, openssl); lab.tlsCert(name) is the file a client trusts.
//
// base = `apx<tag><pid>-<4 hex>` (lab/proc.ts); creating a lab first removes namespaces (and temp
// dirs) of earlier runs whose pid is no longer alive. The lab never skips: without root / netns /
// nft it throws, so the integration tests FAIL (also, deliberately, when CI is set).
//
// createNetLab() builds only the namespaces; createLab() also starts the fixtures from
// test/fixtures: the simulated Apple DNS (fake-apple) and the courier servers (courier-server).
//
// Usage (ava, --serial):
//   let lab: Lab;
//   test.before(async () => { lab = await createLab(); });
//   test.after.always(async () => { await lab?.destroy(); });   // ALWAYS: runs even when tests fail
// As a last resort a synchronous process 'exit' handler (and SIGINT/SIGTERM/SIGHUP handlers while a
// lab is alive) kills the lab's processes and deletes its namespaces and dir.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { Scenario } from '../test/fixtures/fake-apple.js';
import { HTTPS_PORT, SERVICES } from '../test/fixtures/apple-services.js';
import { type Cert, makeCert } from './certs.js';
import {
  type Doomed, type ExecOptions, type ExecResult, type LabProcess, type SpawnOptions, IP, NFT,
  cleanupSync, deleteNamespace, distPath, labBase, nodeBin, nsExec, nsSpawn, run, sleep, sweepStaleLabs, trackLab, untrackLab,
} from './proc.js';

export type { Scenario, GlobalMode, CourierMode } from '../test/fixtures/fake-apple.js';
export { courierChain, courierAddresses, defaultCourierAddresses, regionFor } from '../test/fixtures/fake-apple.js';
export {
  type Service, type ServiceSet, HTTPS_PORT, SERVICES, SANDBOX_TEMPLATE, bagBody, defaultSandboxAddresses, sandboxChain, serviceByName,
} from '../test/fixtures/apple-services.js';
export {
  type Doomed, type ExecOptions, type ExecResult, type LabProcess, type SpawnOptions,
  cleanupSync, deleteNamespace, distPath, labBase, nodeBin, nsArgv, nsExec, nsSpawn, repoRoot, sleep, sweepStaleLabs, trackLab, untrackLab,
} from './proc.js';

/** The namespaces, their processes and the temp dir; no fixtures. */
export interface NetLab {
  readonly base: string;
  readonly ns: { client: string; router: string; upstream: string };
  /** per-lab temp dir (scenario file, configs, state dirs), removed on destroy unless keepDir */
  readonly dir: string;
  /** runs cmd inside ns (`ip netns exec`); ns '' runs it in the root namespace */
  exec(ns: string, cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** a tracked long-running process inside ns ('' = root namespace); killed on destroy */
  spawn(ns: string, cmd: string, args: string[], opts?: SpawnOptions): LabProcess;
  /** kills every process, deletes namespaces and dir; idempotent; never throws */
  destroy(): Promise<void>;
}

export interface Lab extends NetLab {
  /** replaces the whole scenario: writes the file, SIGHUPs fake-apple, resolves on its `ready <gen>` */
  setScenario(s: Scenario): Promise<void>;
  /** accepted connections logged by courier-server so far */
  courierConnections(): { conn: string; peer: string }[];
  /** queries logged by fake-apple so far (q lower case, no trailing dot; asked = as sent) */
  appleQueries(): { q: string; type: string; transport: string; asked?: string; from?: string }[];
  /** runs probe.js in the client ns and returns its JSON (last stdout line) */
  probe(args: string[], timeoutMs?: number): Promise<any>;
  /** runs mdm-server.js (the simulated MDM server, default source MDM_ADDRESS) in the client ns; its JSON */
  mdm(args?: string[], timeoutMs?: number): Promise<any>;
  /** HTTP requests logged by the server fixture so far (nameSets labs: the bag on 80; sni set over HTTPS on 443) */
  httpRequests(): { http: string; peer: string; method: string; path: string; host: string | null; sni?: string }[];
  /** the certificate (PEM file) of an HTTPS bag host's servers, to trust in a client (nameSets labs); else undefined */
  tlsCert(name: string): string | undefined;
  /** UDP datagrams the server fixture answered so far (nameSets labs: the NTP-like echo on 123) */
  udpExchanges(): { udp: string; peer: string; kind: string }[];
  /** the fixture processes, for tests that need more (e.g. SIGUSR2 to the courier server) */
  readonly fakeApple: LabProcess;
  readonly courierServer: LabProcess;
}

export interface NetLabOptions {
  /** lower-case letters after `apx` in the names (the benchmarks use 'b'); default none */
  tag?: string;
  /** extra client source addresses 192.0.2.10 .. 192.0.2.(10+n-1) on c0, n <= 20 (default 0) */
  deviceSources?: number;
  /** addresses (CIDR) added to the router's lo, e.g. '198.18.101.1/32' */
  routerLoopback?: string[];
  /** load-generator sysctls: ip_local_port_range 1024-65535 in all three, tcp_tw_reuse on client and router */
  loadGenerator?: boolean;
  /** keep the temp dir (logs) on destroy */
  keepDir?: boolean;
  /**
   * the name-set address plan: the MDM server's 192.0.2.20/24 in the client namespace and the
   * simulated Apple servers' 203.0.113.60–99/24 upstream (default off: the plan others rely on).
   * With deviceSources at most 10 (192.0.2.10–19), so that 192.0.2.20 stays the MDM server's.
   */
  nameSets?: boolean;
}

export interface LabOptions extends NetLabOptions {
  scenario?: Scenario;
  /** TCP ports of the server fixture (HELLO + echo); default 5223 and 443, with nameSets also 2197 */
  courierPorts?: number[];
  /** HTTP ports of the server fixture (the simulated bag); default none, with nameSets 80 */
  httpPorts?: number[];
  /** UDP ports of the server fixture (NTP-like echo); default none, with nameSets 123 */
  udpPorts?: number[];
}

/** The simulated MDM server's address in the client namespace (labs created with nameSets). */
export const MDM_ADDRESS = '192.0.2.20';

/** Absolute path of a compiled fixture, e.g. fixturePath('probe.js'). */
export function fixturePath(name: string): string {
  return distPath(path.join('test', 'fixtures', name));
}

/** The device source address i (0-based) of a lab created with deviceSources > i. */
export const deviceAddress = (i: number): string => `192.0.2.${10 + i}`;

function batch(lines: string[]): string {
  return lines.join('\n') + '\n';
}

async function preflight(): Promise<void> {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new Error(`lab: integration tests need root (they create network namespaces and nftables tables); running as uid ${String(uid)}. They are never skipped: run them as root${process.env['CI'] ? ' (CI is set)' : ''}.`);
  }
  for (const tool of [[IP, '-V'], [NFT, '--version']] as const) {
    const r = await execa(tool[0], [tool[1]], { reject: false, timeout: 10000 });
    if (r.exitCode !== 0) throw new Error(`lab: \`${tool[0]}\` is not usable (${r.stderr || r.message}); install iproute2 and nftables`);
  }
}

export async function createNetLab(opts: NetLabOptions = {}): Promise<NetLab> {
  const devices = opts.deviceSources ?? 0;
  if (!Number.isInteger(devices) || devices < 0 || devices > 20) throw new Error('lab: deviceSources must be 0..20');
  if (opts.nameSets && devices > 10) throw new Error(`lab: with nameSets, deviceSources must be 0..10 (${MDM_ADDRESS} is the MDM server's)`);
  await preflight();
  await sweepStaleLabs();

  const base = labBase(opts.tag);
  const ns = { client: `${base}-c`, router: `${base}-r`, upstream: `${base}-u` };
  const dir = mkdtempSync(path.join(tmpdir(), `${base}-`));
  const children = new Set<ChildProcess>();
  const doomed: Doomed = { namespaces: [ns.client, ns.router, ns.upstream], dir, children, keepDir: opts.keepDir ?? false };
  trackLab(doomed);

  const processes: LabProcess[] = [];
  let destroying: Promise<void> | undefined;

  const spawn = (nsName: string, cmd: string, args: string[], o: SpawnOptions = {}): LabProcess => {
    if (destroying) throw new Error('lab: spawn after destroy');
    const p = nsSpawn(nsName, cmd, args, o, children);
    processes.push(p);
    return p;
  };

  const destroy = (): Promise<void> => {
    destroying ??= (async () => {
      try {
        for (const p of processes) p.kill('SIGTERM');
        const all = Promise.all(processes.map((p) => p.exited));
        const gentle = await Promise.race([all.then(() => true), sleep(2000).then(() => false)]);
        if (!gentle) {
          for (const p of processes) p.kill('SIGKILL');
          await Promise.race([all, sleep(2000)]);
        }
        // whatever else still runs inside (processes started by hand, grandchildren)
        for (const n of doomed.namespaces) await deleteNamespace(n);
        if (!doomed.keepDir) await rm(dir, { recursive: true, force: true });
      } catch (err) {
        process.stderr.write(`[lab] destroy: ${(err as Error).message}; falling back to synchronous cleanup\n`);
        try { cleanupSync(doomed); } catch { /* never throw */ }
      } finally {
        untrackLab(doomed);
      }
    })();
    return destroying;
  };

  try {
    for (const n of doomed.namespaces) await run(IP, ['netns', 'add', n]);
    await run(IP, ['-n', ns.router, 'link', 'add', 'r0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', ns.client]);
    await run(IP, ['-n', ns.router, 'link', 'add', 'r1', 'type', 'veth', 'peer', 'name', 'u0', 'netns', ns.upstream]);
    const client = ['link set lo up', 'link set c0 up', 'addr add 192.0.2.2/24 dev c0'];
    for (let i = 0; i < devices; i++) client.push(`addr add ${deviceAddress(i)}/24 dev c0`);
    if (opts.nameSets) client.push(`addr add ${MDM_ADDRESS}/24 dev c0`);
    client.push('route add default via 192.0.2.1');
    await run(IP, ['-n', ns.client, '-batch', '-'], batch(client));
    await run(IP, ['-n', ns.router, '-batch', '-'], batch([
      'link set lo up',
      'link set r0 up',
      'link set r1 up',
      'addr add 192.0.2.1/24 dev r0',
      'addr add 203.0.113.1/24 dev r1',
      'addr add 198.51.100.1/24 dev r1',
      ...(opts.routerLoopback ?? []).map((a) => `addr add ${a} dev lo`),
    ]));
    const upstream = ['link set lo up', 'link set u0 up', 'addr add 203.0.113.53/24 dev u0'];
    for (let i = 10; i <= 49; i++) upstream.push(`addr add 203.0.113.${i}/24 dev u0`);
    if (opts.nameSets) for (let i = 60; i <= 99; i++) upstream.push(`addr add 203.0.113.${i}/24 dev u0`);
    upstream.push('addr add 198.51.100.10/24 dev u0', 'route add default via 203.0.113.1');
    await run(IP, ['-n', ns.upstream, '-batch', '-'], batch(upstream));
    await run(IP, ['netns', 'exec', ns.router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
    if (opts.loadGenerator) {
      // as any load generator is set up: a wide port range and TIME_WAIT reuse
      const range = 'net.ipv4.ip_local_port_range=1024 65535';
      await run(IP, ['netns', 'exec', ns.client, 'sysctl', '-q', '-w', range, 'net.ipv4.tcp_tw_reuse=1']);
      await run(IP, ['netns', 'exec', ns.router, 'sysctl', '-q', '-w', range, 'net.ipv4.tcp_tw_reuse=1']);
      await run(IP, ['netns', 'exec', ns.upstream, 'sysctl', '-q', '-w', range]);
    }

    // the program under test needs nftables in the router namespace: fail loudly if it cannot work
    const nft = await execa(IP, ['netns', 'exec', ns.router, NFT, 'list', 'ruleset'], { reject: false, timeout: 10000 });
    if (nft.exitCode !== 0) {
      throw new Error(`lab: \`nft list ruleset\` does not work inside the router namespace (exit ${String(nft.exitCode)}): ${nft.stderr || nft.message}. The kernel needs nf_tables; the tests cannot run without it.`);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return { base, ns, dir, exec: nsExec, spawn, destroy };
}

export interface FakeApple {
  readonly process: LabProcess;
  /** replaces the whole scenario: writes the file, SIGHUPs fake-apple, resolves on its `ready <gen>` */
  setScenario(s: Scenario): Promise<void>;
}

/**
 * Starts the simulated Apple DNS (test/fixtures/fake-apple.ts) on 203.0.113.53 in the upstream
 * namespace and waits until it serves. With `logFile`, its output (a line per query) goes to that
 * file and the query lines are not kept in memory (for the benchmarks: a busy DNS costs the caller
 * nothing).
 */
export async function startFakeApple(lab: NetLab, scenario: Scenario = {}, o: { logFile?: string } = {}): Promise<FakeApple> {
  const scenarioFile = path.join(lab.dir, 'scenario.json');
  writeFileSync(scenarioFile, JSON.stringify(scenario, null, 2) + '\n');
  const proc = lab.spawn(lab.ns.upstream, nodeBin(), [fixturePath('fake-apple.js'), '--scenario', scenarioFile, '--parent-watch'],
    o.logFile !== undefined ? { logFile: o.logFile, keepLine: (l) => !l.startsWith('{') } : {});
  await proc.waitForLine(/^ready 1$/, 15000);
  let chain: Promise<void> = Promise.resolve();
  const setScenario = (s: Scenario): Promise<void> => {
    const step = chain.then(async () => {
      const from = proc.lines.length;
      const tmp = `${scenarioFile}.tmp`;
      writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
      renameSync(tmp, scenarioFile);
      proc.kill('SIGHUP');
      const line = await proc.waitForLine(/^(ready \d+|reload-error .*)$/, 10000, from);
      if (line.startsWith('reload-error')) throw new Error(`lab: fake-apple rejected the scenario: ${line.slice('reload-error '.length)}`);
    });
    chain = step.catch(() => undefined);
    return step;
  };
  return { process: proc, setScenario };
}

/** A certificate for each HTTPS bag host, and the server fixture's --tls arguments for its default addresses. */
async function httpsBag(dir: string): Promise<{ certs: Map<string, Cert>; args: string[] }> {
  const certs = new Map<string, Cert>();
  const args: string[] = [];
  for (const s of SERVICES.filter((x) => x.https)) {
    let c: Cert;
    try {
      c = await makeCert(path.join(dir, 'tls'), s.name);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n  (the HTTPS bag servers need openssl: apt-get install openssl, or bash scripts/setup.sh lab)`);
    }
    certs.set(s.name, c);
    for (const a of s.addresses) args.push('--tls', `${a}:${HTTPS_PORT}=${c.cert},${c.key}`);
  }
  return { certs, args };
}

/**
 * The namespaces, the simulated Apple DNS and the courier servers (on courierPorts, default 5223 and
 * 443; with nameSets also 2197, HTTP 80, UDP 123 and HTTPS on the HTTPS bag hosts' 443).
 */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const net = await createNetLab(opts);
  try {
    const ports = opts.courierPorts ?? (opts.nameSets ? [5223, 443, 2197] : [5223, 443]);
    const httpPorts = opts.httpPorts ?? (opts.nameSets ? [80] : []);
    const udpPorts = opts.udpPorts ?? (opts.nameSets ? [123] : []);
    const tls = opts.nameSets ? await httpsBag(net.dir) : { certs: new Map<string, Cert>(), args: [] };
    const courierServer = net.spawn(net.ns.upstream, nodeBin(), [fixturePath('courier-server.js'), ...ports.map(String),
      ...httpPorts.flatMap((p) => ['--http', String(p)]), ...udpPorts.flatMap((p) => ['--udp', String(p)]), ...tls.args, '--parent-watch']);
    const [apple] = await Promise.all([
      startFakeApple(net, opts.scenario ?? {}),
      courierServer.waitForLine(/^\{"listening":/, 15000),
    ]);
    const fakeApple = apple.process;

    const jsonLines = (p: LabProcess): Record<string, unknown>[] => {
      const outList: Record<string, unknown>[] = [];
      for (const l of p.lines) {
        if (!l.startsWith('{')) continue;
        try { outList.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not ours */ }
      }
      return outList;
    };

    return {
      ...net,
      fakeApple,
      courierServer,
      setScenario: apple.setScenario,
      courierConnections: () => jsonLines(courierServer)
        .filter((o) => typeof o['conn'] === 'string')
        .map((o) => ({ conn: o['conn'] as string, peer: String(o['peer']) })),
      appleQueries: () => jsonLines(fakeApple)
        .filter((o) => typeof o['q'] === 'string')
        .map((o) => ({ q: o['q'] as string, type: String(o['type']), transport: String(o['transport']), asked: String(o['asked']), from: String(o['from']) })),
      probe: (args: string[], timeoutMs = 30000) => clientJson(net, 'probe.js', args, timeoutMs),
      mdm: (args: string[] = [], timeoutMs = 60000) => clientJson(net, 'mdm-server.js', args, timeoutMs),
      httpRequests: () => jsonLines(courierServer)
        .filter((o) => typeof o['http'] === 'string')
        .map((o) => ({
          http: o['http'] as string, peer: String(o['peer']), method: String(o['method']), path: String(o['path']),
          host: typeof o['host'] === 'string' ? o['host'] : null, ...(typeof o['sni'] === 'string' ? { sni: o['sni'] } : {}),
        })),
      tlsCert: (name: string) => tls.certs.get(name.toLowerCase())?.cert,
      udpExchanges: () => jsonLines(courierServer)
        .filter((o) => typeof o['udp'] === 'string')
        .map((o) => ({ udp: o['udp'] as string, peer: String(o['peer']), kind: String(o['kind']) })),
    };
  } catch (err) {
    await net.destroy();
    throw err;
  }
}

/** Runs a fixture in the client namespace and parses its JSON (last stdout line). */
async function clientJson(net: NetLab, fixture: string, args: string[], timeoutMs: number): Promise<any> {
  const r = await net.exec(net.ns.client, nodeBin(), [fixturePath(fixture), ...args], { timeoutMs, reject: false });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as unknown;
  } catch {
    const name = fixture.replace(/\.js$/, '');
    throw new Error(`lab: ${name} ${args.join(' ')} printed no JSON (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''})\n  stdout: ${r.stdout.slice(-2000)}\n  stderr: ${r.stderr.slice(-2000)}`);
  }
}

/**
 * Writes a daemon config for this lab (VIPs 198.18.100.0/24, couriers 1..60, the other name sets
 * off but on the test plan's prefixes, upstream DNS
 * 203.0.113.53, couriers in 203.0.113.0/24, state in the lab's dir), with the given top-level keys
 * replaced; returns its path.
 */
export async function writeLabConfig(lab: NetLab, overrides: Record<string, unknown> = {}, name = 'config.json'): Promise<string> {
  const file = path.join(lab.dir, name);
  await writeFile(file, JSON.stringify({
    vipPrefix: '198.18.100.0/24',
    couriers: { first: 1, last: 60 },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    // The other default name sets on the test plan's prefixes, off: a test about couriers sees
    // couriers only; a test about name sets turns them on (nameSets in overrides).
    vipPool: '198.18.102.0/24',
    nameSets: {
      sandbox: { enabled: false, vipPrefix: '198.18.101.0/24' },
      bag: { enabled: false },
      provider: { enabled: false },
    },
    stateDir: path.join(lab.dir, 'state'),
    ...overrides,
  }, null, 1));
  return file;
}
