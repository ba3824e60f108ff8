// The fallback listener and native relay on loopback: original destination and upstream are
// injected, the bytes really cross the relay thread.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import test from 'ava';
import type { Config } from '../../src/core/config.js';
import { memoryLogger } from '../helpers/memory-logger.js';
import { desiredMapping } from '../../src/sync/mapping.js';
import { DEFAULT_BACKLOG, type Fallback, listenBacklog, startFallback } from '../../src/fallback/listener.js';
import { loadRelayAddon } from '../../src/fallback/relay/index.js';
import { planTargets } from '../../src/fallback/plan.js';
import type { Resolution } from '../../src/dns/client/resolver.js';
import { FakeClock, fail, nx, ok, testConfig, byCourier } from '../helpers/fixtures.js';

const allowed = testConfig().allowedUpstreamNets;  // 203.0.113.0/24
const known = desiredMapping({ config: testConfig(), previous: new Map(), results: byCourier([[7, ok(['203.0.113.30', '203.0.113.31'])]]), now: 0 }).snapshot.couriers.get(7);

test('plan: resolved addresses, filtered and rotated', (t) => {
  const p = planTargets(ok(['203.0.113.12', '198.51.100.9', '203.0.113.11']), known, allowed, 1);
  t.deepEqual(p, { ok: true, addresses: ['203.0.113.12', '203.0.113.11'], source: 'resolved' });
});

test('plan: resolution failure falls back to last-known-good', (t) => {
  t.deepEqual(planTargets(fail(), known, allowed, 0), { ok: true, addresses: ['203.0.113.30', '203.0.113.31'], source: 'last-known-good' });
  t.deepEqual(planTargets(ok(['198.51.100.9']), known, allowed, 0), { ok: true, addresses: ['203.0.113.30', '203.0.113.31'], source: 'last-known-good' });
});

test('plan: NXDOMAIN, nothing allowed, no last-known-good → refuse with a reason', (t) => {
  t.deepEqual(planTargets(nx, known, allowed, 0), { ok: false, reason: 'courier does not exist (NXDOMAIN)' });
  t.deepEqual(planTargets(fail(), undefined, allowed, 0), { ok: false, reason: 'resolution failed (E_TIMEOUT) and no last-known-good' });
  t.deepEqual(planTargets(ok(['198.51.100.9']), undefined, allowed, 0), { ok: false, reason: 'no address inside allowedUpstreamNets' });
  t.deepEqual(planTargets({ kind: 'nodata', chain: [] }, known, allowed, 0), { ok: false, reason: 'courier has no A record' });
});

// ---- loopback harness -------------------------------------------------------------------

interface Courier { port: number; server: net.Server; accepted: number }

/** A courier that says HELLO first, then echoes; `close()` stops it. */
async function courier(): Promise<Courier> {
  const c: Courier = { port: 0, server: net.createServer((s) => {
    c.accepted++;
    s.on('error', () => undefined);
    s.write('HELLO\n');
    s.pipe(s);
  }), accepted: 0 };
  await new Promise<void>((r) => c.server.listen(0, '127.0.0.1', r));
  c.port = (c.server.address() as net.AddressInfo).port;
  return c;
}

async function fallback(cfg: Config, answer: (n: number) => Resolution, resolved: number[] = []): Promise<Fallback> {
  return startFallback({
    config: cfg,
    native: loadRelayAddon(),
    resolveNow: async (name) => answer(Number(/^(\d+)-/.exec(name)![1])),
    generation: () => undefined,
    onResolved: (name) => resolved.push(Number(/^(\d+)-/.exec(name)![1])),
    logger: memoryLogger(),
    listen: (server) => new Promise((r) => server.listen(0, '127.0.0.1', r)),
    originalDestination: () => ({ address: '198.18.100.7', port: cfg.ports[0]! }),
  });
}

function loopConfig(port: number, extra: Record<string, unknown> = {}): Config {
  return testConfig({ ports: [port], allowedUpstreamNets: ['127.0.0.0/8'], ...extra });
}

/** Dials without waiting: a reset may beat the connect callback on loopback; readAll sees it. */
async function connect(port: number): Promise<net.Socket> {
  return net.connect(port, '127.0.0.1');
}

function readAll(s: net.Socket): Promise<{ data: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => resolve({ data: Buffer.concat(chunks) }));
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ data: Buffer.concat(chunks), error: err.code ?? err.message }));
  });
}

test('relay: courier speaks first, 10 MB each way arrive intact, half-close passes through', async (t) => {
  const c = await courier();
  const resolved: number[] = [];
  const fb = await fallback(loopConfig(c.port), () => ok(['127.0.0.1']), resolved);
  try {
    const s = await connect(fb.address.port);
    const payload = randomBytes(10 * 1024 * 1024);
    const done = readAll(s);
    s.end(payload);  // half-close after sending: the echo must still come back in full
    const { data, error } = await done;
    t.is(error, undefined);
    t.is(data.subarray(0, 6).toString(), 'HELLO\n');
    t.is(data.length, 6 + payload.length);
    t.is(createHash('sha256').update(data.subarray(6)).digest('hex'), createHash('sha256').update(payload).digest('hex'));
    t.deepEqual(resolved, [7], 'a successful at-connect resolution asks for a refresh');
    const stats = fb.stats();
    t.is(stats.relayed, 1);
    t.is(stats.failed, 0);
  } finally {
    await fb.close();
    c.server.close();
  }
});

test('relay: many concurrent connections, each its own stream', async (t) => {
  const c = await courier();
  const fb = await fallback(loopConfig(c.port), () => ok(['127.0.0.1']));
  try {
    const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const s = await connect(fb.address.port);
      const done = readAll(s);
      s.end(`conn-${i}`);
      return (await done).data.toString();
    }));
    results.forEach((r, i) => t.is(r, `HELLO\nconn-${i}`));
    t.is(c.accepted, 50);
  } finally {
    await fb.close();
    c.server.close();
  }
});

test('NXDOMAIN courier: the client is reset promptly and nothing is dialled', async (t) => {
  const c = await courier();
  const fb = await fallback(loopConfig(c.port), () => nx);
  try {
    const t0 = Date.now();
    const s = await connect(fb.address.port);
    const { data, error } = await readAll(s);
    t.is(data.length, 0);
    t.is(error, 'ECONNRESET');
    t.true(Date.now() - t0 < 1000);
    t.is(c.accepted, 0);
    t.is(fb.stats().failed, 1);
  } finally {
    await fb.close();
    c.server.close();
  }
});

test('a courier that refuses: next address tried; none reachable → reset', async (t) => {
  const c = await courier();
  const dead = await courier();
  const deadPort = dead.port;
  await new Promise((r) => dead.server.close(r));
  // ports[0] decides the port: use the live one, with a first address that refuses (127.0.0.2 has nothing on it)
  const fb = await fallback(loopConfig(c.port), () => ok(['127.0.0.2', '127.0.0.1']));
  try {
    const tries = await Promise.all([0, 1, 2, 3].map(async () => {
      const s = await connect(fb.address.port);
      const done = readAll(s);
      s.end('x');
      return (await done).data.toString();
    }));
    t.deepEqual(tries, ['HELLO\nx', 'HELLO\nx', 'HELLO\nx', 'HELLO\nx'], 'whichever address comes first, the live one serves');
  } finally {
    await fb.close();
    c.server.close();
  }
  const fb2 = await fallback(loopConfig(deadPort), () => ok(['127.0.0.1']));
  try {
    const { error } = await readAll(await connect(fb2.address.port));
    t.is(error, 'ECONNRESET');
  } finally {
    await fb2.close();
  }
});

test('over maxConnections: extra connections are reset, held ones keep working', async (t) => {
  const c = await courier();
  const fb = await fallback(loopConfig(c.port, { fallback: { maxConnections: 1 } }), () => ok(['127.0.0.1']));
  try {
    const held = await connect(fb.address.port);
    const hello = await new Promise<string>((r) => held.once('data', (d: Buffer) => r(d.toString())));
    t.is(hello, 'HELLO\n');
    const { error } = await readAll(await connect(fb.address.port));
    t.is(error, 'ECONNRESET');
    const done = readAll(held);
    held.end('still');
    t.is((await done).data.toString(), 'still');
  } finally {
    await fb.close();
    c.server.close();
  }
});

test('idle connections are closed after fallback.idleTimeoutSeconds', async (t) => {
  const c = await courier();
  const fb = await fallback(loopConfig(c.port, { fallback: { idleTimeoutSeconds: 1 } }), () => ok(['127.0.0.1']));
  try {
    const s = await connect(fb.address.port);
    const t0 = Date.now();
    const { data } = await readAll(s);
    const ms = Date.now() - t0;
    t.is(data.toString(), 'HELLO\n');
    t.true(ms >= 900 && ms < 3000, `closed after ${ms} ms`);
  } finally {
    await fb.close();
    c.server.close();
  }
});

test('a reload with a shorter fallback.idleTimeoutSeconds applies to connections already relayed', async (t) => {
  const c = await courier();
  const cfg = loopConfig(c.port, { fallback: { idleTimeoutSeconds: 3600 } });
  const fb = await fallback(cfg, () => ok(['127.0.0.1']));
  try {
    const s = await connect(fb.address.port);
    const done = readAll(s);
    await new Promise<void>((r) => s.once('data', () => r()));  // relayed: the courier's HELLO arrived
    const t0 = Date.now();
    fb.update({ config: loopConfig(c.port, { fallback: { idleTimeoutSeconds: 1 } }), snapshot: { at: 0, names: new Map(), couriers: new Map(), pool: new Map() } });
    const { data } = await done;
    const ms = Date.now() - t0;
    t.is(data.toString(), 'HELLO\n');
    t.true(ms >= 500 && ms < 3000, `closed ${ms} ms after the reload (an hour-long timeout before it)`);
  } finally {
    await fb.close();
    c.server.close();
  }
});

// ---- log rate limit and listen backlog ------------------------------------------

test('rejections are logged at most 10 per 10 s, then with the count of lines held back', async (t) => {
  const clock = new FakeClock(0);
  const logger = memoryLogger();
  const cfg = loopConfig(5223);
  const fb = await startFallback({
    config: cfg, native: loadRelayAddon(), resolveNow: async () => nx, generation: () => undefined, onResolved: () => undefined,
    logger, clock: clock.now,
    listen: (server) => new Promise((r) => server.listen(0, '127.0.0.1', r)),
    originalDestination: () => ({ address: '198.18.100.7', port: 5223 }),
  });
  try {
    const rejected = () => logger.lines.filter((l) => /^info: fallback #\d+: courier 7: courier does not exist \(NXDOMAIN\); connection reset/.test(l));
    for (let i = 0; i < 25; i++) t.is((await readAll(await connect(fb.address.port))).error, 'ECONNRESET');  // one after the other: each is handled before the next
    t.is(fb.stats().failed, 25);
    t.is(rejected().length, 10, 'ten lines in the first 10 s, the other 15 held back');
    clock.advance(9_999);
    await readAll(await connect(fb.address.port));
    t.is(rejected().length, 10, 'still inside the window');
    clock.advance(1);
    await readAll(await connect(fb.address.port));
    t.is(rejected().length, 11);
    t.regex(rejected()[10]!, /; connection reset \(16 similar lines suppressed\)$/);
    t.regex(rejected()[0]!, /; connection reset$/);
  } finally {
    await fb.close();
  }
});

test('listen backlog: net.core.somaxconn, read at start through the injected reader, and logged', async (t) => {
  const logger = memoryLogger();
  const backlogs: number[] = [];
  const fb = await startFallback({
    config: loopConfig(5223), native: loadRelayAddon(), resolveNow: async () => nx, generation: () => undefined, onResolved: () => undefined,
    logger, readSomaxconn: () => '8192\n',
    listen: (server, _config, backlog) => {
      backlogs.push(backlog);
      return new Promise((r) => server.listen({ port: 0, host: '127.0.0.1', backlog }, r));
    },
  });
  try {
    t.deepEqual(backlogs, [8192]);
    t.true(logger.lines.some((l) => /^info: fallback: listening on \{.*\} \(backlog 8192, net\.core\.somaxconn\)$/.test(l)), logger.lines.join('\n'));
  } finally {
    await fb.close();
  }
});

test('listen backlog: 4096 when net.core.somaxconn is unreadable or not a positive integer', (t) => {
  const unreadable = listenBacklog(() => { throw new Error('ENOENT: no such file'); });
  t.is(unreadable.backlog, DEFAULT_BACKLOG);
  t.is(DEFAULT_BACKLOG, 4096);
  t.regex(unreadable.source, /^default: \/proc\/sys\/net\/core\/somaxconn unreadable \(ENOENT: no such file\)$/);
  for (const text of ['', 'abc', '0', '-5', '1.5', '99999999999']) t.is(listenBacklog(() => text).backlog, 4096, JSON.stringify(text));
  t.deepEqual(listenBacklog(() => '128'), { backlog: 128, source: 'net.core.somaxconn' });
  const real = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
  t.is(listenBacklog().backlog, real, 'the default reader reads the sysctl');
});
