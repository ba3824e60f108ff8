// DNS for every name set: exact names answered with their pool VIP, sandbox couriers (0 included)
// from their prefix, a numbered set's shape outside its range answered NXDOMAIN here (never
// forwarded), and push.apple.com TXT "count=" capped at the couriers this router serves.
import test from 'ava';
import dnsPacket from 'dns-packet';
import { type Decision, type ForwardQuery, answerQuery, buildResponder, rewriteTxtCount } from '../../src/dns/answer.js';
import { encodeFastPathTable } from '../../src/dns/fastpath/index.js';
import { createForwarder, type ForwardEvent } from '../../src/dns/forward.js';
import type { ExchangeResult, exchange } from '../../src/dns/client/exchange.js';
import { desiredMapping } from '../../src/sync/mapping.js';
import { byCourier, nx, ok, testConfig } from '../helpers/fixtures.js';
import { type Decoded, decode, optOf, query } from './dns-util.js';

const config = testConfig({
  couriers: { first: 0, last: 40 }, vipPool: '198.18.102.0/24',
  nameSets: { sandbox: { vipPrefix: '198.18.101.0/24', first: 0, last: 200 } },
});
const results = byCourier([[5, ok(['203.0.113.10'])], [39, nx]]);
results.set('init.push.apple.com', ok(['203.0.113.11']));
results.set('api.sandbox.push.apple.com', nx);
const snapshot = desiredMapping({ config, previous: new Map(), results, now: 0 }).snapshot;
const responder = buildResponder(config, snapshot);

function reply(d: Decision): Decoded {
  if (d.kind !== 'reply') throw new Error(`expected a reply, got ${d.kind}`);
  return decode(d.bytes);
}
const ask = (name: string, type: Parameters<typeof query>[1] = 'A', o: Parameters<typeof query>[2] = {}) => answerQuery(responder, query(name, type, o), 'udp', true);

test('every name of every set is answered here: exact names with their pool VIP, sandbox and production courier 0 at broadcast − 1', (t) => {
  const vip = (name: string) => snapshot.names.get(name)!.vip;
  t.is(vip('init.push.apple.com'), '198.18.102.1', 'the pool starts at its first usable address');
  for (const name of ['init.push.apple.com', 'init-p01st.push.apple.com', 'init.sandbox.push.apple.com', 'api.push.apple.com', 'api.sandbox.push.apple.com', 'api.development.push.apple.com']) {
    t.true(vip(name).startsWith('198.18.102.'), name);
  }
  t.like(reply(ask('Init.Push.Apple.com')).answers?.[0], { name: 'Init.Push.Apple.com', data: '198.18.102.1' });
  t.like(reply(ask('0-courier.sandbox.push.apple.com')).answers?.[0], { data: '198.18.101.254' });
  t.like(reply(ask('200-courier.sandbox.push.apple.com')).answers?.[0], { data: '198.18.101.200' });
  t.like(reply(ask('0-courier.push.apple.com')).answers?.[0], { data: '198.18.100.254' });
  t.like(reply(ask('api.development.push.apple.com')).answers?.[0], { data: vip('api.development.push.apple.com') });
});

test('exact names: NODATA with an SOA of their parent zone for other types; NXDOMAIN when upstream says so', (t) => {
  const aaaa = reply(ask('init.push.apple.com', 'AAAA'));
  t.is(aaaa.rcode, 'NOERROR');
  t.is(aaaa.answers?.length, 0);
  t.like(aaaa.authorities?.[0], { type: 'SOA', name: 'push.apple.com' });
  const https = reply(ask('init.sandbox.push.apple.com', 'HTTPS'));
  t.like(https.authorities?.[0], { type: 'SOA', name: 'sandbox.push.apple.com' });
  t.is(reply(ask('api.sandbox.push.apple.com')).rcode, 'NXDOMAIN');
});

test('a numbered set\'s shape outside its range is NXDOMAIN here with an SOA, never forwarded, for any type, with EDNS', (t) => {
  for (const [name, zone] of [['255-courier.push.apple.com', 'push.apple.com'], ['41-courier.push.apple.com', 'push.apple.com'], ['201-courier.sandbox.push.apple.com', 'sandbox.push.apple.com']] as const) {
    for (const type of ['A', 'AAAA', 'TXT'] as const) {
      const d = ask(name.toUpperCase(), type, { id: 0x4321, edns: {} });
      t.is(d.kind, 'reply', `${name} ${type}`);
      const r = reply(d);
      t.is(r.rcode, 'NXDOMAIN', `${name} ${type}`);
      t.is(r.id, 0x4321);
      t.true(r.flag_aa && r.flag_rd);
      t.is(r.questions?.[0]?.name, name.toUpperCase(), 'the question as asked (0x20)');
      t.is(r.questions?.[0]?.type, type);
      t.like(r.authorities?.[0], { type: 'SOA', name: zone.toUpperCase() });
      t.is(optOf(r)?.udpPayloadSize, 1232);
    }
  }
  t.is(reply(ask('255-courier.push.apple.com')).additionals?.length, 0, 'no OPT without EDNS');
  t.is(ask('05-courier.push.apple.com').kind, 'forward', 'a leading zero is not the template\'s shape');
  t.is(ask('x-courier.sandbox.push.apple.com').kind, 'forward');
  t.is(ask('courier.push.apple.com').kind, 'forward');
  t.is(ask('255-courier.push.apple.com', 'A', { klass: 'CH' }).kind, 'forward', 'another class is not ours to deny');
});

test('the fast path\'s table holds every name of every set, keyed by name (C knows no sets)', (t) => {
  const table = encodeFastPathTable(responder, [], true);
  const count = table.readUInt16BE(8);
  t.is(count, 41 + 201 + 6);
  t.true(table.includes(Buffer.from('\x04init\x04push\x05apple\x03com\x00', 'latin1')));
  t.true(table.includes(Buffer.from('\x1f0-courier', 'latin1')) || table.includes(Buffer.from('\x090-courier', 'latin1')));
});

test('push.apple.com TXT is forwarded with the production set\'s last as the count limit; other TXT are not', (t) => {
  const d = ask('Push.Apple.COM', 'TXT');
  t.is(d.kind, 'forward');
  t.is((d as { query: ForwardQuery }).query.countLimit, 40);
  const other = ask('example.test', 'TXT') as { query: ForwardQuery };
  t.is(other.query.countLimit, undefined);
  t.is((ask('push.apple.com', 'A') as { query: ForwardQuery }).query.countLimit, undefined);
});

function txtReply(strings: string[], o: { name?: string; id?: number; opt?: boolean; extra?: boolean } = {}): Buffer {
  const name = o.name ?? 'Push.Apple.COM';
  return Buffer.from(dnsPacket.encode({
    type: 'response', id: o.id ?? 0x1111, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name, type: 'TXT', class: 'IN' }],
    answers: [
      { type: 'TXT', name, ttl: 300, data: strings },
      ...(o.extra ? [{ type: 'TXT' as const, name: 'other.example.test', ttl: 300, data: ['count=99'] }] : []),
    ],
    additionals: o.opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.OptAnswer] : [],
  }));
}
const txtOf = (bytes: Buffer) => (dnsPacket.decode(bytes).answers ?? []).map((a) => ((a as dnsPacket.TxtAnswer).data as Buffer[]).map((b) => b.toString()));

test('rewriteTxtCount: a count above the limit becomes the limit; the rest of the reply is untouched', (t) => {
  const r = rewriteTxtCount(txtReply(['count=50'], { id: 0xbeef, opt: true, extra: true }), 40)!;
  t.truthy(r);
  t.is(r.from, 50);
  const p = dnsPacket.decode(r.bytes);
  t.is(p.id, 0xbeef);
  t.true(p.flag_rd && p.flag_ra && p.flag_qr);
  t.is(p.questions?.[0]?.name, 'Push.Apple.COM', 'the question as the client asked it');
  t.deepEqual(txtOf(r.bytes), [['count=40'], ['count=99']], 'only push.apple.com\'s TXT is rewritten');
  t.is((p.additionals ?? []).filter((a) => a.type === 'OPT').length, 1, 'the OPT stays');
  t.is((p.answers?.[0] as dnsPacket.TxtAnswer).ttl, 300);
});

test('rewriteTxtCount: nothing to do when the count fits, for other strings, or an unreadable reply', (t) => {
  t.is(rewriteTxtCount(txtReply(['count=40']), 40), undefined, 'equal: kept');
  t.is(rewriteTxtCount(txtReply(['count=12']), 40), undefined, 'below: kept (never raised)');
  t.is(rewriteTxtCount(txtReply(['v=spf1 -all']), 40), undefined);
  t.is(rewriteTxtCount(txtReply(['count=50x']), 40), undefined);
  t.is(rewriteTxtCount(txtReply(['count=50'], { name: 'push.apple.com.example.test' }), 40), undefined, 'another name');
  t.is(rewriteTxtCount(Buffer.from([1, 2, 3]), 40), undefined);
  const many = rewriteTxtCount(txtReply(['hello', 'count=200']), 0)!;
  t.deepEqual(txtOf(many.bytes), [['hello', 'count=0']]);
  t.is(many.from, 200);
});

test('the forwarder relays push.apple.com TXT with the count capped and reports it', async (t) => {
  const events: ForwardEvent[] = [];
  const fake: typeof exchange = async (server, question) => {
    const raw = txtReply(['count=50'], { name: question.name, id: 7 });
    return { response: dnsPacket.decode(raw) as ExchangeResult['response'], raw, transport: 'udp', server };
  };
  const f = createForwarder({ servers: [{ host: '192.0.2.10', port: 53, family: 4 }], timeoutMs: 100, maxInFlight: 4, exchange: fake, onForward: (e) => events.push(e) });
  const d = ask('push.apple.com', 'TXT', { id: 0x2222 }) as { query: ForwardQuery };
  const bytes = await f.forward(d.query);
  t.deepEqual(txtOf(bytes), [['count=40']]);
  t.is(dnsPacket.decode(bytes).id, 0x2222);
  t.deepEqual(events[0]?.countRewritten, { from: 50, to: 40 });
  const plain = ask('example.test', 'TXT') as { query: ForwardQuery };
  t.deepEqual(txtOf(await f.forward(plain.query)), [['count=50']], 'another name\'s TXT is relayed as it came');
  t.is(events[1]?.countRewritten, undefined);
  f.close();
});
