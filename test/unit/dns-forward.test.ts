// The forwarder: failover in order, the in-flight bound, SERVFAIL; with a scripted exchange() seam
// (logic) and with real sockets against scripted upstreams on loopback (IDs, ports, timeouts).
import test from 'ava';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { type ForwardQuery, answerQuery, buildResponder } from '../../src/dns/answer.js';
import { type ForwardEvent, createForwarder, forwardShare } from '../../src/dns/forward.js';
import { ApnsProxyError } from '../../src/core/errors.js';
import type { HostPort } from '../../src/core/net.js';
import { type ExchangeResult, exchange } from '../../src/dns/client/exchange.js';
import { testConfig } from '../helpers/fixtures.js';
import { startScriptedDns } from '../helpers/scripted-dns.js';
import { decode, optOf, query } from './dns-util.js';

const responder = buildResponder(testConfig(), undefined);

function forwardQuery(name = 'Forward.Example.TEST', o: Parameters<typeof query>[2] = {}): ForwardQuery {
  const d = answerQuery(responder, query(name, 'A', { id: 0x5151, ...o }), 'udp', true);
  if (d.kind !== 'forward') throw new Error(`not forwarded: ${d.kind}`);
  return d.query;
}

const S1: HostPort = { host: '192.0.2.10', port: 53, family: 4 };
const S2: HostPort = { host: '192.0.2.11', port: 53, family: 4 };
const S3: HostPort = { host: '192.0.2.12', port: 5353, family: 4 };

type Script = Record<string, 'timeout' | 'network' | 'SERVFAIL' | 'REFUSED' | 'NOERROR' | 'NXDOMAIN' | 'garbage'>;

/** An exchange() that answers per server from a script, without sockets; records the calls. */
function scripted(script: Script) {
  const calls: { server: string; name: string; rd: boolean | undefined; dnssecOk?: boolean | undefined; cd?: boolean | undefined }[] = [];
  const fake: typeof exchange = async (server, question, opts) => {
    const key = `${server.host}:${server.port}`;
    calls.push({ server: key, name: question.name, rd: opts.recursionDesired, dnssecOk: opts.dnssecOk, cd: opts.checkingDisabled });
    const what = script[key] ?? 'timeout';
    if (what === 'timeout') throw new ApnsProxyError('E_TIMEOUT', 'scripted timeout');
    if (what === 'network') throw new ApnsProxyError('E_NETWORK', 'scripted unreachable');
    const raw = dnsPacket.encode({
      type: 'response', id: 77, flags: dnsPacket.RECURSION_AVAILABLE | ({ NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5, garbage: 0 } as const)[what],
      questions: [{ name: question.name, type: 'A', class: 'IN' }],
      answers: what === 'NOERROR' ? [{ type: 'A', name: question.name, ttl: 60, data: '198.51.100.7' }] : [],
    });
    if (what === 'garbage') raw.writeUInt16BE(5, 6);  // counts that do not fit: relayReply refuses it
    return { response: dnsPacket.decode(raw) as ExchangeResult['response'], raw, transport: 'udp', server };
  };
  return { fake, calls };
}

const failover: [string, Script, string[], string][] = [
  ['first answers', { '192.0.2.10:53': 'NOERROR' }, ['192.0.2.10:53'], 'NOERROR'],
  ['first times out, second answers', { '192.0.2.11:53': 'NOERROR' }, ['192.0.2.10:53', '192.0.2.11:53'], 'NOERROR'],
  ['first unreachable, second answers', { '192.0.2.10:53': 'network', '192.0.2.11:53': 'NOERROR' }, ['192.0.2.10:53', '192.0.2.11:53'], 'NOERROR'],
  ['SERVFAIL moves on', { '192.0.2.10:53': 'SERVFAIL', '192.0.2.11:53': 'NOERROR' }, ['192.0.2.10:53', '192.0.2.11:53'], 'NOERROR'],
  ['REFUSED moves on', { '192.0.2.10:53': 'REFUSED', '192.0.2.11:53': 'NXDOMAIN' }, ['192.0.2.10:53', '192.0.2.11:53'], 'NXDOMAIN'],
  ['NXDOMAIN is an answer', { '192.0.2.10:53': 'NXDOMAIN', '192.0.2.11:53': 'NOERROR' }, ['192.0.2.10:53'], 'NXDOMAIN'],
  ['unwalkable reply moves on', { '192.0.2.10:53': 'garbage', '192.0.2.11:53': 'NOERROR' }, ['192.0.2.10:53', '192.0.2.11:53'], 'NOERROR'],
  ["the last server's REFUSED is relayed", { '192.0.2.10:53': 'SERVFAIL', '192.0.2.11:53': 'SERVFAIL', '192.0.2.12:5353': 'REFUSED' }, ['192.0.2.10:53', '192.0.2.11:53', '192.0.2.12:5353'], 'REFUSED'],
  ['all silent → SERVFAIL', {}, ['192.0.2.10:53', '192.0.2.11:53', '192.0.2.12:5353'], 'SERVFAIL'],
];

for (const [title, script, asked, rcode] of failover) {
  test(`forward: ${title}`, async (t) => {
    const { fake, calls } = scripted(script);
    const events: ForwardEvent[] = [];
    const f = createForwarder({ servers: [S1, S2, S3], timeoutMs: 100, maxInFlight: 4, exchange: fake, onForward: (e) => events.push(e) });
    const r = decode(await f.forward(forwardQuery()));
    t.deepEqual(calls.map((c) => c.server), asked);
    t.true(calls.every((c) => c.name === 'Forward.Example.TEST' && c.rd === true), 'the name as asked, RD as asked');
    t.is(r.rcode, rcode);
    t.is(r.id, 0x5151, "the client's ID");
    t.deepEqual(r.questions, [{ name: 'Forward.Example.TEST', type: 'A', class: 'IN' }]);
    t.is(events.length, 1);
    t.is(f.inFlight, 0);
  });
}

test('forward: RD off is passed on', async (t) => {
  const { fake, calls } = scripted({ '192.0.2.10:53': 'NOERROR' });
  const f = createForwarder({ servers: [S1], timeoutMs: 100, maxInFlight: 4, exchange: fake });
  t.false(decode(await f.forward(forwardQuery('x.example.test', { rd: false }))).flag_rd);
  t.false(calls[0]!.rd);
});

test('forward: the client\'s DO and CD are passed on; a plain query asks without them', async (t) => {
  const { fake, calls } = scripted({ '192.0.2.10:53': 'NOERROR' });
  const f = createForwarder({ servers: [S1], timeoutMs: 100, maxInFlight: 4, exchange: fake });
  await f.forward(forwardQuery('x.example.test', { cd: true, edns: { dnssecOk: true } }));
  await f.forward(forwardQuery('x.example.test'));
  t.deepEqual(calls.map((c) => [c.dnssecOk, c.cd]), [[true, true], [false, false]]);
});

test('forward: over maxInFlight → SERVFAIL at once, no upstream query', async (t) => {
  const release: (() => void)[] = [];
  let asked = 0;
  const held: typeof exchange = (server, question) => {
    asked++;
    return new Promise((resolve) => release.push(() => {
      const raw = dnsPacket.encode({ type: 'response', id: 1, flags: 0, questions: [{ name: question.name, type: 'A', class: 'IN' }] });
      resolve({ response: dnsPacket.decode(raw) as ExchangeResult['response'], raw, transport: 'udp', server });
    }));
  };
  const f = createForwarder({ servers: [S1], timeoutMs: 100, maxInFlight: 2, exchange: held });
  const a = f.forward(forwardQuery('a.example.test'));
  const b = f.forward(forwardQuery('b.example.test'));
  t.is(f.inFlight, 2);
  const c = decode(await f.forward(forwardQuery('c.example.test', { edns: {} })));
  t.is(c.rcode, 'SERVFAIL');
  t.truthy(optOf(c), 'OPT for an EDNS client');
  t.is(asked, 2);
  t.is(f.overflows, 1);
  for (const r of release) r();
  t.deepEqual((await Promise.all([a, b])).map((x) => decode(x).rcode), ['NOERROR', 'NOERROR']);
  t.is(f.inFlight, 0);
});

test('forward: one client holds at most its share of maxInFlight; beyond it SERVFAIL at once, others still forwarded', async (t) => {
  const release: (() => void)[] = [];
  const asked: string[] = [];
  const held: typeof exchange = (server, question) => {
    asked.push(question.name);
    return new Promise((resolve) => release.push(() => {
      const raw = dnsPacket.encode({ type: 'response', id: 1, flags: 0, questions: [{ name: question.name, type: 'A', class: 'IN' }] });
      resolve({ response: dnsPacket.decode(raw) as ExchangeResult['response'], raw, transport: 'udp', server });
    }));
  };
  const f = createForwarder({ servers: [S1], timeoutMs: 100, maxInFlight: 12, exchange: held });
  t.is(f.share, 3);
  const hog = ['a1', 'a2', 'a3'].map((n) => f.forward(forwardQuery(`${n}.example.test`), '192.0.2.66'));
  t.is(f.heldBy('192.0.2.66'), 3);
  const over = decode(await f.forward(forwardQuery('a4.example.test'), '192.0.2.66'));
  t.is(over.rcode, 'SERVFAIL');
  t.deepEqual(asked, ['a1.example.test', 'a2.example.test', 'a3.example.test'], 'the fourth was never asked upstream');
  const other = f.forward(forwardQuery('b1.example.test'), '192.0.2.67');
  t.is(f.inFlight, 4);
  t.is(f.heldBy('192.0.2.67'), 1);
  t.is(f.overflows, 1);
  t.is(f.clientOverflows, 1);
  for (const r of release.splice(0)) r();
  t.deepEqual((await Promise.all([...hog, other])).map((x) => decode(x).rcode), ['NOERROR', 'NOERROR', 'NOERROR', 'NOERROR']);
  t.is(f.heldBy('192.0.2.66'), 0);
  // its forwards done, the client gets its share again
  const again = f.forward(forwardQuery('a5.example.test'), '192.0.2.66');
  t.is(f.heldBy('192.0.2.66'), 1);
  for (const r of release.splice(0)) r();
  t.is(decode(await again).rcode, 'NOERROR');
});

test('forwardShare: a quarter of maxInFlight, at least 2, never more than maxInFlight', (t) => {
  t.deepEqual([1, 2, 4, 8, 9, 12, 512, 65535].map(forwardShare), [1, 2, 2, 2, 3, 3, 128, 16384]);
});

test('forward: close() aborts what is in flight with SERVFAIL, and later forwards fail fast', async (t) => {
  const pending: typeof exchange = (_s, _q, opts) => new Promise((_resolve, reject) => {
    opts.signal!.addEventListener('abort', () => reject(opts.signal!.reason));
  });
  const f = createForwarder({ servers: [S1, S2], timeoutMs: 60_000, maxInFlight: 4, exchange: pending });
  const a = f.forward(forwardQuery());
  f.close();
  t.is(decode(await a).rcode, 'SERVFAIL');
  t.is(decode(await f.forward(forwardQuery())).rcode, 'SERVFAIL');
  t.is(f.inFlight, 0);
});

const badOptions: [string, Record<string, unknown>, RegExp][] = [
  ['no servers', { servers: [], timeoutMs: 1, maxInFlight: 1 }, /servers must be a non-empty list, got \[\]/],
  ['timeout 0', { servers: [S1], timeoutMs: 0, maxInFlight: 1 }, /timeoutMs must be a positive integer, got 0/],
  ['maxInFlight 1.5', { servers: [S1], timeoutMs: 1, maxInFlight: 1.5 }, /maxInFlight must be a positive integer, got 1.5/],
];
for (const [title, opts, message] of badOptions) {
  test(`forward options: ${title}`, (t) => {
    t.throws(() => createForwarder(opts as never), { instanceOf: RangeError, message });
  });
}

// Real exchange() against scripted upstreams on loopback.

test('forward over sockets: fresh ID and source port per upstream query, relayed with the client ID', async (t) => {
  const up = await startScriptedDns((q) => ({ answers: [{ type: 'A', name: q.name, ttl: 60, data: '198.51.100.9' }] }));
  t.teardown(() => up.close());
  const f = createForwarder({ servers: [up.hostPort], timeoutMs: 1000, maxInFlight: 8 });
  const ids = [1, 2, 3, 4, 5];
  const replies = await Promise.all(ids.map((id) => f.forward(forwardQuery('Mixed.Case.Example', { id }))));
  t.deepEqual(replies.map((r) => decode(r).id), ids);
  t.true(replies.every((r) => decode(r).answers?.[0]?.type === 'A'));
  t.is(up.queries.length, 5);
  t.true(up.queries.every((q) => q.name === 'Mixed.Case.Example'), '0x20 case passed upstream');
  t.true(up.queries.filter((q, i) => q.id === ids[i]).length <= 1, 'upstream IDs are not the client IDs');
  t.true(new Set(up.queries.map((q) => q.remotePort)).size >= 4, 'a new source port per query');
});

test('forward over sockets: upstream silent → SERVFAIL after the timeout, not before', async (t) => {
  const up = await startScriptedDns(() => ({ drop: true }));
  t.teardown(() => up.close());
  const f = createForwarder({ servers: [up.hostPort], timeoutMs: 150, maxInFlight: 8 });
  const started = performance.now();
  const r = decode(await f.forward(forwardQuery()));
  const ms = performance.now() - started;
  t.is(r.rcode, 'SERVFAIL');
  t.true(ms >= 140 && ms < 1500, `${ms} ms`);
});

test('forward over sockets: a reply with the wrong ID or question is ignored', async (t) => {
  const up = await startScriptedDns((q) => [
    { id: (q.id + 1) & 0xffff, answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.66' }] },
    { questions: [{ name: 'other.example', type: 'A', class: 'IN' }], answers: [{ type: 'A', name: 'other.example', ttl: 1, data: '198.51.100.67' }] },
    { answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.1' }], delayMs: 20 },
  ]);
  t.teardown(() => up.close());
  const f = createForwarder({ servers: [up.hostPort], timeoutMs: 1000, maxInFlight: 8 });
  const r = decode(await f.forward(forwardQuery()));
  t.like(r.answers?.[0], { data: '198.51.100.1' });
});

test('forward over sockets: failover to the second upstream when the first is silent', async (t) => {
  const silent = await startScriptedDns(() => ({ drop: true }));
  const live = await startScriptedDns((q) => ({ answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.2' }] }));
  t.teardown(() => Promise.all([silent.close(), live.close()]).then(() => undefined));
  const f = createForwarder({ servers: [silent.hostPort, live.hostPort], timeoutMs: 100, maxInFlight: 8 });
  t.like(decode(await f.forward(forwardQuery())).answers?.[0], { data: '198.51.100.2' });
  t.is(silent.queries.length, 1);
  t.is(live.queries.length, 1);
});
