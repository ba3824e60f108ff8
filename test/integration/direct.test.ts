// Direct courier addresses (issue 12 point 4), end to end in the lab: the real `apns-proxy run` in
// the router namespace, a device in the client namespace that connects to upstream addresses
// directly (not to a VIP), the simulated couriers upstream. The lab's router forwards and routes
// 203.0.113.0/24 without any NAT or firewall of its own, so without our forward chain every one of
// these connections would reach a server, un-NATed: each assertion below can fail.
//
// Couriers 1..5 only (default addresses: N → 203.0.113.(10 + 2N), +1), so 203.0.113.12..21 are
// mapped and 203.0.113.49 (a simulated courier server, inside allowedUpstreamNets) is mapped by no
// name: a "dead" Apple address. Needs root; fails (never skips) without.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import anyTest, { type TestFn } from 'ava';
import { type Lab, type LabProcess, createLab, distPath, nodeBin, sleep } from '../../lab/lab.js';

interface Ctx { lab: Lab; config: string; daemon: LabProcess }
const test = anyTest as TestFn<Ctx>;
const CLI = distPath('src/cli.js');
const ROUTER_UPSTREAM = '203.0.113.1';  // r1: what masquerade makes of the device's source
const DEVICE = '192.0.2.2';
const DEAD = '203.0.113.49';

interface Probe { hellos: string[]; errors: { code: string; ms: number }[]; locals: string[]; ms: number }

async function connect(lab: Lab, host: string, port: number, timeoutMs = 3000): Promise<Probe> {
  return await lab.probe(['connect', host, String(port), '--timeout-ms', String(timeoutMs)], timeoutMs + 12_000) as Probe;
}

/** The simulated server's log line for the connection the probe just made (by its address and port). */
async function seenBy(lab: Lab, from: number, conn: string): Promise<{ conn: string; peer: string } | undefined> {
  for (let i = 0; i < 20; i++) {
    const hit = lab.courierConnections().slice(from).find((c) => c.conn === conn);
    if (hit) return hit;
    await sleep(100);
  }
  return undefined;
}

async function forwardChain(lab: Lab): Promise<string> {
  const r = await lab.exec(lab.ns.router, 'nft', ['list', 'chain', 'inet', 'apns_proxy', 'forward'], { reject: false, timeoutMs: 10_000 });
  return r.stdout;
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

test.before(async (t) => {
  const lab = await createLab();
  const config = join(lab.dir, 'config.json');
  await writeFile(config, JSON.stringify({
    vipPrefix: '198.18.100.0/24',
    ports: [5223, 443],
    couriers: { first: 1, last: 5 },
    nameSets: { sandbox: { enabled: false }, bag: { enabled: false }, provider: { enabled: false } },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    resolver: { timeoutMs: 300 },
    dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24', '127.0.0.0/8'] },
    refresh: { schedule: '0 0 1 1 *' },  // once a year: only start-up and requested refreshes
    fallback: { enabled: false },         // every connection that works went through the kernel
    stateDir: join(lab.dir, 'state'),
    log: { level: 'debug' },
  }, null, 1));
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  t.context = { lab, config, daemon };
  await Promise.race([
    daemon.waitForLine(/refresh: 5 fresh, 0 stale, 0 absent; (full|delta) sync/, 30_000),
    daemon.exited.then((code) => { throw new Error(`apns-proxy run exited ${String(code)}:\n${daemon.stderr().slice(-3000)}`); }),
  ]);
});

test.after.always(async (t) => {
  const d = t.context.daemon;
  if (d) {
    d.kill('SIGTERM');
    await Promise.race([d.exited, sleep(5000)]);
    d.kill('SIGKILL');
  }
  await t.context.lab?.destroy();
});

test.serial('a direct connection to a live courier address reaches its server, source-NATed to the router', async (t) => {
  const { lab } = t.context;
  for (const [host, port] of [['203.0.113.12', 5223], ['203.0.113.21', 443]] as const) {
    const from = lab.courierConnections().length;
    const r = await connect(lab, host, port);
    t.deepEqual(r.hellos, [`${host}:${port}`], `${host}:${port}: ${JSON.stringify(r)}`);
    const seen = await seenBy(lab, from, `${host}:${port}`);
    t.truthy(seen, `the server at ${host}:${port} logged the connection`);
    t.is(seen?.peer.split(':')[0], ROUTER_UPSTREAM, `${host}:${port}: the courier sees the router, not the device (${seen?.peer})`);
  }
  // the VIP path is unchanged: courier 5's VIP reaches one of its addresses
  const vip = await connect(lab, '198.18.100.5', 5223);
  t.true(['203.0.113.20:5223', '203.0.113.21:5223'].includes(vip.hellos[0] ?? ''), JSON.stringify(vip));
});

test.serial('a direct connection to an Apple address no name maps is reset on 5223 at once, and left alone on 443 by default', async (t) => {
  const { lab } = t.context;
  const from = lab.courierConnections().length;
  for (let i = 0; i < 3; i++) {
    const r = await connect(lab, DEAD, 5223);
    t.deepEqual(r.hellos, [], JSON.stringify(r));
    t.is(r.errors.length, 1);
    t.is(r.errors[0]?.code, 'ECONNREFUSED', `a TCP reset in answer to the SYN: ${JSON.stringify(r)}`);
    t.true(r.errors[0]!.ms < 100, `the reset arrived after ${r.errors[0]!.ms} ms (< 100 ms: no timeout)`);
  }
  await sleep(200);
  t.deepEqual(lab.courierConnections().slice(from).filter((c) => c.conn.startsWith(`${DEAD}:`)), [], 'the server never saw it');

  const r443 = await connect(lab, DEAD, 443);
  t.deepEqual(r443.hellos, [`${DEAD}:443`], `443 is not reset by default: ${JSON.stringify(r443)}`);
  const seen = await seenBy(lab, from, `${DEAD}:443`);
  t.is(seen?.peer.split(':')[0], DEVICE, 'and not ours: neither marked nor source-NATed');
});

test.serial('an address leaves the direct set with the mapping (element delta): then it is reset, the new one forwarded', async (t) => {
  const { lab, config } = t.context;
  await lab.setScenario({ addresses: { '5': ['203.0.113.40'] } });
  try {
    const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', config], { reject: false, timeoutMs: 30_000 });
    t.is(r.exitCode, 0, r.stderr);  // the daemon's refresh, answered once the kernel took it
    const old = await connect(lab, '203.0.113.20', 5223);
    t.is(old.errors[0]?.code, 'ECONNREFUSED', `courier 5's old address is no longer mapped: ${JSON.stringify(old)}`);
    const from = lab.courierConnections().length;
    const now = await connect(lab, '203.0.113.40', 5223);
    t.deepEqual(now.hellos, ['203.0.113.40:5223'], JSON.stringify(now));
    t.is((await seenBy(lab, from, '203.0.113.40:5223'))?.peer.split(':')[0], ROUTER_UPSTREAM);
  } finally {
    await lab.setScenario({});
    await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', config], { reject: false, timeoutMs: 30_000 });
  }
});

test.serial('direct.reset443 (SIGHUP): 443 to an unmapped Apple address is reset too; a mapped one still passes', async (t) => {
  const { lab, config, daemon } = t.context;
  const original = await readFile(config, 'utf8');
  t.notRegex(await forwardChain(lab), /dport 443 reject/);
  await writeFile(config, JSON.stringify({ ...JSON.parse(original), direct: { reset443: true } }));
  daemon.kill('SIGHUP');
  await until('the 443 reset rule in the kernel', 15_000, async () => /tcp dport 443 reject with tcp reset/.test(await forwardChain(lab)));
  const r = await connect(lab, DEAD, 443);
  t.deepEqual(r.hellos, [], JSON.stringify(r));
  t.is(r.errors[0]?.code, 'ECONNREFUSED', JSON.stringify(r));
  t.true(r.errors[0]!.ms < 100, `reset after ${r.errors[0]!.ms} ms`);
  const ok = await connect(lab, '203.0.113.12', 443);
  t.deepEqual(ok.hellos, ['203.0.113.12:443'], JSON.stringify(ok));
});
