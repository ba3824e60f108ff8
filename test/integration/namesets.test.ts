// Name sets end to end (DESIGN.md §7, §9): every name APNs needs, not only the production couriers.
// The real `apns-proxy run` in the router namespace serves DNS on 192.0.2.1:53; the client namespace
// (a device at 192.0.2.2, a simulated MDM server at 192.0.2.20) resolves every name of every set
// through it and reaches each name's own simulated Apple server through that name's VIP, through the
// kernel only (the fallback is off), on that set's ports only. Needs root; fails (never skips) without.
//
// The sets under test (the defaults, with the test address plan's prefixes, plus a UDP set):
//   production couriers  {n}-courier.push.apple.com           0..60   198.18.100.0/24 (0 → .254)  TCP 5223, 443
//   sandbox              {n}-courier.sandbox.push.apple.com   0..200  198.18.101.0/24 (0 → .254)  TCP 5223, 443
//   bag                  init, init-p01st, init.sandbox        pool 198.18.102.0/24               TCP 80, 443
//                        (init and init.sandbox answer HTTPS on 443 with the lab's certificate for the name)
//   provider             api, api.sandbox, api.development     pool                               TCP 443, 2197
//   time                 time.apple.com                        pool                               UDP 123
// and, last, a daemon whose production couriers have a /23 (198.18.104.0/23, couriers 0..300).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type ExecutionContext, type TestFn } from 'ava';
import {
  type Lab, type LabProcess, type Scenario, MDM_ADDRESS, SERVICES, bagBody, createLab, defaultSandboxAddresses, distPath, nodeBin, sleep,
} from '../../lab/lab.js';

interface Ctx { lab: Lab; config: string; vips: Map<string, string> }
const test = anyTest as TestFn<Ctx>;
type T = ExecutionContext<Ctx>;
const CLI = distPath('src/cli.js');

const POOL = '198.18.102.';
const BAG = ['init.push.apple.com', 'init-p01st.push.apple.com', 'init.sandbox.push.apple.com'];
const PROVIDER = ['api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com'];
const TIME = ['time.apple.com'];
const EXACT = [...BAG, ...PROVIDER, ...TIME];
const SET_OF: Record<string, string> = Object.fromEntries([...BAG.map((n) => [n, 'bag']), ...PROVIDER.map((n) => [n, 'provider']), ...TIME.map((n) => [n, 'time'])]);
const PORTS: Record<string, { tcp: number[]; udp: number[] }> = {
  bag: { tcp: [80, 443], udp: [] }, provider: { tcp: [443, 2197], udp: [] }, time: { tcp: [], udp: [123] },
};
const serverOf = (name: string): string[] => [...SERVICES.find((s) => s.name === name)!.addresses];
const httpsOn443 = (name: string): boolean => SERVICES.find((s) => s.name === name)!.https === true;

interface HttpsReply { status?: number; server?: string; body?: string; tls?: { verified: boolean; subject: string | null; protocol: string }; error?: string }

/** GET https://NAME/ at host:443, the certificate verified against `ca` (default: the lab's for NAME) and NAME. */
async function httpsGet(lab: Lab, host: string, name: string, ca = lab.tlsCert(name)): Promise<HttpsReply> {
  if (ca === undefined) throw new Error(`the lab has no certificate for ${name}`);
  return await lab.probe(['https', host, '443', '--servername', name, '--ca', ca, '--timeout-ms', '3000'], 15_000) as HttpsReply;
}

// Courier 5 has three servers, courier 0 one; sandbox couriers have the fake's default pair (7 → .74, .75).
const SCENARIO: Scenario = {
  live: 50,
  addresses: { '5': ['203.0.113.12', '203.0.113.13', '203.0.113.14'], '0': ['203.0.113.45'] },
  records: { 'time-ios.apple.com': ['203.0.113.97'] },
};
const LAST = 60;  // production couriers.last in this test: the TXT count is rewritten down to it

function nameSets(bag = BAG, time = TIME): Record<string, unknown> {
  return {
    sandbox: { template: '{n}-courier.sandbox.push.apple.com', first: 0, last: 200, vipPrefix: '198.18.101.0/24', tcp: [5223, 443], udp: [] },
    bag: { names: bag, tcp: [80, 443], udp: [] },
    provider: { names: PROVIDER, tcp: [443, 2197], udp: [] },
    time: { names: time, tcp: [], udp: [123] },
  };
}

function baseConfig(lab: Lab, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    vipPrefix: '198.18.100.0/24',
    ports: [5223, 443],
    couriers: { first: 0, last: LAST },
    vipPool: '198.18.102.0/24',
    nameSets: nameSets(),
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    resolver: { timeoutMs: 300 },
    dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24', '127.0.0.0/8'], ttl: 30, forwardTimeoutMs: 1000 },
    refresh: { schedule: '0 0 1 1 *' },  // once a year: only start-up and requested refreshes
    fallback: { enabled: false },         // every connection that works went through the kernel
    stateDir: join(lab.dir, 'state'),
    log: { level: 'debug' },
    ...over,
  };
}

// ---------------------------------------------------------------------------------------------
// helpers

interface Rr { name: string; ttl: number; type: string; data: string }
interface Dig { status: string | undefined; answers: Rr[]; raw: string }

async function dig(lab: Lab, name: string, type = 'A'): Promise<Dig> {
  const r = await lab.exec(lab.ns.client, 'dig', ['@192.0.2.1', '+tries=1', '+time=3', name, type], { reject: false, timeoutMs: 15_000 });
  const answers: Rr[] = [];
  let inAnswer = false;
  for (const l of r.stdout.split('\n')) {
    if (/^;; ANSWER SECTION/.test(l)) { inAnswer = true; continue; }
    if (/^;;/.test(l) || l.trim() === '') { inAnswer = false; continue; }
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.+)$/.exec(l);
    if (m && inAnswer) answers.push({ name: m[1]!, ttl: Number(m[2]), type: m[3]!, data: m[4]!.trim() });
  }
  return { status: /status: (\w+)/.exec(r.stdout)?.[1], answers, raw: r.stdout + r.stderr };
}

const onlyA = (d: Dig): string | undefined => (d.status === 'NOERROR' && d.answers.length === 1 && d.answers[0]!.type === 'A' ? d.answers[0]!.data : undefined);

interface Element { vip: string; slot: number; address: string; comment: string | undefined; packets: number | undefined }

/** couriers4 as elements with their comment and counter (nft -j), or null without the table. */
async function elements(lab: Lab): Promise<Element[] | null> {
  const r = await lab.exec(lab.ns.router, 'nft', ['-j', 'list', 'map', 'inet', 'apns_proxy', 'couriers4'], { reject: false });
  if (r.exitCode !== 0) return null;
  const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: unknown[] } }[] };
  const map = doc.nftables.find((o) => o.map)?.map;
  const out: Element[] = [];
  for (const e of map?.elem ?? []) {
    const [key, address] = e as [Record<string, any>, string];
    const inner = (key['elem'] ?? key) as Record<string, any>;
    const concat = (inner['val']?.concat ?? inner['concat']) as [string, number] | undefined;
    if (!concat) throw new Error(`unexpected couriers4 element ${JSON.stringify(e)}`);
    out.push({ vip: String(concat[0]), slot: Number(concat[1]), address, comment: inner['comment'], packets: inner['counter']?.packets });
  }
  return out;
}

const addressesOf = (els: Element[] | null, vip: string): string[] => [...new Set((els ?? []).filter((e) => e.vip === vip).map((e) => e.address))].sort();
const packetsOf = (els: Element[] | null, vip: string): number => (els ?? []).filter((e) => e.vip === vip).reduce((s, e) => s + (e.packets ?? NaN), 0);

/** Polls until `check` returns a value (not undefined), at most timeoutMs; then throws with `what`. */
async function until<V>(what: string, timeoutMs: number, check: () => Promise<V | undefined>): Promise<V> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) { last = err; }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

async function cli(lab: Lab, config: string, ...args: string[]) {
  return lab.exec(lab.ns.router, nodeBin(), [CLI, ...args, '--config', config], { reject: false, timeoutMs: 30_000 });
}

/** The daemon now running: module state, since each test gets its own copy of the before hook's context. */
let running: LabProcess | undefined;

async function stopDaemon(_t: T): Promise<void> {
  const d = running;
  if (!d) return;
  d.kill('SIGTERM');
  await Promise.race([d.exited, sleep(10_000)]);
  d.kill('SIGKILL');
  await d.exited;  // its DNS port and run.lock are free only once it is gone
  running = undefined;
}

/** Starts `apns-proxy run` with config and waits until its DNS serves (not until anything resolved). */
async function startDaemon(t: T, config: string): Promise<LabProcess> {
  const { lab } = t.context;
  const d = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  running = d;
  const up = await Promise.race([
    d.waitForLine(/dns: serving on 192\.0\.2\.1:53/, 20_000).then(() => true),
    d.exited.then((code) => { throw new Error(`apns-proxy run exited ${String(code)} before serving DNS:\n${d.stderr().slice(-3000)}`); }),
  ]);
  void up;
  return d;
}

/** Waits until DNS answers every exact name with a pool VIP and the map holds them (the first refresh). */
async function untilReady(lab: Lab, names: string[], vipsThatMustBeMapped: string[] = []): Promise<Map<string, string>> {
  return until(`every exact name answered with a pool VIP and mapped (${names.join(', ')})`, 30_000, async () => {
    const vips = new Map<string, string>();
    for (const name of names) {
      const a = onlyA(await dig(lab, name));
      if (!a?.startsWith(POOL)) return undefined;
      vips.set(name, a);
    }
    const els = await elements(lab);
    for (const v of [...vips.values(), ...vipsThatMustBeMapped]) if (addressesOf(els, v).length === 0) return undefined;
    return vips;
  });
}

async function refuses(t: T, host: string, port: number, why: string): Promise<void> {
  const { lab } = t.context;
  const before = lab.courierConnections().length;
  const r = await lab.probe(['connect', host, String(port), '--timeout-ms', '1500'], 15_000) as { hellos: string[]; errors: unknown[] };
  await sleep(200);
  t.deepEqual(r.hellos, [], `${host}:${port} must not connect (${why})`);
  t.is(r.errors.length, 1);
  t.deepEqual(lab.courierConnections().slice(before), [], `no simulated server saw a connection for ${host}:${port}`);
}

async function hello(t: T, host: string, port: number, servers: string[], what: string): Promise<void> {
  const r = await t.context.lab.probe(['connect', host, String(port), '--timeout-ms', '3000'], 15_000) as { hellos: string[]; errors: unknown[] };
  t.is(r.hellos.length, 1, `${what}: ${host}:${port} → ${JSON.stringify(r)}`);
  t.true(servers.map((s) => `${s}:${port}`).includes(r.hellos[0] ?? ''), `${what}: ${host}:${port} answered by ${String(r.hellos[0])}, expected one of ${servers.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------

test.before(async (t) => {
  const lab = await createLab({ nameSets: true, scenario: SCENARIO });
  const config = join(lab.dir, 'config.json');
  t.context = { lab, config, vips: new Map() };
  await writeFile(config, JSON.stringify(baseConfig(lab), null, 1));
  await startDaemon(t as unknown as T, config);
  t.context.vips = await untilReady(lab, EXACT, ['198.18.100.5', '198.18.100.254', '198.18.101.7']);
});

test.after.always(async (t) => {
  if (running) {
    running.kill('SIGTERM');
    await Promise.race([running.exited, sleep(5000)]);
  }
  await t.context.lab?.destroy();
});

test.serial('every exact name gets its own VIP from the pool, lowest free first; the answer is the VIP only', async (t) => {
  const { lab, vips } = t.context;
  t.deepEqual([...vips.values()].sort((a, b) => Number(a.split('.')[3]) - Number(b.split('.')[3])),
    Array.from({ length: EXACT.length }, (_, i) => `${POOL}${i + 1}`), `7 names, an empty state: ${POOL}1–7 (${JSON.stringify([...vips])})`);
  for (const name of EXACT) {
    const asked = name.toUpperCase();
    const d = await dig(lab, asked);
    t.is(d.status, 'NOERROR', d.raw);
    t.deepEqual(d.answers, [{ name: `${asked}.`, ttl: 30, type: 'A', data: vips.get(name)! }], `${name}: one A record, the VIP, as asked; no CNAME, no real address`);
    const aaaa = await dig(lab, name, 'AAAA');
    t.true(aaaa.status === 'NOERROR' && aaaa.answers.length === 0, `${name} AAAA is NODATA: ${aaaa.raw}`);
  }
});

test.serial('numbered sets: N → network + N, courier 0 → broadcast − 1, NXDOMAIN from upstream passed through', async (t) => {
  const { lab } = t.context;
  const expect: [string, string][] = [
    ['5-courier.push.apple.com', '198.18.100.5'],
    ['0-courier.push.apple.com', '198.18.100.254'],
    ['50-Courier.Push.Apple.com', '198.18.100.50'],
    ['7-courier.sandbox.push.apple.com', '198.18.101.7'],
    ['0-courier.sandbox.push.apple.com', '198.18.101.254'],
    ['50-courier.sandbox.push.apple.com', '198.18.101.50'],
  ];
  for (const [name, vip] of expect) t.is(onlyA(await dig(lab, name)), vip, name);
  for (const name of ['51-courier.push.apple.com', '60-courier.sandbox.push.apple.com', '200-courier.sandbox.push.apple.com']) {
    const d = await dig(lab, name);
    t.is(d.status, 'NXDOMAIN', `${name} (upstream: NXDOMAIN): ${d.raw}`);
    t.is(d.answers.length, 0);
  }
});

test.serial('a name of a numbered set outside its range is NXDOMAIN locally and never forwarded', async (t) => {
  const { lab } = t.context;
  for (const [name, type] of [['201-courier.sandbox.push.apple.com', 'A'], ['201-courier.sandbox.push.apple.com', 'AAAA'], ['254-courier.sandbox.push.apple.com', 'A'], [`${LAST + 1}-courier.push.apple.com`, 'A']] as const) {
    const d = await dig(lab, name, type);
    t.is(d.status, 'NXDOMAIN', `${name} ${type}: ${d.raw}`);
    t.is(d.answers.length, 0);
  }
  await sleep(300);
  const asked = lab.appleQueries().filter((q) => /^(201|254)-courier\.sandbox\.push\.apple\.com$/.test(q.q) || q.q === `${LAST + 1}-courier.push.apple.com`);
  t.deepEqual(asked, [], 'nothing was asked upstream (fake-apple query log)');
});

test.serial('push.apple.com TXT is forwarded; a count above the production last is rewritten down to it', async (t) => {
  const { lab } = t.context;
  try {
    for (const [upstream, answered] of [[300, LAST], [50, 50]] as const) {
      await lab.setScenario({ ...SCENARIO, txtCount: upstream });
      const from = lab.appleQueries().length;
      const d = await dig(lab, 'push.apple.com', 'TXT');
      t.is(d.status, 'NOERROR', d.raw);
      t.deepEqual(d.answers.map((a) => `${a.type} ${a.data}`), [`TXT "count=${answered}"`], `upstream count=${upstream} → count=${answered}`);
      await sleep(200);
      t.true(lab.appleQueries().slice(from).some((q) => q.q === 'push.apple.com' && q.type === 'TXT'), 'the TXT query went upstream');
    }
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('TCP through the kernel: every name reaches its own simulated server on each of its set\'s ports', async (t) => {
  const { lab, vips } = t.context;
  for (const name of [...BAG, ...PROVIDER]) {
    const vip = vips.get(name)!;
    for (const port of PORTS[SET_OF[name]!]!.tcp) {
      if (port === 80) {
        const r = await lab.probe(['http', vip, '80', '--host-header', name, '--timeout-ms', '3000'], 15_000) as { status?: number; server?: string; error?: string };
        t.is(r.status, 200, `${name} ${vip}:80 → ${JSON.stringify(r)}`);
        t.true(serverOf(name).map((a) => `${a}:80`).includes(r.server ?? ''), `${name}:80 answered by ${String(r.server)}`);
      } else if (port === 443 && httpsOn443(name)) {
        const r = await httpsGet(lab, vip, name);
        t.is(r.status, 200, `${name} https ${vip}:443 → ${JSON.stringify(r)}`);
        t.true(serverOf(name).map((a) => `${a}:443`).includes(r.server ?? ''), `${name}:443 answered by ${String(r.server)}`);
      } else {
        await hello(t, vip, port, serverOf(name), name);
      }
    }
  }
  for (const port of [5223, 443]) {
    await hello(t, '198.18.100.5', port, SCENARIO.addresses!['5']!, 'courier 5');
    await hello(t, '198.18.100.254', port, ['203.0.113.45'], 'courier 0');
    await hello(t, '198.18.101.7', port, defaultSandboxAddresses(7), 'sandbox courier 7');
    await hello(t, '198.18.101.254', port, defaultSandboxAddresses(0), 'sandbox courier 0');
  }
  const last = lab.courierConnections().at(-1)!;
  t.regex(last.peer, /^203\.0\.113\.1:\d+$/, 'source-NATed to the router\'s upstream address');
});

test.serial('a VIP is forwarded on its own set\'s ports only (api.push.apple.com on 5223 does not connect)', async (t) => {
  const { lab, vips } = t.context;
  await refuses(t, vips.get('api.push.apple.com')!, 5223, 'provider: 443, 2197 only');
  await refuses(t, vips.get('api.push.apple.com')!, 80, 'provider: 443, 2197 only');
  await refuses(t, vips.get('init-p01st.push.apple.com')!, 5223, 'bag: 80, 443 only');
  await refuses(t, vips.get('init-p01st.push.apple.com')!, 2197, 'bag: 80, 443 only');
  await refuses(t, '198.18.101.7', 2197, 'sandbox: 5223, 443 only');
  await refuses(t, '198.18.100.5', 80, 'production couriers: 5223, 443 only');
  await refuses(t, vips.get('time.apple.com')!, 443, 'time: UDP 123 only');
  const udpBefore = lab.udpExchanges().length;
  const u = await lab.probe(['udp', '198.18.100.5', '123', '--timeout-ms', '1500'], 15_000) as { replies: string[] };
  t.deepEqual(u.replies, [], 'courier 5\'s VIP does not carry UDP 123');
  const u2 = await lab.probe(['udp', vips.get('api.push.apple.com')!, '123', '--timeout-ms', '1500'], 15_000) as { replies: string[] };
  t.deepEqual(u2.replies, [], 'api.push.apple.com\'s VIP does not carry UDP 123');
  t.is(lab.udpExchanges().length, udpBefore, 'no simulated server saw those datagrams');
});

test.serial('a UDP set: time.apple.com\'s VIP carries the NTP-like echo to its server on 123', async (t) => {
  const { lab, vips } = t.context;
  const vip = vips.get('time.apple.com')!;
  const before = lab.udpExchanges().length;
  const r = await lab.probe(['udp', vip, '123', '--count', '4', '--timeout-ms', '2000'], 30_000) as { replies: string[]; errors: unknown[] };
  t.is(r.replies.length, 4, JSON.stringify(r));
  t.true(r.replies.every((s) => ['203.0.113.95:123', '203.0.113.96:123'].includes(s)), JSON.stringify(r.replies));
  const seen = lab.udpExchanges().slice(before);
  t.is(seen.length, 4);
  t.true(seen.every((x) => x.kind === 'ntp' && /^203\.0\.113\.1:\d+$/.test(x.peer)), JSON.stringify(seen));
});

test.serial('the bag over HTTP: GET / on init-p01st.push.apple.com\'s VIP port 80 returns the bag', async (t) => {
  const { lab, vips } = t.context;
  const vip = vips.get('init-p01st.push.apple.com')!;
  const before = lab.httpRequests().length;
  const r = await lab.probe(['http', vip, '80', '--path', '/', '--host-header', 'init-p01st.push.apple.com'], 15_000) as { status: number; server: string; body: string };
  t.is(r.status, 200, JSON.stringify(r));
  t.is(r.server, '203.0.113.82:80');
  t.is(r.body, bagBody('203.0.113.82:80'));
  const req = lab.httpRequests().slice(before);
  t.is(req.length, 1);
  t.like(req[0], { http: '203.0.113.82:80', method: 'GET', path: '/', host: 'init-p01st.push.apple.com' });
  t.regex(req[0]!.peer, /^203\.0\.113\.1:\d+$/);
});

test.serial('the bag over HTTPS: https://init.push.apple.com/ through its VIP, the certificate verified for the name', async (t) => {
  const { lab, vips } = t.context;
  const name = 'init.push.apple.com';
  const vip = onlyA(await dig(lab, name));
  t.is(vip, vips.get(name), 'DNS answers the name with its VIP only');
  const before = lab.httpRequests().length;
  const r = await httpsGet(lab, vip!, name);
  t.is(r.status, 200, JSON.stringify(r));
  t.like(r.tls, { verified: true, subject: name }, 'the handshake verified the lab\'s certificate for the name');
  t.regex(r.tls?.protocol ?? '', /^TLSv1\.[23]$/);
  t.true(['203.0.113.80:443', '203.0.113.81:443'].includes(r.server ?? ''), `answered by init.push.apple.com's server on 443: ${String(r.server)}`);
  t.is(r.body, bagBody(r.server!));
  const req = lab.httpRequests().slice(before);
  t.is(req.length, 1);
  t.like(req[0], { http: r.server, method: 'GET', path: '/', host: name, sni: name });
  t.regex(req[0]!.peer, /^203\.0\.113\.1:\d+$/);

  // the check is real: another bag host's certificate, or its server, does not pass for init.push.apple.com
  const wrongCa = await httpsGet(lab, vip!, name, lab.tlsCert('init.sandbox.push.apple.com'));
  t.truthy(wrongCa.error, `trusting init.sandbox's certificate instead: ${JSON.stringify(wrongCa)}`);
  const wrongServer = await httpsGet(lab, vips.get('init.sandbox.push.apple.com')!, name);
  t.truthy(wrongServer.error, `init.sandbox's VIP does not pass for ${name}: ${JSON.stringify(wrongServer)}`);
  t.is(lab.httpRequests().length, before + 1, 'neither failed handshake reached a request');
});

test.serial('the provider API from the MDM server at 192.0.2.20: resolved through the router, pushed on 443 and 2197', async (t) => {
  const { lab, vips } = t.context;
  const r = await lab.mdm(['--name', 'api.push.apple.com', '--ports', '443,2197', '--count', '2']) as {
    ok: boolean; vip: string; dns: { rcode: string; answers: string[]; cnames: string[] }; pushes: { port: number; hello?: string; echoed: boolean; local?: string }[];
  };
  t.true(r.ok, JSON.stringify(r));
  t.deepEqual(r.dns, { rcode: 'NOERROR', answers: [vips.get('api.push.apple.com')!], cnames: [] });
  t.deepEqual(r.pushes.map((p) => p.port), [443, 443, 2197, 2197]);
  for (const p of r.pushes) {
    t.true(p.echoed);
    t.true(['203.0.113.90', '203.0.113.91'].map((a) => `${a}:${p.port}`).includes(p.hello ?? ''), JSON.stringify(p));
    t.true(p.local?.startsWith(`${MDM_ADDRESS}:`) === true, JSON.stringify(p));
  }
  const dev = await lab.mdm(['--name', 'api.development.push.apple.com', '--ports', '2197']) as { ok: boolean; vip: string; pushes: { hello?: string }[] };
  t.true(dev.ok, JSON.stringify(dev));
  t.is(dev.vip, vips.get('api.development.push.apple.com') ?? 'a pool VIP');
  t.is(dev.pushes[0]?.hello, '203.0.113.93:2197');
});

test.serial('map elements carry the name as comment and count new connections', async (t) => {
  const { lab, vips } = t.context;
  const text = await lab.exec(lab.ns.router, 'nft', ['list', 'map', 'inet', 'apns_proxy', 'couriers4']);
  for (const name of ['5-courier.push.apple.com', '0-courier.push.apple.com', '7-courier.sandbox.push.apple.com', 'api.push.apple.com', 'init-p01st.push.apple.com', 'time.apple.com']) {
    t.true(text.stdout.includes(`comment "${name}"`), `nft list map shows comment "${name}"`);
  }
  // every element's comment is the name of its VIP
  const nameOfVip = new Map<string, string>([...vips].map(([n, v]) => [v, n]));
  for (let n = 0; n <= LAST; n++) nameOfVip.set(n === 0 ? '198.18.100.254' : `198.18.100.${n}`, `${n}-courier.push.apple.com`);
  for (let n = 0; n <= 200; n++) nameOfVip.set(n === 0 ? '198.18.101.254' : `198.18.101.${n}`, `${n}-courier.sandbox.push.apple.com`);
  const els = (await elements(lab))!;
  const wrong = els.filter((e) => e.comment !== nameOfVip.get(e.vip));
  t.deepEqual(wrong.slice(0, 5), [], `${wrong.length} element(s) with a comment that is not their VIP's name`);
  t.true(els.every((e) => typeof e.packets === 'number'), 'every element has a counter');
  t.deepEqual(addressesOf(els, '198.18.100.5'), SCENARIO.addresses!['5']);
  t.deepEqual(addressesOf(els, vips.get('api.push.apple.com')!), ['203.0.113.90', '203.0.113.91']);

  const N = 7;
  const before = packetsOf(els, '198.18.100.5');
  const r = await lab.probe(['connect', '198.18.100.5', '5223', '--count', String(N)], 30_000) as { hellos: string[] };
  t.is(r.hellos.length, N);
  const after = packetsOf(await elements(lab), '198.18.100.5');
  t.is(after - before, N, `courier 5's elements counted ${after - before} for ${N} connections`);
});

interface Row { set: string; name: string; vip: string; state: string; addresses: string[]; connections: number }

function statusRows(stdout: string): Row[] {
  const doc = JSON.parse(stdout) as Record<string, unknown>;
  for (const v of Object.values(doc)) {
    if (Array.isArray(v) && v.length > 0 && v.every((r) => typeof r === 'object' && r !== null && 'set' in r && 'name' in r)) return v as Row[];
  }
  throw new Error(`status --json has no array of rows with "set" and "name": ${stdout.slice(0, 500)}`);
}

test.serial('status --json: a row per name with its set, VIP, state, addresses and connections', async (t) => {
  const { lab, config, vips } = t.context;
  const r = await cli(lab, config, 'status', '--json');
  t.is(r.exitCode, 0, r.stderr);
  const rows = statusRows(r.stdout);
  const byName = new Map(rows.map((x) => [x.name, x]));
  const els = await elements(lab);
  for (const name of EXACT) {
    const row = byName.get(name);
    t.truthy(row, `a row for ${name}`);
    t.like(row, { set: SET_OF[name], name, vip: vips.get(name), state: 'fresh' });
    t.deepEqual([...(row?.addresses ?? [])].sort(), serverOf(name), name);
    t.is(row?.connections, packetsOf(els, vips.get(name)!), `${name}: connections = its elements' counters`);
  }
  const c5 = byName.get('5-courier.push.apple.com');
  const c0 = byName.get('0-courier.push.apple.com');
  t.like(c5, { vip: '198.18.100.5', state: 'fresh' });
  t.like(c0, { vip: '198.18.100.254', state: 'fresh' });
  t.deepEqual([...(c5?.addresses ?? [])].sort(), SCENARIO.addresses!['5']);
  t.is(c5?.connections, packetsOf(els, '198.18.100.5'));
  t.true((c5?.connections ?? 0) >= 7 + 2, 'courier 5 was connected to at least 9 times in this file');
  t.is(c0?.set, c5?.set, 'couriers 0 and 5 are in one set');
  t.false(['sandbox', 'bag', 'provider', 'time'].includes(c5?.set ?? 'sandbox'), `the production set has its own id (${String(c5?.set)})`);
  t.like(byName.get('7-courier.sandbox.push.apple.com'), { set: 'sandbox', vip: '198.18.101.7', state: 'fresh' });
  t.deepEqual([...(byName.get('7-courier.sandbox.push.apple.com')?.addresses ?? [])].sort(), defaultSandboxAddresses(7));
});

test.serial('exact-name VIPs survive a restart with upstream silent: same VIPs in DNS and in the map (from state.json)', async (t) => {
  const { lab, config, vips } = t.context;
  const before = await elements(lab);
  await stopDaemon(t);
  const flush = await cli(lab, config, 'flush');
  t.is(flush.exitCode, 0, flush.stderr);
  t.is(await elements(lab), null, 'the table is gone: the map must come back from state.json');
  await lab.setScenario({ ...SCENARIO, mode: 'silent' });
  try {
    const from = lab.appleQueries().length;
    await startDaemon(t, config);
    const again = await untilReady(lab, EXACT);
    t.deepEqual(new Map([...again].sort()), new Map([...vips].sort()), 'every exact name has the VIP it had');
    const after = await elements(lab);
    for (const [name, vip] of vips) t.deepEqual(addressesOf(after, vip), addressesOf(before, vip), `${name}: last-known-good addresses at its VIP`);
    t.deepEqual(addressesOf(after, '198.18.100.5'), addressesOf(before, '198.18.100.5'));
    await hello(t, vips.get('api.push.apple.com')!, 2197, serverOf('api.push.apple.com'), 'api.push.apple.com on last-known-good');
    await until('the daemon to ask upstream (which stays silent)', 10_000, async () => (lab.appleQueries().length > from ? true : undefined));
    t.pass();
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('adding and removing a name never moves another name\'s VIP; the new name takes the lowest free one', async (t) => {
  const { lab, config, vips } = t.context;
  const original = await readFile(config, 'utf8');
  const changed = join(lab.dir, 'config-changed.json');
  const bag = BAG.filter((n) => n !== 'init.sandbox.push.apple.com');
  await writeFile(changed, JSON.stringify({ ...JSON.parse(original), nameSets: nameSets(bag, ['time.apple.com', 'time-ios.apple.com']) }, null, 1));
  await stopDaemon(t);
  await startDaemon(t, changed);
  const now = await untilReady(lab, [...bag, ...PROVIDER, 'time.apple.com', 'time-ios.apple.com']);
  for (const name of [...bag, ...PROVIDER, 'time.apple.com']) t.is(now.get(name), vips.get(name), `${name} keeps its VIP`);
  t.is(now.get('time-ios.apple.com'), vips.get('init.sandbox.push.apple.com'), 'the new name takes the freed (lowest free) address');
  const gone = await dig(lab, 'init.sandbox.push.apple.com');
  t.true(gone.status === 'NOERROR' && gone.answers.some((a) => a.type === 'A' && a.data === '203.0.113.83'), `a name no set has any more is forwarded: ${gone.raw}`);
  await stopDaemon(t);
  await startDaemon(t, config);
  await untilReady(lab, EXACT);
});

test.serial('a /23 courier prefix: courier 300 → 198.18.105.44, courier 0 → 198.18.105.254, end to end', async (t) => {
  const { lab } = t.context;
  await stopDaemon(t);
  t.is((await cli(lab, t.context.config, 'flush')).exitCode, 0);
  await lab.setScenario({ ...SCENARIO, live: 300, addresses: { ...SCENARIO.addresses, '300': ['203.0.113.44'], '255': ['203.0.113.46'] } });
  const config23 = join(lab.dir, 'config-23.json');
  await writeFile(config23, JSON.stringify(baseConfig(lab, { vipPrefix: '198.18.104.0/23', couriers: { first: 0, last: 300 }, stateDir: join(lab.dir, 'state-23') }), null, 1));
  t.context.config = config23;
  await startDaemon(t, config23);
  await until('courier 300 mapped at 198.18.105.44', 30_000, async () => (addressesOf(await elements(lab), '198.18.105.44').length > 0 ? true : undefined));
  const expect: [string, string][] = [
    ['300-courier.push.apple.com', '198.18.105.44'],
    ['0-courier.push.apple.com', '198.18.105.254'],
    ['255-courier.push.apple.com', '198.18.104.255'],
    ['256-courier.push.apple.com', '198.18.105.0'],
    ['5-courier.push.apple.com', '198.18.104.5'],
  ];
  for (const [name, vip] of expect) t.is(onlyA(await dig(lab, name)), vip, name);
  const els = await elements(lab);
  t.deepEqual(addressesOf(els, '198.18.105.44'), ['203.0.113.44']);
  t.deepEqual(addressesOf(els, '198.18.105.254'), ['203.0.113.45']);
  t.true((els ?? []).filter((e) => e.vip === '198.18.105.44').every((e) => e.comment === '300-courier.push.apple.com'));
  await hello(t, '198.18.105.44', 5223, ['203.0.113.44'], 'courier 300');
  await hello(t, '198.18.105.254', 443, ['203.0.113.45'], 'courier 0');
  await hello(t, '198.18.104.255', 5223, ['203.0.113.46'], 'courier 255 (.255 of the first half is a host address in a /23)');
  const from = lab.appleQueries().length;
  const nx = await dig(lab, '301-courier.push.apple.com');
  t.is(nx.status, 'NXDOMAIN', nx.raw);
  await sleep(300);
  t.false(lab.appleQueries().slice(from).some((q) => q.q === '301-courier.push.apple.com'), '301 (outside 0..300) is not forwarded');
});
