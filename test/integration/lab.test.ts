// Proves the lab itself: plain routing client → router → upstream, the fake Apple DNS and the
// courier servers. No apns-proxy involved. Run with: npx ava --serial dist/test/integration/lab.test.js
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createLab, courierChain, defaultCourierAddresses, fixturePath, nodeBin, type Lab } from '../../lab/lab.js';

let lab: Lab | undefined;
let createMs = 0;

test.before(async () => {
  const start = performance.now();
  lab = await createLab();
  createMs = Math.round(performance.now() - start);
});

// ALWAYS: the namespaces go away even when a test failed
test.after.always(async () => {
  await lab?.destroy();
});

function L(): Lab {
  if (!lab) throw new Error('lab not created');
  return lab;
}

interface DigRecord { name: string; ttl: number; type: string; data: string }
interface DigResult { status: string | undefined; answer: DigRecord[]; authority: DigRecord[]; exitCode: number; raw: string }

/** Parses dig / kdig default output into sections. */
function parseDig(raw: string, exitCode: number): DigResult {
  const res: DigResult = { status: /status: ([A-Z]+)/.exec(raw)?.[1], answer: [], authority: [], exitCode, raw };
  let section: 'answer' | 'authority' | undefined;
  for (const line of raw.split('\n')) {
    if (/^;; ANSWER SECTION/.test(line)) { section = 'answer'; continue; }
    if (/^;; AUTHORITY SECTION/.test(line)) { section = 'authority'; continue; }
    if (/^;; [A-Z ]+SECTION/.test(line) || line.trim() === '') { section = undefined; continue; }
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.+)$/.exec(line);
    if (m && section) res[section].push({ name: m[1]!, ttl: Number(m[2]), type: m[3]!, data: m[4]!.trim() });
  }
  return res;
}

async function dig(args: string[], timeoutMs = 15000): Promise<DigResult> {
  const r = await L().exec(L().ns.client, 'dig', ['@203.0.113.53', '+norec', '+time=2', '+tries=1', ...args], { reject: false, timeoutMs });
  return parseDig(r.stdout, r.exitCode);
}

async function kdig(args: string[], timeoutMs = 15000): Promise<DigResult> {
  const r = await L().exec(L().ns.client, 'kdig', ['@203.0.113.53', '+norec', '+time=2', '+retry=0', ...args], { reject: false, timeoutMs });
  return parseDig(r.stdout, r.exitCode);
}

function expectChain(t: import('ava').ExecutionContext, r: DigResult, n: number, addresses: string[], asked = `${n}-courier.push.apple.com`): void {
  const [, mid, fin] = courierChain(n);
  t.is(r.status, 'NOERROR', r.raw);
  const cnames = r.answer.filter((a) => a.type === 'CNAME');
  t.deepEqual(cnames.map((c) => [c.name, c.data]), [[`${asked}.`, `${mid}.`], [`${mid}.`, `${fin}.`]], r.raw);
  const as = r.answer.filter((a) => a.type === 'A');
  t.true(as.every((a) => a.name === `${fin}.`), r.raw);
  t.deepEqual(as.map((a) => a.data).sort(), [...addresses].sort(), r.raw);
}

test.serial('createLab builds the topology', async (t) => {
  const l = L();
  t.log(`createLab took ${createMs} ms (base ${l.base})`);
  t.regex(l.base, /^apx\d+-[0-9a-f]{4}$/);
  const names = (await l.exec('', 'ip', ['netns', 'list'])).stdout;
  for (const n of Object.values(l.ns)) t.true(names.includes(n), `${n} in ${names}`);
  t.true(existsSync(l.dir));

  const up = await l.exec(l.ns.upstream, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'u0']);
  const addrs = [...up.stdout.matchAll(/inet (\S+)/g)].map((m) => m[1]);
  t.is(addrs.length, 42, up.stdout);
  for (const a of ['203.0.113.53/24', '203.0.113.10/24', '203.0.113.49/24', '198.51.100.10/24']) t.true(addrs.includes(a), a);

  const fwd = await l.exec(l.ns.router, 'sysctl', ['-n', 'net.ipv4.ip_forward']);
  t.is(fwd.stdout.trim(), '1');
  const rules = await l.exec(l.ns.router, 'nft', ['list', 'ruleset']);
  t.is(rules.stdout.trim(), '', 'the lab adds no NAT or firewall');
  const routes = await l.exec(l.ns.client, 'ip', ['-4', 'route', 'show', 'default']);
  t.regex(routes.stdout, /default via 192\.0\.2\.1 dev c0/);
});

test.serial('DNS over UDP: CNAME chain and default addresses', async (t) => {
  await L().setScenario({});
  const r = await dig(['5-courier.push.apple.com', 'A']);
  expectChain(t, r, 5, defaultCourierAddresses(5));
  t.deepEqual(defaultCourierAddresses(5), ['203.0.113.20', '203.0.113.21']);
  t.true(r.answer.every((a) => a.ttl === 60));
  t.regex(r.raw, /flags: qr aa;/);
});

test.serial('DNS over TCP (kdig and dig +tcp), logged per transport', async (t) => {
  await L().setScenario({});
  const before = L().appleQueries().length;
  const k = await kdig(['+tcp', '5-courier.push.apple.com', 'A']);
  expectChain(t, k, 5, defaultCourierAddresses(5));
  const d = await dig(['+tcp', '12-courier.push.apple.com', 'A']);
  expectChain(t, d, 12, defaultCourierAddresses(12));
  const qs = L().appleQueries().slice(before);
  t.deepEqual(qs.map((q) => [q.q, q.type, q.transport]), [
    ['5-courier.push.apple.com', 'A', 'tcp'],
    ['12-courier.push.apple.com', 'A', 'tcp'],
  ]);
  t.regex(qs[0]!.from ?? '', /^192\.0\.2\.2:\d+$/, 'plain routing: the fake sees the client address');
});

test.serial('names are case-insensitive and the question is echoed as asked', async (t) => {
  await L().setScenario({});
  const r = await dig(['5-COURIER.Push.Apple.COM', 'A']);
  expectChain(t, r, 5, defaultCourierAddresses(5), '5-COURIER.Push.Apple.COM');
  t.regex(r.raw, /;5-COURIER\.Push\.Apple\.COM\.\s+IN\s+A/);
  // the chain's inner names answer too (a resolver may follow them itself)
  const mid = await dig([courierChain(5)[1], 'A']);
  t.is(mid.status, 'NOERROR');
  t.deepEqual(mid.answer.filter((a) => a.type === 'A').map((a) => a.data).sort(), defaultCourierAddresses(5));
});

test.serial('couriers above live are NXDOMAIN with an SOA; AAAA is NODATA; other names NXDOMAIN', async (t) => {
  await L().setScenario({});
  const nx = await dig(['51-courier.push.apple.com', 'A']);
  t.is(nx.status, 'NXDOMAIN', nx.raw);
  t.is(nx.answer.length, 0);
  t.is(nx.authority[0]?.type, 'SOA', nx.raw);
  t.is(nx.authority[0]?.name, 'push.apple.com.');

  const aaaa = await dig(['5-courier.push.apple.com', 'AAAA']);
  t.is(aaaa.status, 'NOERROR', aaaa.raw);
  t.is(aaaa.answer.length, 0, aaaa.raw);
  t.is(aaaa.authority[0]?.type, 'SOA');

  for (const name of ['05-courier.push.apple.com', 'evil-courier.push.apple.com', 'www.example.test']) {
    const r = await dig([name, 'A']);
    t.is(r.status, 'NXDOMAIN', `${name}: ${r.raw}`);
  }
});

test.serial('scenario: per-courier overrides, records, live count', async (t) => {
  await L().setScenario({
    live: 20,
    addresses: { '5': ['203.0.113.40', '203.0.113.41', '203.0.113.42'], '6': ['198.51.100.10'] },
    perCourier: { '7': 'servfail', '8': 'nxdomain', '9': 'refused' },
    ttl: 5,
    records: { 'forward.example.test': ['198.51.100.77'] },
  });
  const five = await dig(['5-courier.push.apple.com', 'A']);
  expectChain(t, five, 5, ['203.0.113.40', '203.0.113.41', '203.0.113.42']);
  t.true(five.answer.every((a) => a.ttl === 5));
  expectChain(t, await dig(['6-courier.push.apple.com', 'A']), 6, ['198.51.100.10']);
  t.is((await dig(['7-courier.push.apple.com', 'A'])).status, 'SERVFAIL');
  t.is((await dig(['8-courier.push.apple.com', 'A'])).status, 'NXDOMAIN');
  t.is((await dig(['9-courier.push.apple.com', 'A'])).status, 'REFUSED');
  t.is((await dig(['21-courier.push.apple.com', 'A'])).status, 'NXDOMAIN');
  const fwd = await dig(['forward.example.test', 'A']);
  t.is(fwd.status, 'NOERROR');
  t.deepEqual(fwd.answer.map((a) => a.data), ['198.51.100.77']);

  // back to the default: the override is gone
  await L().setScenario({});
  expectChain(t, await dig(['5-courier.push.apple.com', 'A']), 5, defaultCourierAddresses(5));
});

test.serial('scenario: a bad scenario is rejected and the old one stays', async (t) => {
  await L().setScenario({ live: 3 });
  await t.throwsAsync(L().setScenario({ mode: 'bogus' as never }), { message: /rejected the scenario: .*mode/ });
  t.is((await dig(['4-courier.push.apple.com', 'A'])).status, 'NXDOMAIN');
  await L().setScenario({});
});

test.serial('scenario: silent never answers, servfail, slow answers late', async (t) => {
  await L().setScenario({ mode: 'silent' });
  const before = L().appleQueries().length;
  const silent = await dig(['+time=1', '5-courier.push.apple.com', 'A']);
  t.is(silent.exitCode, 9, `dig should time out: ${silent.raw}`);
  t.regex(silent.raw, /timed out|no servers could be reached/);
  t.true(L().appleQueries().length > before, 'silent queries are still logged');

  await L().setScenario({ mode: 'servfail' });
  t.is((await dig(['5-courier.push.apple.com', 'A'])).status, 'SERVFAIL');

  await L().setScenario({ mode: 'slow', slowMs: 1200 });
  const start = performance.now();
  const slow = await dig(['+time=3', '5-courier.push.apple.com', 'A']);
  const ms = performance.now() - start;
  expectChain(t, slow, 5, defaultCourierAddresses(5));
  t.true(ms >= 1100, `slow answer took ${Math.round(ms)} ms`);

  await L().setScenario({ perCourier: { '7': 'silent' } });
  t.is((await dig(['+time=1', '7-courier.push.apple.com', 'A'])).exitCode, 9);
  t.is((await dig(['6-courier.push.apple.com', 'A'])).status, 'NOERROR');
  await L().setScenario({});
});

test.serial('probe connect reaches a courier through plain routing', async (t) => {
  const l = L();
  const before = l.courierConnections().length;
  const r = await l.probe(['connect', '203.0.113.12', '5223']);
  t.deepEqual(r.hellos, ['203.0.113.12:5223']);
  t.deepEqual(r.errors, []);
  const conns = l.courierConnections().slice(before);
  t.is(conns.length, 1);
  t.is(conns[0]!.conn, '203.0.113.12:5223');
  t.regex(conns[0]!.peer, /^192\.0\.2\.2:\d+$/);

  const many = await l.probe(['connect', '203.0.113.49', '443', '--count', '5']);
  t.deepEqual(many.hellos, Array(5).fill('203.0.113.49:443'));

  const outside = await l.probe(['connect', '198.51.100.10', '5223']);
  t.deepEqual(outside.hellos, ['198.51.100.10:5223']);
});

test.serial('probe reports refused connections and timeouts quickly', async (t) => {
  const refused = await L().probe(['connect', '203.0.113.12', '5224', '--count', '2']);
  t.deepEqual(refused.hellos, []);
  t.is(refused.errors.length, 2);
  for (const e of refused.errors) {
    t.is(e.code, 'ECONNREFUSED');
    t.true(e.ms < 1000, `refused after ${e.ms} ms`);
  }
  // 192.0.2.99 does not exist on the client link: no ARP answer → timeout
  const timeout = await L().probe(['connect', '192.0.2.99', '5223', '--timeout-ms', '500']);
  t.is(timeout.errors[0]?.code, 'TIMEOUT');
  t.true(timeout.errors[0].ms >= 450 && timeout.errors[0].ms < 2000);
});

test.serial('probe hold echoes lines on an established connection', async (t) => {
  const l = L();
  const p = l.spawn(l.ns.client, nodeBin(), [fixturePath('probe.js'), 'hold', '203.0.113.30', '443']);
  try {
    t.is(JSON.parse(await p.waitForLine(/"hello"/, 5000)).hello, '203.0.113.30:443');
    for (const word of ['one', 'two', 'three']) {
      p.write(`${word}\n`);
      t.deepEqual(JSON.parse(await p.waitForLine(new RegExp(`"echo":"${word}"`), 5000)), { echo: word });
    }
    p.endInput();
    t.is(await p.exited, 0);
  } finally {
    p.kill('SIGKILL');
  }
});

test.serial('10 MB transfer through plain routing matches', async (t) => {
  const r = await L().probe(['transfer', '203.0.113.20', '5223', '--bytes', String(10 * 1024 * 1024)], 60000);
  t.is(r.hello, '203.0.113.20:5223');
  t.is(r.sent, 10485760);
  t.is(r.received, 10485760);
  t.true(r.sha256Match);
  t.log(`10 MB echo in ${r.ms} ms`);
});

test.serial('courier-server answers SIGUSR2 with its counters', async (t) => {
  const cs = L().courierServer;
  const from = cs.lines.length;
  cs.kill('SIGUSR2');
  const stats = JSON.parse(await cs.waitForLine(/^\{"active":/, 3000, from)) as { active: number; total: number };
  t.is(stats.active, 0);
  t.true(stats.total >= 8);
});

test.serial('createLab sweeps stale namespaces; destroy removes everything and is idempotent', async (t) => {
  // a dead pid: a process that already exited
  const dead = spawnSync(nodeBin(), ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  const deadPid = Number(dead.stdout.trim());
  const stale = `apx${deadPid}-beef-c`;
  spawnSync('ip', ['netns', 'add', stale]);
  const second = await createLab({ courierPorts: [5223] });
  try {
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    t.false(list.includes(stale), 'stale namespace swept');
    t.true(list.includes(L().ns.router), 'a live lab of this process is kept');
    t.not(second.base, L().base);
  } finally {
    spawnSync('ip', ['netns', 'del', stale], { stdio: 'ignore' });
    const pids = [second.fakeApple.pid, second.courierServer.pid];
    await second.destroy();
    await second.destroy();
    const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    for (const n of Object.values(second.ns)) t.false(list.includes(n), `${n} deleted`);
    t.false(existsSync(second.dir));
    for (const pid of pids) t.throws(() => process.kill(pid, 0), undefined, `pid ${pid} gone`);
  }
});
