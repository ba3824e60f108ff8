// The DNS pipeline and state builder without sockets: a fake transport (a ReplyWriter that records,
// as CoreDNS tests swap a ResponseWriter) drives dispatch() → pipeline → state; replies, forwards
// (a scripted exchange() seam), drops, the ACL, the rate limit on a fake clock, and state reuse.
import test from 'ava';
import dnsPacket from 'dns-packet';
import type { Config } from '../../src/core/config.js';
import type { HostPort } from '../../src/core/net.js';
import type { Transport } from '../../src/dns/answer.js';
import { type ExchangeResult, exchange } from '../../src/dns/client/exchange.js';
import { TokenBuckets } from '../../src/dns/limits.js';
import { type DnsLog } from '../../src/dns/log.js';
import { createPipeline } from '../../src/dns/pipeline.js';
import { type DnsState, DnsStateBuilder } from '../../src/dns/state.js';
import { type ReplyWriter, dispatch } from '../../src/dns/transports/contract.js';
import { FakeClock, testConfig } from '../helpers/fixtures.js';
import { decode, query, testSnapshot } from './dns-util.js';

/** A transport without a socket: what the pipeline wrote back, per client. */
class FakeWriter implements ReplyWriter {
  readonly replies: Buffer[] = [];
  constructor(readonly client: string, readonly transport: Transport = 'udp') {}
  reply(bytes: Buffer): void {
    this.replies.push(bytes);
  }
}

/** An upstream that answers every name with 198.51.100.7, recording what it was asked; `hold` keeps answers back. */
function fakeUpstream() {
  const asked: { server: string; name: string; type: string }[] = [];
  const held: (() => void)[] = [];
  let hold = false;
  const fake: typeof exchange = async (server: HostPort, question) => {
    asked.push({ server: `${server.host}:${server.port}`, name: question.name, type: question.type });
    if (hold) await new Promise<void>((resolve) => held.push(resolve));
    const raw = dnsPacket.encode({
      type: 'response', id: 4242, flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name: question.name, type: question.type as dnsPacket.RecordType, class: 'IN' }],
      answers: [{ type: 'A', name: question.name, ttl: 60, data: '198.51.100.7' }],
    });
    return { response: dnsPacket.decode(raw) as ExchangeResult['response'], raw, transport: 'udp', server };
  };
  return { fake, asked, held, holdAnswers: () => { hold = true; } };
}

function quietLog(): DnsLog & { debugLines: string[]; warnings: string[]; infos: string[] } {
  const debugLines: string[] = [];
  const warnings: string[] = [];
  const infos: string[] = [];
  return {
    debugLines, warnings, infos, isDebug: () => true, debug: (line) => void debugLines.push(line()), warn: (m) => void warnings.push(m),
    countRewritten: (line) => void infos.push(line()),
  };
}

function rig(dns: Record<string, unknown> = {}, o: { debug?: boolean } = {}) {
  const clock = new FakeClock(0);
  const upstream = fakeUpstream();
  const log = quietLog();
  const config: Config = testConfig({ upstreamDns: ['192.0.2.53'], dns: { allowClients: ['192.0.2.0/24'], rateLimit: 0, ...dns } });
  const builder = new DnsStateBuilder({
    log, exchange: upstream.fake,
    limiter: (rate) => rate > 0 ? new TokenBuckets(rate, rate, 100, clock.now) : undefined,
  });
  let state: DnsState = builder.build({ config, snapshot: testSnapshot(config) }, o.debug ?? false);
  const answered: string[] = [];
  const pipeline = createPipeline({ state: () => state, log, clock: clock.now, onAnswered: (kind) => void answered.push(kind) });
  const ask = (w: FakeWriter, msg: Buffer) => dispatch(pipeline.handle, msg, w);
  return {
    clock, upstream, log, config, builder, pipeline, ask, answered,
    get state() { return state; },
    set state(s: DnsState) { state = s; },
  };
}

test('fake transport: a courier query is answered at once, through the writer, and counted', (t) => {
  const r = rig();
  const w = new FakeWriter('192.0.2.2');
  t.is(r.ask(w, query('5-Courier.push.apple.com', 'A', { id: 7 })), undefined, 'nothing pending: answered synchronously');
  t.is(w.replies.length, 1);
  const reply = decode(w.replies[0]!);
  t.is(reply.id, 7);
  t.like(reply.answers?.[0], { name: '5-Courier.push.apple.com', data: '198.18.100.5' });
  t.is(r.upstream.asked.length, 0);
  t.like(r.pipeline.counts(), { queries: 1, forwarded: 0, dropped: 0, outcomes: { courier: 1 } });
  t.deepEqual(r.answered, ['local']);
});

test('fake transport: another name is forwarded; the reply comes later with the client ID and case', async (t) => {
  const r = rig();
  const w = new FakeWriter('192.0.2.2', 'tcp');
  const pending = r.ask(w, query('WWW.Example.test', 'A', { id: 99 }));
  t.true(pending instanceof Promise);
  t.is(w.replies.length, 0, 'not before upstream answered');
  await pending;
  t.deepEqual(r.upstream.asked, [{ server: '192.0.2.53:53', name: 'WWW.Example.test', type: 'A' }]);
  const reply = decode(w.replies[0]!);
  t.is(reply.id, 99);
  t.like(reply.answers?.[0], { name: 'WWW.Example.test', data: '198.51.100.7' });
  t.like(r.pipeline.counts(), { queries: 1, forwarded: 1 });
  t.deepEqual(r.answered, ['forwarded']);
});

test('fake transport: short messages and responses are dropped: no reply, counted', (t) => {
  const r = rig();
  const w = new FakeWriter('192.0.2.2');
  const response = query('5-courier.push.apple.com');
  response[2] = response[2]! | 0x80;  // QR: a response, never answered
  t.is(r.ask(w, Buffer.from([1, 2, 3])), undefined);
  t.is(r.ask(w, response), undefined);
  t.is(w.replies.length, 0);
  t.like(r.pipeline.counts(), { queries: 2, dropped: 2 });
  t.deepEqual(r.answered, []);
});

test('fake transport: a client outside dns.allowClients gets REFUSED and nothing is forwarded', (t) => {
  const r = rig();
  const w = new FakeWriter('198.51.100.9');
  t.is(r.ask(w, query('www.example.test')), undefined);
  t.is(decode(w.replies[0]!).rcode, 'REFUSED');
  t.is(r.upstream.asked.length, 0);
  t.like(r.pipeline.counts(), { outcomes: { refused: 1 }, forwarded: 0 });
});

test('fake transport: the rate limit drops beyond dns.rateLimit per client, refills on the clock; charged queries take no token', (t) => {
  const r = rig({ rateLimit: 2 });
  const a = new FakeWriter('192.0.2.2');
  const b = new FakeWriter('192.0.2.3');
  for (let i = 0; i < 3; i++) r.ask(a, query('5-courier.push.apple.com'));
  r.ask(b, query('5-courier.push.apple.com'));
  t.is(a.replies.length, 2, 'the third is dropped');
  t.is(b.replies.length, 1, 'another client has its own bucket');
  t.like(r.pipeline.counts(), { queries: 4, rateLimited: 1 });
  dispatch(r.pipeline.handle, query('5-courier.push.apple.com'), a, true);
  t.is(a.replies.length, 3, 'charged by the native side: not dropped again');
  r.clock.advance(500);
  r.ask(a, query('5-courier.push.apple.com'));
  t.is(a.replies.length, 4, 'a token back after half a second at 2/s');
});

test('fake transport: at debug every query is logged through the sink', async (t) => {
  const r = rig({}, { debug: true });
  r.ask(new FakeWriter('192.0.2.2'), query('5-courier.push.apple.com'));
  await r.ask(new FakeWriter('192.0.2.2', 'tcp'), query('www.example.test', 'AAAA'));
  r.ask(new FakeWriter('192.0.2.2'), Buffer.alloc(4));
  t.deepEqual(r.log.debugLines.filter((l) => !l.startsWith('dns: forwarded')), [
    'dns: 192.0.2.2 udp 5-courier.push.apple.com A: courier 198.18.100.5 (rcode 0)',
    'dns: 192.0.2.2 tcp www.example.test AAAA: forward AAAA',
    'dns: 192.0.2.2 udp (no question): drop (short)',
  ]);
});

test('fake transport: beyond dns.maxForwards in flight → SERVFAIL at once, with a warning', async (t) => {
  const r = rig({ maxForwards: 2 });
  r.upstream.holdAnswers();
  const writers = [2, 3, 4].map((n) => new FakeWriter(`192.0.2.${n}`));
  const pending = writers.map((w, i) => r.ask(w, query(`h${i}.example.test`)));
  await Promise.resolve();
  await pending[2];
  t.is(decode(writers[2]!.replies[0]!).rcode, 'SERVFAIL');
  t.is(writers[0]!.replies.length, 0);
  t.regex(r.log.warnings[0] ?? '', /2 forwards in flight \(dns\.maxForwards\)/);
  for (const release of r.upstream.held) release();
  await Promise.all(pending);
  t.is(decode(writers[0]!.replies[0]!).rcode, 'NOERROR');
});

test('state builder: unchanged settings keep the ACL, limiter and forwarder; changed ones replace them, the old forwarder retired', async (t) => {
  const r = rig({ rateLimit: 5 });
  const first = r.state;
  const snapshot = testSnapshot(r.config);
  // a structurally equal copy of the config: compared by value, not identity
  const same = r.builder.build({ config: structuredClone(r.config), snapshot }, false, first);
  t.is(same.acl, first.acl);
  t.is(same.limiter, first.limiter);
  t.is(same.forwarder, first.forwarder);
  t.not(same.responder, first.responder, 'the responder follows every snapshot');

  r.upstream.holdAnswers();
  const w = new FakeWriter('192.0.2.2');
  const pending = r.ask(w, query('slow.example.test'));
  const changed = testConfig({ upstreamDns: ['192.0.2.54'], dns: { allowClients: ['192.0.2.0/25'], rateLimit: 6 } });
  r.state = r.builder.build({ config: changed, snapshot }, false, first);
  t.not(r.state.acl, first.acl);
  t.not(r.state.limiter, first.limiter);
  t.not(r.state.forwarder, first.forwarder);
  t.is(r.builder.forwardStats(r.state).forwardsInFlight, 1, 'the retired forwarder still counts its forward');
  const next = r.ask(new FakeWriter('192.0.2.3'), query('new.example.test'));
  t.deepEqual(r.upstream.asked.map((a) => a.server), ['192.0.2.53:53', '192.0.2.54:53'], 'new forwards go to the new upstream');
  for (const release of r.upstream.held) release();
  await Promise.all([pending, next]);
  t.is(decode(w.replies[0]!).rcode, 'NOERROR', 'the retired forwarder finished its forward');
  t.is(r.builder.forwardStats(r.state).forwardsInFlight, 0);
});

test('state builder: a snapshot it cannot adopt throws and leaves the previous state untouched', (t) => {
  const r = rig();
  const before = r.state;
  const broken = { ...r.config, dns: { ...r.config.dns, allowClients: ['not-a-cidr'] } };
  t.throws(() => r.builder.build({ config: broken, snapshot: testSnapshot(r.config) }, false, before), { instanceOf: RangeError });
  t.is(r.state, before);
  r.ask(new FakeWriter('192.0.2.2'), query('5-courier.push.apple.com'));
  t.like(r.pipeline.counts(), { outcomes: { courier: 1 } });
});
