// The DNS server end to end: the real `apns-proxy run` in the router namespace serves DNS on 192.0.2.1:53;
// dig and kdig in the client namespace get VIPs over UDP and TCP, other names are forwarded to the
// simulated Apple DNS and relayed, a silent upstream gives SERVFAIL, clients outside the ACL get
// REFUSED over UDP and are closed at accept over TCP. Needs root; fails (never skips) without.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import anyTest, { type TestFn } from 'ava';
import { type Lab, type LabProcess, createLab, distPath, nodeBin } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; config: string; daemon: LabProcess }>;
const CLI = distPath('src/cli.js');

const SCENARIO = { live: 50, records: { 'forward.example.test': ['198.51.100.77'] } };
// 192.0.2.3 is a second client address outside dns.allowClients (192.0.2.2/32).
const OUTSIDER = '192.0.2.3';

test.before(async (t) => {
  const lab = await createLab({ scenario: SCENARIO });
  await lab.exec(lab.ns.client, 'ip', ['addr', 'add', `${OUTSIDER}/24`, 'dev', 'c0']);
  const config = join(lab.dir, 'config.json');
  await writeFile(config, JSON.stringify({
    vipPrefix: '198.18.100.0/24',
    couriers: { first: 1, last: 60 },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    resolver: { timeoutMs: 300 },
    dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.2/32', '127.0.0.0/8'], forwardTimeoutMs: 500 },
    refresh: { schedule: '0 0 1 1 *' },  // once a year: only start-up and requested refreshes
    fallback: { enabled: false },
    stateDir: join(lab.dir, 'state'),
    log: { level: 'debug' },
  }));
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', config]);
  await daemon.waitForLine(/dns: serving on 192\.0\.2\.1:53 \(udp\+tcp\)/, 15_000);
  await daemon.waitForLine(/refresh: 50 fresh, 0 stale, 10 absent/, 15_000);
  t.context = { lab, config, daemon };
});

test.after.always(async (t) => {
  t.context.daemon?.kill('SIGTERM');
  await t.context.daemon?.exited;
  await t.context.lab?.destroy();
});

async function dig(t: { context: { lab: Lab } }, ...args: string[]) {
  const r = await t.context.lab.exec(t.context.lab.ns.client, 'dig', ['@192.0.2.1', '+tries=1', '+time=3', ...args], { reject: false, timeoutMs: 15_000 });
  const status = /status: (\w+)/.exec(r.stdout)?.[1];
  const answers = r.stdout.split('\n').filter((l) => /^[^;\s].*\sIN\s+A\s/.test(l)).map((l) => l.split(/\s+/));
  return { ...r, status, answers };
}

test.serial('UDP: dig gets PREFIX.N for a courier, name echoed as asked, TTL dns.ttl', async (t) => {
  const r = await dig(t, '5-CoUrIeR.push.apple.COM', 'A');
  t.is(r.status, 'NOERROR', r.stdout);
  t.deepEqual(r.answers, [['5-CoUrIeR.push.apple.COM.', '30', 'IN', 'A', '198.18.100.5']]);
  t.regex(r.stdout, /flags: qr aa rd ra;/);
});

test.serial('TCP: dig +tcp and kdig with several queries on one connection', async (t) => {
  const r = await dig(t, '+tcp', '7-courier.push.apple.com', 'A');
  t.is(r.status, 'NOERROR', r.stdout);
  t.deepEqual(r.answers.map((a) => a[4]), ['198.18.100.7']);
  const k = await t.context.lab.exec(t.context.lab.ns.client, 'kdig',
    ['@192.0.2.1', '+tcp', '+keepopen', '+short', '8-courier.push.apple.com', 'A', '9-courier.push.apple.com', 'A', '10-courier.push.apple.com', 'A'], { timeoutMs: 15_000 });
  t.deepEqual(k.stdout.trim().split('\n'), ['198.18.100.8', '198.18.100.9', '198.18.100.10']);
  t.notRegex(k.stderr, /mismatch|failed/i);
});

test.serial('NXDOMAIN courier, AAAA and HTTPS for a courier: no records, SOA in authority', async (t) => {
  const nx = await dig(t, '55-courier.push.apple.com', 'A');
  t.is(nx.status, 'NXDOMAIN');
  t.regex(nx.stdout, /AUTHORITY SECTION:\npush\.apple\.com\.\s+30\s+IN\s+SOA\s+localhost\. nobody\.invalid\./);
  for (const type of ['AAAA', 'HTTPS']) {
    const r = await dig(t, '5-courier.push.apple.com', type);
    t.is(r.status, 'NOERROR', type);
    t.regex(r.stdout, /ANSWER: 0, AUTHORITY: 1/, type);
  }
});

test.serial('other names are forwarded to upstream DNS and relayed', async (t) => {
  const { lab } = t.context;
  const before = lab.appleQueries().length;
  const r = await dig(t, 'Forward.Example.TEST', 'A');
  t.is(r.status, 'NOERROR', r.stdout);
  t.deepEqual(r.answers, [['Forward.Example.TEST.', '60', 'IN', 'A', '198.51.100.77']]);
  const asked = lab.appleQueries().slice(before);
  t.true(asked.some((q) => q.q === 'forward.example.test' && q.asked === 'Forward.Example.TEST' && q.from?.startsWith('203.0.113.1:')), JSON.stringify(asked));
  const evil = await dig(t, '+tcp', 'evil-courier.push.apple.com', 'A');
  t.is(evil.status, 'NXDOMAIN', 'not a courier name: upstream decides');
  t.true(lab.appleQueries().some((q) => q.q === 'evil-courier.push.apple.com'));
});

test.serial('upstream silent: forwarded names get SERVFAIL within the timeout, couriers still answer', async (t) => {
  const { lab } = t.context;
  await lab.setScenario({ ...SCENARIO, mode: 'silent' });
  try {
    const started = performance.now();
    const r = await dig(t, 'forward.example.test', 'A');
    const ms = performance.now() - started;
    t.is(r.status, 'SERVFAIL', r.stdout);
    t.true(ms < 2500, `${Math.round(ms)} ms`);
    const c = await dig(t, '6-courier.push.apple.com', 'A');
    t.deepEqual(c.answers.map((a) => a[4]), ['198.18.100.6']);
  } finally {
    await lab.setScenario(SCENARIO);
  }
});

test.serial('a client outside dns.allowClients gets REFUSED over UDP; over TCP it is closed at accept', async (t) => {
  const udp = await dig(t, '-b', OUTSIDER, '+notcp', '5-courier.push.apple.com', 'A');
  t.is(udp.status, 'REFUSED', udp.stdout);
  t.deepEqual(udp.answers, []);
  const tcp = await dig(t, '-b', OUTSIDER, '+tcp', '5-courier.push.apple.com', 'A');
  t.is(tcp.status, undefined, tcp.stdout);
  t.deepEqual(tcp.answers, []);
  t.regex(tcp.stdout, /communications error to 192\.0\.2\.1#53: (connection reset|end of file)/);
  const before = t.context.lab.appleQueries().length;
  t.is((await dig(t, '-b', OUTSIDER, 'forward.example.test', 'A')).status, 'REFUSED');
  t.is(t.context.lab.appleQueries().length, before, 'nothing forwarded for a refused client');
});

test.serial('a new snapshot is served at once: a courier that appears stops being NXDOMAIN', async (t) => {
  const { lab, config } = t.context;
  t.is((await dig(t, '52-courier.push.apple.com', 'A')).status, 'NXDOMAIN');
  await lab.setScenario({ ...SCENARIO, live: 52 });
  try {
    const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', config], { reject: false, timeoutMs: 30_000 });
    t.regex(r.stdout, /52 fresh/, r.stderr);
    t.deepEqual((await dig(t, '52-courier.push.apple.com', 'A')).answers.map((a) => a[4]), ['198.18.100.52']);
  } finally {
    await lab.setScenario(SCENARIO);
    await lab.exec(lab.ns.router, nodeBin(), [CLI, 'refresh', '--config', config], { reject: false, timeoutMs: 30_000 });
  }
});

test.serial('SIGHUP: a new dns.ttl is served after the reload', async (t) => {
  const { config, daemon } = t.context;
  const original = await readFile(config, 'utf8');
  try {
    await writeFile(config, JSON.stringify({ ...JSON.parse(original), dns: { ...JSON.parse(original).dns, ttl: 7 } }));
    const from = daemon.lines.length;
    daemon.kill('SIGHUP');
    await daemon.waitForLine(/refresh: \d+ fresh/, 15_000, from);
    t.deepEqual((await dig(t, '5-courier.push.apple.com', 'A')).answers.map((a) => a[1]), ['7']);
  } finally {
    await writeFile(config, original);
    const from = daemon.lines.length;
    daemon.kill('SIGHUP');
    await daemon.waitForLine(/refresh: \d+ fresh/, 15_000, from);
  }
});

test.serial('a second daemon on the same DNS address fails at start with a clear E_LISTEN error', async (t) => {
  const { lab, config } = t.context;
  const other = join(lab.dir, 'other.json');
  const original = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  await writeFile(other, JSON.stringify({ ...original, stateDir: join(lab.dir, 'state-other'), nft: { table: 'apns_dns_other' } }));
  try {
    const r = await lab.exec(lab.ns.router, nodeBin(), [CLI, 'run', '--config', other], { reject: false, timeoutMs: 30_000 });
    t.is(r.exitCode, 1);
    t.regex(r.stderr, /apns-proxy: dns\.listen 192\.0\.2\.1:53: cannot bind udp: address already in use/);
  } finally {
    await lab.exec(lab.ns.router, 'nft', ['delete', 'table', 'inet', 'apns_dns_other'], { reject: false });
  }
  t.is((await dig(t, '5-courier.push.apple.com', 'A')).status, 'NOERROR', 'the first daemon still serves');
});

// The daemon above logs at debug, where every datagram goes through Node (to be logged): a second
// one at info, on another port, answers couriers on the native UDP fast path.
test.serial('native UDP fast path (log.level info): courier answers natively, the rest through Node', async (t) => {
  const { lab, config } = t.context;
  const fast = join(lab.dir, 'fast.json');
  const original = JSON.parse(await readFile(config, 'utf8')) as { dns: Record<string, unknown> };
  await writeFile(fast, JSON.stringify({
    ...original, dns: { ...original.dns, listen: ['192.0.2.1:5353'] }, stateDir: join(lab.dir, 'state-fast'),
    nft: { table: 'apns_dns_fast' }, metrics: { listen: [] }, log: { level: 'info' },
  }));
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [CLI, 'run', '--config', fast]);
  try {
    await daemon.waitForLine(/dns: udp 192\.0\.2\.1:5353 on the UDP fast path \(a thread per socket answers courier queries, the rest goes to node\)/, 15_000);
    await daemon.waitForLine(/refresh: 50 fresh, 0 stale, 10 absent/, 15_000);
    const a = await dig(t, '-p', '5353', '5-CoUrIeR.push.apple.COM', 'A');
    t.is(a.status, 'NOERROR', a.stdout);
    t.deepEqual(a.answers, [['5-CoUrIeR.push.apple.COM.', '30', 'IN', 'A', '198.18.100.5']]);
    t.regex(a.stdout, /flags: qr aa rd ra;/);
    t.regex(a.stdout, /EDNS: version: 0, flags:; udp: 1232/, 'dig sends EDNS with a cookie: answered with our OPT');
    const plain = await dig(t, '-p', '5353', '+noedns', '6-courier.push.apple.com', 'A');
    t.deepEqual(plain.answers.map((x) => x[4]), ['198.18.100.6']);
    t.notRegex(plain.stdout, /OPT PSEUDOSECTION/);
    const aaaa = await dig(t, '-p', '5353', '5-courier.push.apple.com', 'AAAA');
    t.regex(aaaa.stdout, /status: NOERROR.*\n.*ANSWER: 0, AUTHORITY: 1/);
    t.is((await dig(t, '-p', '5353', '55-courier.push.apple.com', 'A')).status, 'NXDOMAIN');
    t.is((await dig(t, '-p', '5353', '-b', OUTSIDER, '5-courier.push.apple.com', 'A')).status, 'REFUSED', 'outside the ACL: Node refuses');
    const fwd = await dig(t, '-p', '5353', 'forward.example.test', 'A');
    t.deepEqual(fwd.answers.map((x) => x[4]), ['198.51.100.77'], 'other names: Node forwards');
    daemon.kill('SIGTERM');
    t.is(await daemon.exited, 0, daemon.stderr());
  } finally {
    daemon.kill('SIGKILL');
    await daemon.exited;
    await lab.exec(lab.ns.router, 'nft', ['delete', 'table', 'inet', 'apns_dns_fast'], { reject: false });
  }
});

test.serial('debug log: queries are logged; SIGTERM stops the server', async (t) => {
  const { daemon } = t.context;
  t.true(daemon.lines.some((l) => /debug: dns: 192\.0\.2\.2 udp 5-CoUrIeR\.push\.apple\.COM A: courier 198\.18\.100\.5/.test(l)));
  t.true(daemon.lines.some((l) => /debug: dns: 192\.0\.2\.3 (udp|tcp) 5-courier\.push\.apple\.com A: refused/.test(l)));
  daemon.kill('SIGTERM');
  t.is(await daemon.exited, 0, daemon.stderr());
  const r = await dig(t, '+time=1', '5-courier.push.apple.com', 'A');
  t.is(r.status, undefined, 'nothing answers once stopped');
});
