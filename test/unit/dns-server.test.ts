// The DNS server's transports on loopback: UDP and TCP (framing, pipelining, half-close, idle
// timeout, connection cap), the ACL and rate limit, forwarding to scripted upstreams, listen errors.
import test from 'ava';
import dgram from 'node:dgram';
import net from 'node:net';
import type { Config } from '../../src/core/config.js';
import { type DnsServer, startDnsServer } from '../../src/dns/server.js';
import { memoryLogger } from '../helpers/memory-logger.js';
import { ApnsProxyError } from '../../src/core/errors.js';
import { FrameReader, frameMessage } from '../../src/dns/client/exchange.js';
import { FakeClock, nx, ok, testConfig } from '../helpers/fixtures.js';
import { startScriptedDns, type ScriptedDns } from '../helpers/scripted-dns.js';
import { type TcpClient, decode, query, tcpConnect, testSnapshot, udpAsk } from './dns-util.js';

const LOOPBACK = [{ host: '127.0.0.1', port: 0, family: 4 as const }];

interface Setup {
  server: DnsServer;
  port: number;
  upstream: ScriptedDns;
  logger: ReturnType<typeof memoryLogger>;
  config: Config;
}

async function setup(t: { teardown(fn: () => Promise<void> | void): void }, dns: Record<string, unknown> = {}, opts: { clock?: FakeClock; upstream?: ScriptedDns } = {}): Promise<Setup> {
  const upstream = opts.upstream ?? await startScriptedDns((q) => (q.name.toLowerCase() === 'nx.example.test'
    ? { rcode: 'NXDOMAIN' }
    : { answers: [{ type: 'A', name: q.name, ttl: 60, data: '198.51.100.20' }] }));
  const config = testConfig({ upstreamDns: [`127.0.0.1:${upstream.port}`], dns: { allowClients: ['127.0.0.0/8'], rateLimit: 0, ...dns } });
  const logger = memoryLogger();
  const server = await startDnsServer({ config, snapshot: testSnapshot(config), logger, listen: LOOPBACK, ...(opts.clock ? { clock: opts.clock.now } : {}) });
  t.teardown(async () => {
    await server.close();
    await upstream.close();
  });
  return { server, port: server.endpoints[0]!.port, upstream, logger, config };
}

test('listens on UDP and TCP on the same port', async (t) => {
  const { server } = await setup(t);
  t.deepEqual(server.endpoints.map((e) => e.transport), ['udp', 'tcp']);
  t.is(server.endpoints[0]!.port, server.endpoints[1]!.port);
  t.not(server.endpoints[0]!.port, 0);
});

test('UDP: courier → VIP with the question as asked', async (t) => {
  const { port } = await setup(t);
  const r = decode(await udpAsk(port, query('5-COURIER.Push.Apple.COM', 'A', { id: 99 })));
  t.is(r.id, 99);
  t.like(r.answers?.[0], { name: '5-COURIER.Push.Apple.COM', data: '198.18.100.5', ttl: 30 });
  t.is(decode(await udpAsk(port, query('51-courier.push.apple.com'))).rcode, 'NXDOMAIN');
});

test('TCP: several pipelined queries in one write, each answered', async (t) => {
  const { port } = await setup(t);
  const c = await tcpConnect(port);
  t.teardown(() => c.socket.destroy());
  const names = [5, 6, 7, 51, 8].map((n) => `${n}-courier.push.apple.com`);
  c.socket.write(Buffer.concat(names.map((n, i) => frameMessage(query(n, 'A', { id: i })))));
  const replies = (await c.waitFor(5)).map(decode);
  t.deepEqual(replies.map((r) => r.id), [0, 1, 2, 3, 4]);
  t.deepEqual(replies.map((r) => r.rcode), ['NOERROR', 'NOERROR', 'NOERROR', 'NXDOMAIN', 'NOERROR']);
});

test('TCP: frames split anywhere (byte by byte) are reassembled', async (t) => {
  const { port } = await setup(t);
  const c = await tcpConnect(port);
  t.teardown(() => c.socket.destroy());
  const wire = Buffer.concat([frameMessage(query('9-courier.push.apple.com', 'A', { id: 1 })), frameMessage(query('10-courier.push.apple.com', 'AAAA', { id: 2 }))]);
  for (let i = 0; i < wire.length; i++) {
    c.socket.write(wire.subarray(i, i + 1));
    await new Promise<void>((resolve) => setImmediate(resolve));  // separate segments, not a timed sleep
  }
  const [a, b] = (await c.waitFor(2)).map(decode);
  t.like(a!.answers?.[0], { data: '198.18.100.9' });
  t.like(b, { id: 2, rcode: 'NOERROR' });
  t.is(b!.answers?.length, 0);
});

test('TCP: a zero-length frame and garbage do not end the connection', async (t) => {
  const { port, server } = await setup(t);
  const c = await tcpConnect(port);
  t.teardown(() => c.socket.destroy());
  c.socket.write(Buffer.from([0, 0]));                      // empty message: dropped
  c.send(Buffer.from([0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0]));  // readable header, bad name: FORMERR
  c.send(query('11-courier.push.apple.com', 'A', { id: 11 }));
  const [formerr, good] = (await c.waitFor(2)).map(decode);
  t.like(formerr, { id: 0xabcd, rcode: 'FORMERR' });
  t.like(good, { id: 11, rcode: 'NOERROR' });
  t.is(server.stats().dropped, 1);
});

test('TCP: the client half-closes after a forwarded query; the answer still comes, then the close', async (t) => {
  const { port, upstream } = await setup(t, { tcpIdleTimeoutMs: 60_000 });
  const c = await tcpConnect(port);
  c.send(query('Half.Close.Example', 'A', { id: 5 }));
  c.socket.end();
  const [r] = (await c.waitFor(1)).map(decode);
  t.like(r, { id: 5, rcode: 'NOERROR' });
  t.like(r!.answers?.[0], { data: '198.51.100.20' });
  let timer: NodeJS.Timeout | undefined;
  const closedSoon = await Promise.race([
    c.closed.then(() => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), 2000); }),  // a bound, not a sleep
  ]);
  clearTimeout(timer);
  t.true(closedSoon, 'closed after the last answer, not by the idle timeout');
  t.is(upstream.queries.length, 1);
});

test('TCP: an idle connection is closed after dns.tcpIdleTimeoutMs', async (t) => {
  const { port } = await setup(t, { tcpIdleTimeoutMs: 150 });
  const c = await tcpConnect(port);
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    c.closed.then(() => true),
    new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), 3000); }),  // a bound, not a sleep
  ]);
  clearTimeout(timer);
  t.true(closed, 'closed by the idle timeout');
  t.true(Date.now() - started >= 100, 'not closed before the timeout');
});

test('TCP: connections beyond dns.tcpMaxConnections are turned away', async (t) => {
  const { port, server } = await setup(t, { tcpMaxConnections: 2 });
  const a = await tcpConnect(port);
  const b = await tcpConnect(port);
  t.teardown(() => { a.socket.destroy(); b.socket.destroy(); });
  a.send(query('1-courier.push.apple.com'));
  b.send(query('2-courier.push.apple.com'));
  await Promise.all([a.waitFor(1), b.waitFor(1)]);
  const c = await tcpConnect(port);
  await c.closed;
  t.is(c.replies.length, 0);
  t.is(server.stats().tcpRejected, 1);
  a.socket.destroy();
  await a.closed;
  // a slot is free again once the server saw the close
  for (let i = 0; i < 50 && server.stats().tcpConnections > 1; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  const d = await tcpConnect(port);
  t.teardown(() => d.socket.destroy());
  d.send(query('3-courier.push.apple.com'));
  t.is((await d.waitFor(1)).length, 1);
});

test('forwarding: other names go upstream and come back with the client ID and case', async (t) => {
  const { port, upstream } = await setup(t);
  const r = decode(await udpAsk(port, query('Forward.Example.TEST', 'A', { id: 321 })));
  t.like(r, { id: 321, rcode: 'NOERROR' });
  t.deepEqual(r.questions, [{ name: 'Forward.Example.TEST', type: 'A', class: 'IN' }]);
  t.like(r.answers?.[0], { data: '198.51.100.20' });
  t.is(upstream.queries.length, 1);
  t.is(upstream.queries[0]!.name, 'Forward.Example.TEST');
  const tcp = await tcpConnect(port);
  t.teardown(() => tcp.socket.destroy());
  tcp.send(query('nx.example.test', 'A', { id: 2 }));
  t.like(decode((await tcp.waitFor(1))[0]!), { id: 2, rcode: 'NXDOMAIN' });
});

test('forwarding: upstream silent → SERVFAIL within the timeout', async (t) => {
  const silent = await startScriptedDns(() => ({ drop: true }));
  const { port } = await setup(t, { forwardTimeoutMs: 100 }, { upstream: silent });
  const started = Date.now();
  const r = decode(await udpAsk(port, query('slow.example.test', 'A', { id: 8 })));
  t.like(r, { id: 8, rcode: 'SERVFAIL' });
  t.true(Date.now() - started < 1500);
});

test('forwarding: beyond dns.maxForwards in flight → SERVFAIL at once', async (t) => {
  const release: (() => void)[] = [];
  const held = await startScriptedDns((q) => new Promise((resolve) => release.push(() => resolve({ answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.1' }] }))));
  const { port, server, logger } = await setup(t, { maxForwards: 2, forwardTimeoutMs: 5000 }, { upstream: held });
  const first = [udpAsk(port, query('a.example.test', 'A', { id: 1 })), udpAsk(port, query('b.example.test', 'A', { id: 2 }))];
  while (held.queries.length < 2) await new Promise<void>((resolve) => setImmediate(resolve));
  const third = decode(await udpAsk(port, query('c.example.test', 'A', { id: 3 })));
  t.like(third, { id: 3, rcode: 'SERVFAIL' });
  for (const r of release) r();
  t.deepEqual((await Promise.all(first)).map((b) => decode(b).rcode), ['NOERROR', 'NOERROR']);
  t.is(server.stats().forwardOverflows, 1);
  t.true(logger.lines.some((l) => /warn: dns: 2 forwards in flight/.test(l)));
});

test('ACL: a client outside dns.allowClients gets REFUSED over UDP, is closed at accept over TCP; nothing is forwarded', async (t) => {
  const { port, upstream, server } = await setup(t, { allowClients: ['192.0.2.0/24'] });
  const u = decode(await udpAsk(port, query('5-courier.push.apple.com', 'A', { id: 4 })));
  t.like(u, { id: 4, rcode: 'REFUSED' });
  t.is(u.answers?.length, 0);
  const c = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => c.socket.destroy());
  c.send(query('forward.example.test', 'A', { id: 5 }));
  t.true(await closedWithin(c, 2000), 'closed by the server, not answered');
  t.is(c.replies.length, 0);
  t.is(upstream.queries.length, 0);
  t.is(server.stats().tcpOutsiders, 1);
});

test('rate limit: beyond dns.rateLimit per second a client is dropped, then served again', async (t) => {
  const clock = new FakeClock(0);
  const { port, server } = await setup(t, { rateLimit: 3 }, { clock });
  const socket = dgram.createSocket('udp4');
  const replies: Buffer[] = [];
  socket.on('message', (m) => replies.push(m));
  t.teardown(() => socket.close());
  const send = (id: number) => socket.send(query('5-courier.push.apple.com', 'A', { id }), port, '127.0.0.1');
  for (let id = 1; id <= 5; id++) send(id);
  while (server.stats().queries < 5) await new Promise<void>((resolve) => setImmediate(resolve));
  clock.advance(1000);
  send(6);
  while (replies.length < 4) await new Promise<void>((resolve) => setImmediate(resolve));
  t.deepEqual(replies.map((r) => decode(r).id), [1, 2, 3, 6]);
  t.is(server.stats().rateLimited, 2);
});

test('update(): a new snapshot and config are served from then on', async (t) => {
  const { port, server, config } = await setup(t);
  t.is(decode(await udpAsk(port, query('55-courier.push.apple.com'))).rcode, 'NXDOMAIN');
  const next = { ...config, dns: { ...config.dns, ttl: 7 } };
  server.update({ config: next, snapshot: testSnapshot(next, { 55: ok(['203.0.113.30']), 5: nx }) });
  t.like(decode(await udpAsk(port, query('55-courier.push.apple.com'))).answers?.[0], { data: '198.18.100.55', ttl: 7 });
  t.is(decode(await udpAsk(port, query('5-courier.push.apple.com'))).rcode, 'NXDOMAIN');
});

test('update(): a new upstream list takes over forwarding', async (t) => {
  const { port, server, config } = await setup(t);
  const other = await startScriptedDns((q) => ({ answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.99' }] }));
  t.teardown(() => other.close());
  server.update({ config: { ...config, upstreamDns: [other.hostPort] }, snapshot: testSnapshot(config) });
  t.like(decode(await udpAsk(port, query('x.example.test'))).answers?.[0], { data: '198.51.100.99' });
});

test('debug: every query is logged, at most 50 lines a second, with the count held back', async (t) => {
  const clock = new FakeClock(0);
  const { port, server, logger } = await setup(t, {}, { clock });
  const socket = dgram.createSocket('udp4');
  t.teardown(() => socket.close());
  for (let i = 0; i < 80; i++) socket.send(query(`${1 + (i % 40)}-courier.push.apple.com`, 'A', { id: i }), port, '127.0.0.1');
  while (server.stats().queries < 80) await new Promise<void>((resolve) => setImmediate(resolve));
  const debug = () => logger.lines.filter((l) => l.startsWith('debug: dns: '));
  t.is(debug().length, 50);
  t.regex(debug()[0]!, /^debug: dns: 127\.0\.0\.1 udp 1-courier\.push\.apple\.com A: courier 198\.18\.100\.1 \(rcode 0\)$/);
  clock.advance(1000);
  await udpAsk(port, query('forward.example.test'));
  t.regex(debug()[50]!, /forward\.example\.test A: forward A \(30 lines suppressed\)/);
});

test('listen errors: a port in use is a clear E_LISTEN startup error', async (t) => {
  const { port } = await setup(t);
  const err = await t.throwsAsync(startDnsServer({
    config: testConfig(), snapshot: undefined, logger: memoryLogger(), listen: [{ host: '127.0.0.1', port, family: 4 }],
  }), { instanceOf: ApnsProxyError });
  t.is(err?.code, 'E_LISTEN');
  t.regex(err!.message, new RegExp(`^dns\\.listen 127\\.0\\.0\\.1:${port}: cannot bind udp: address already in use`));
});

test('listen errors: TCP taken while UDP is free → E_LISTEN, and the UDP socket is released', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as net.AddressInfo).port;
  const err = await t.throwsAsync(startDnsServer({
    config: testConfig(), snapshot: undefined, logger: memoryLogger(), listen: [{ host: '127.0.0.1', port, family: 4 }],
  }), { instanceOf: ApnsProxyError });
  t.regex(err!.message, /cannot listen on tcp: address already in use/);
  const probe = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => { probe.once('error', reject); probe.bind(port, '127.0.0.1', resolve); });
  probe.close();
  t.pass();
});

test('listen errors: an address not on this host', async (t) => {
  const err = await t.throwsAsync(startDnsServer({
    config: testConfig(), snapshot: undefined, logger: memoryLogger(), listen: [{ host: '192.0.2.99', port: 5353, family: 4 }],
  }), { instanceOf: ApnsProxyError });
  t.regex(err!.message, /^dns\.listen 192\.0\.2\.99:5353: cannot bind udp: no such address on this host/);
});

test('no listen addresses: nothing is bound and close() works', async (t) => {
  const s = await startDnsServer({ config: testConfig({ dns: { listen: [] } }), snapshot: undefined, logger: memoryLogger() });
  t.deepEqual(s.endpoints, []);
  await s.close();
});

test('close(): forwards in flight end, sockets are released', async (t) => {
  const silent = await startScriptedDns(() => ({ drop: true }));
  const { port, server } = await setup(t, { forwardTimeoutMs: 60_000 }, { upstream: silent });
  const socket = dgram.createSocket('udp4');
  t.teardown(() => socket.close());
  socket.send(query('hang.example.test'), port, '127.0.0.1');
  while (silent.queries.length < 1) await new Promise<void>((resolve) => setImmediate(resolve));
  t.is(server.stats().forwardsInFlight, 1);
  await server.close();
  t.is(server.stats().forwardsInFlight, 0);
  const again = await startDnsServer({ config: testConfig(), snapshot: undefined, logger: memoryLogger(), listen: [{ host: '127.0.0.1', port, family: 4 }] });
  await again.close();
});

test('IPv6: listens on ::1 and judges IPv6 clients by IPv6 rules', async (t) => {
  const config = testConfig({ dns: { allowClients: ['::1/128'], rateLimit: 0 } });
  const server = await startDnsServer({ config, snapshot: testSnapshot(config), logger: memoryLogger(), listen: [{ host: '::1', port: 0, family: 6 }] });
  t.teardown(() => server.close());
  const port = server.endpoints[0]!.port;
  t.like(decode(await udpAsk(port, query('5-courier.push.apple.com'), 2000, '::1')).answers?.[0], { data: '198.18.100.5' });
  const c = await tcpConnect(port, '::1');
  t.teardown(() => c.socket.destroy());
  c.send(query('6-courier.push.apple.com', 'A', { id: 6 }));
  t.like(decode((await c.waitFor(1))[0]!).answers?.[0], { data: '198.18.100.6' });
});

test('update(): a snapshot it cannot adopt is logged and the previous one kept serving', async (t) => {
  const { port, server, config, logger } = await setup(t);
  server.update({ config: { ...config, dns: { ...config.dns, allowClients: ['not-a-cidr'] } }, snapshot: testSnapshot(config) });
  t.true(logger.lines.some((l) => /^error: dns: cannot adopt the new snapshot/.test(l)));
  t.like(decode(await udpAsk(port, query('5-courier.push.apple.com'))).answers?.[0], { data: '198.18.100.5' });
});

test('onAnswered: local and forwarded answers are reported with their latency', async (t) => {
  const clock = new FakeClock(0);
  const upstream = await startScriptedDns((q) => {
    clock.advance(250);  // the upstream "takes" 250 ms on the injected clock
    return { answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.5' }] };
  });
  const config = testConfig({ upstreamDns: [`127.0.0.1:${upstream.port}`], dns: { allowClients: ['127.0.0.0/8'], rateLimit: 0 } });
  const seen: [string, number][] = [];
  const server = await startDnsServer({ config, snapshot: testSnapshot(config), logger: memoryLogger(), listen: LOOPBACK, clock: clock.now, onAnswered: (k, s) => seen.push([k, s]) });
  t.teardown(async () => { await server.close(); await upstream.close(); });
  const port = server.endpoints[0]!.port;
  await udpAsk(port, query('5-courier.push.apple.com'));
  await udpAsk(port, query('x.example.test'));
  t.deepEqual(seen, [['local', 0], ['forwarded', 0.25]]);
});

// ---- DNS over TCP against slot holders ------------------------------------------
// Loopback answers every 127/8 address: clients "from" 127.0.0.2.. are distinct client addresses.

/** A TCP client bound to `from`; unlike tcpConnect it also copes with a close before 'connect'. */
async function tcpFrom(port: number, from: string): Promise<TcpClient> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
  socket.on('error', () => undefined);
  const replies: Buffer[] = [];
  const frames = new FrameReader();
  const waiters: (() => void)[] = [];
  const wake = (): void => { for (const w of waiters.splice(0)) w(); };
  socket.on('data', (chunk: Buffer) => { replies.push(...frames.push(chunk).map((m) => Buffer.from(m))); wake(); });
  const closed = new Promise<void>((resolve) => socket.once('close', () => { resolve(); wake(); }));
  await Promise.race([new Promise<void>((resolve) => socket.once('connect', resolve)), closed]);
  socket.setNoDelay(true);
  return {
    socket, replies, closed,
    send: (msg) => void socket.write(frameMessage(msg)),
    waitFor(count, timeoutMs = 2000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${replies.length} of ${count} TCP replies within ${timeoutMs} ms`)), timeoutMs);
        const check = (): void => {
          if (replies.length >= count) { clearTimeout(timer); resolve(replies.slice(0, count)); }
          else if (socket.destroyed) { clearTimeout(timer); reject(new Error(`connection closed after ${replies.length} of ${count} replies`)); }
          else waiters.push(check);
        };
        check();
      });
    },
  };
}

/** true once the server has closed `c`; false if it is still open after `ms` (a bound, not a sleep). */
async function closedWithin(c: TcpClient, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([c.closed.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); })]);
  clearTimeout(timer);
  return r;
}

const settleTurns = async (until: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !until(); i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

test('TCP: a connection from outside dns.allowClients is closed at accept, before it sends a byte', async (t) => {
  const { port, server } = await setup(t, { allowClients: ['127.0.0.1/32'], tcpIdleTimeoutMs: 60_000 });
  const outsider = await tcpFrom(port, '127.0.0.2');
  t.teardown(() => outsider.socket.destroy());
  t.true(await closedWithin(outsider, 2000), 'not left to the idle timeout (60 s)');
  t.is(outsider.replies.length, 0);
  t.like(server.stats(), { tcpOutsiders: 1, tcpConnections: 0 });
  const inside = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => inside.socket.destroy());
  inside.send(query('5-courier.push.apple.com', 'A', { id: 5 }));
  t.like(decode((await inside.waitFor(1))[0]!).answers?.[0], { data: '198.18.100.5' });
});

test('TCP: at most dns.tcpMaxPerClient connections per client address; other clients still get in', async (t) => {
  const { port, server } = await setup(t, { tcpMaxPerClient: 2, tcpIdleTimeoutMs: 60_000 });
  const [a, b] = [await tcpFrom(port, '127.0.0.3'), await tcpFrom(port, '127.0.0.3')];
  t.teardown(() => { a!.socket.destroy(); b!.socket.destroy(); });
  a!.send(query('1-courier.push.apple.com'));
  b!.send(query('2-courier.push.apple.com'));
  await Promise.all([a!.waitFor(1), b!.waitFor(1)]);
  const third = await tcpFrom(port, '127.0.0.3');
  t.teardown(() => third.socket.destroy());
  t.true(await closedWithin(third, 2000), 'the third from one address is closed at accept');
  t.is(third.replies.length, 0);
  t.is(server.stats().tcpPerClientRejected, 1);
  const other = await tcpFrom(port, '127.0.0.4');
  t.teardown(() => other.socket.destroy());
  other.send(query('4-courier.push.apple.com'));
  t.is((await other.waitFor(1)).length, 1, 'another address is not affected');
  a!.socket.destroy();
  await a!.closed;
  await settleTurns(() => server.stats().tcpConnections <= 2);
  const again = await tcpFrom(port, '127.0.0.3');
  t.teardown(() => again.socket.destroy());
  again.send(query('3-courier.push.apple.com'));
  t.is((await again.waitFor(1)).length, 1, 'a slot of that address is free again once one closed');
});

test('TCP: a query frame that has started must be complete within dns.tcpFrameTimeoutMs', async (t) => {
  const { port, server } = await setup(t, { tcpFrameTimeoutMs: 200, tcpIdleTimeoutMs: 60_000 });
  const c = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => c.socket.destroy());
  c.send(query('5-courier.push.apple.com', 'A', { id: 1 }));
  await c.waitFor(1);
  const started = Date.now();
  c.socket.write(frameMessage(query('6-courier.push.apple.com', 'A', { id: 2 })).subarray(0, 5));  // and never the rest
  t.true(await closedWithin(c, 3000), 'cut at the frame deadline, not left to the idle timeout (60 s)');
  t.true(Date.now() - started >= 150, 'not before the deadline');
  t.is(c.replies.length, 1);
  t.is(server.stats().tcpFrameTimeouts, 1);
});

test('TCP: bytes of an unfinished frame do not reset the idle timer', async (t) => {
  const { port, server } = await setup(t, { tcpIdleTimeoutMs: 300, tcpFrameTimeoutMs: 60_000 });
  const c = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => c.socket.destroy());
  const frame = frameMessage(query('5-courier.push.apple.com'));
  let sent = 0;
  // the slow client's pace (one byte every 50 ms, at most the frame minus its last byte: ~3 s), not a wait
  while (sent < frame.length - 1 && !c.socket.destroyed) {
    c.socket.write(frame.subarray(sent, sent + 1));
    sent++;
    if (await closedWithin(c, 50)) break;
  }
  t.true(c.socket.destroyed, `closed while still trickling (${sent} of ${frame.length} bytes sent)`);
  t.true(sent < frame.length - 1);
  t.is(c.replies.length, 0);
  t.is(server.stats().tcpFrameTimeouts, 0, 'the idle timeout closed it, the frame deadline is far');
});

test('TCP: complete queries keep a connection open past dns.tcpIdleTimeoutMs', async (t) => {
  const { port } = await setup(t, { tcpIdleTimeoutMs: 600 });
  const c = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => c.socket.destroy());
  const started = Date.now();
  for (let i = 1; i <= 12; i++) {
    c.send(query(`${i}-courier.push.apple.com`, 'A', { id: i }));
    await c.waitFor(i);
    t.false(await closedWithin(c, 100), `open after query ${i}`);  // the client's pace: 12 × 100 ms > the idle timeout
  }
  t.true(Date.now() - started > 600);
  t.true(await closedWithin(c, 3000), 'closed once it goes quiet');
});

test('TCP: an allowed client is answered while an outsider hammers the port', async (t) => {
  const { port, server } = await setup(t, { allowClients: ['127.0.0.1/32'], tcpMaxConnections: 8, tcpIdleTimeoutMs: 60_000 });
  const hammered: TcpClient[] = [];
  t.teardown(() => { for (const h of hammered) h.socket.destroy(); });
  /** `count` outsider connections from 127.0.0.2, `batch` at a time, one byte each (a slot holder's move). */
  const hammer = async (count: number, batch: number): Promise<void> => {
    for (let done = 0; done < count; done += batch) {
      await Promise.all(Array.from({ length: Math.min(batch, count - done) }, async () => {
        const h = await tcpFrom(port, '127.0.0.2');
        hammered.push(h);
        if (!h.socket.destroyed) h.socket.write(Buffer.from([0]));
        await closedWithin(h, 2000);
      }));
    }
  };
  await hammer(16, 16);  // twice dns.tcpMaxConnections: would hold every slot if outsiders were let in
  const during = hammer(200, 20);
  const c = await tcpFrom(port, '127.0.0.1');
  t.teardown(() => c.socket.destroy());
  c.send(query('7-courier.push.apple.com', 'A', { id: 7 }));
  const [r] = (await c.waitFor(1, 3000)).map(decode);
  t.like(r?.answers?.[0], { data: '198.18.100.7' });
  await during;
  t.true(hammered.every((h) => h.socket.destroyed), 'every outsider connection was closed by the server');
  t.is(server.stats().tcpOutsiders, 216);
  t.is(server.stats().tcpRejected, 0, 'the slots never filled');
});

/** One UDP exchange from the client address `from` (loopback). */
async function udpFrom(port: number, from: string, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, from, resolve));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.close(); reject(new Error(`no UDP reply within ${timeoutMs} ms`)); }, timeoutMs);
    socket.on('message', (reply) => { clearTimeout(timer); socket.close(); resolve(reply); });
    socket.send(msg, port, '127.0.0.1');
  });
}

test('forwarding: one client holds at most its share of dns.maxForwards; beyond it SERVFAIL, others still forwarded', async (t) => {
  const release: (() => void)[] = [];
  const held = await startScriptedDns((q) => new Promise((resolve) => release.push(() => resolve({ answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.1' }] }))));
  const { port, server, logger } = await setup(t, { maxForwards: 8, forwardTimeoutMs: 5000 }, { upstream: held });
  // share: max(2, ceil(8 / 4)) = 2
  const hog = [udpFrom(port, '127.0.0.2', query('a.example.test', 'A', { id: 1 })), udpFrom(port, '127.0.0.2', query('b.example.test', 'A', { id: 2 }))];
  for (let i = 0; i < 2000 && held.queries.length < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  t.like(decode(await udpFrom(port, '127.0.0.2', query('c.example.test', 'A', { id: 3 }))), { id: 3, rcode: 'SERVFAIL' });
  const other = udpFrom(port, '127.0.0.3', query('d.example.test', 'A', { id: 4 }));
  for (let i = 0; i < 2000 && held.queries.length < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  t.deepEqual(held.queries.map((q) => q.name), ['a.example.test', 'b.example.test', 'd.example.test'], 'the hog\'s third never went upstream');
  for (const r of release) r();
  t.deepEqual((await Promise.all([...hog, other])).map((b) => decode(b).rcode), ['NOERROR', 'NOERROR', 'NOERROR']);
  t.like(server.stats(), { forwardOverflows: 1, forwardClientOverflows: 1, forwardsInFlight: 0 });
  t.true(logger.lines.some((l) => /^warn: dns: 127\.0\.0\.2 holds 2 forwards, its share of dns\.maxForwards \(8\); answering it SERVFAIL$/.test(l)));
});
