// The pure answer logic (README, The DNS server): every case as a table row, decoded with dns-packet.
import test, { type ExecutionContext } from 'ava';
import dnsPacket from 'dns-packet';
import { courierMatcher } from '../helpers/courier-matcher.js';
import {
  type Decision, type ForwardQuery, answerQuery, buildResponder, relayReply, servfail, udpLimit,
} from '../../src/dns/answer.js';
import { nameHash } from '../../src/dns/wire.js';
import { dnsNameProblem } from '../../src/dns/client/exchange.js';
import { ok, testConfig } from '../helpers/fixtures.js';
import { COOKIE, type Decoded, decode, optBytes, optOf, query, testSnapshot, withAdditional } from './dns-util.js';

const config = testConfig();
const responder = buildResponder(config, testSnapshot(config));

function reply(d: Decision): Decoded {
  if (d.kind !== 'reply') throw new Error(`expected a reply, got ${d.kind}`);
  return decode(d.bytes);
}

type Expect =
  | { reply: { rcode: string; a?: string; soa?: boolean; name?: string } }
  | { forward: { name: string; type: string; class?: string } }
  | { drop: 'short' | 'response' };

interface Row {
  title: string;
  msg: Buffer;
  allowed?: boolean;
  expect: Expect;
}

const q = query;
const rows: Row[] = [
  // courier names → VIP, NXDOMAIN or NODATA
  { title: 'A for a live courier → PREFIX.N', msg: q('5-courier.push.apple.com'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5' } } },
  { title: 'mixed case (0x20) echoed', msg: q('5-COURIER.Push.Apple.COM'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5', name: '5-COURIER.Push.Apple.COM' } } },
  { title: 'trailing dot', msg: q('5-courier.push.apple.com.'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5' } } },
  { title: 'no dot', msg: q('49-courier.push.apple.com'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.49' } } },
  { title: 'first courier', msg: q('1-courier.push.apple.com'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.1' } } },
  { title: 'existence unknown → still PREFIX.N', msg: q('50-courier.push.apple.com'), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.50' } } },
  { title: 'upstream said NXDOMAIN → NXDOMAIN + SOA', msg: q('51-courier.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: 'last courier, NXDOMAIN', msg: q('60-courier.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: 'AAAA for a NXDOMAIN courier → NXDOMAIN', msg: q('51-courier.push.apple.com', 'AAAA'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: 'AAAA → NODATA + SOA', msg: q('5-courier.push.apple.com', 'AAAA'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'HTTPS (65) → NODATA', msg: q('5-courier.push.apple.com', 'UNKNOWN_65'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'SVCB (64) → NODATA', msg: q('5-courier.push.apple.com', 'UNKNOWN_64'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'ANY → NODATA', msg: q('5-courier.push.apple.com', 'ANY'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'CNAME → NODATA (no alias leaks)', msg: q('5-courier.push.apple.com', 'CNAME'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'TXT → NODATA', msg: q('5-courier.push.apple.com', 'TXT'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'AAAA with unknown existence → NODATA', msg: q('50-courier.push.apple.com', 'AAAA'), expect: { reply: { rcode: 'NOERROR', soa: true } } },
  { title: 'class ANY, type A → VIP', msg: q('5-courier.push.apple.com', 'A', { klass: 'ANY' }), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5' } } },
  { title: 'class CH for a courier name → REFUSED', msg: q('5-courier.push.apple.com', 'A', { klass: 'CH' }), expect: { reply: { rcode: 'REFUSED' } } },
  // not courier names → forwarded
  { title: 'evil-courier → forward', msg: q('evil-courier.push.apple.com'), expect: { forward: { name: 'evil-courier.push.apple.com', type: 'A' } } },
  { title: '05-courier (leading zero) → forward', msg: q('05-courier.push.apple.com'), expect: { forward: { name: '05-courier.push.apple.com', type: 'A' } } },
  { title: '0-courier (below first) → NXDOMAIN + SOA here, never forwarded', msg: q('0-courier.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: '255-courier (no VIP) → NXDOMAIN + SOA here, never forwarded', msg: q('255-courier.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: '61-courier (outside first..last) → NXDOMAIN + SOA here', msg: q('61-courier.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: '201-courier.sandbox (outside the sandbox range) → NXDOMAIN + SOA here', msg: q('201-Courier.Sandbox.push.apple.com'), expect: { reply: { rcode: 'NXDOMAIN', name: '201-Courier.Sandbox.push.apple.com' } } },
  { title: '99999-courier, AAAA → NXDOMAIN here', msg: q('99999-courier.push.apple.com', 'AAAA'), expect: { reply: { rcode: 'NXDOMAIN', soa: true } } },
  { title: 'courier name under another zone → forward', msg: q('5-courier.push.apple.com.example.'), expect: { forward: { name: '5-courier.push.apple.com.example', type: 'A' } } },
  { title: 'courier name under another zone, no dot → forward', msg: q('5-courier.push.apple.com.example'), expect: { forward: { name: '5-courier.push.apple.com.example', type: 'A' } } },
  { title: 'prefix label → forward', msg: q('x.5-courier.push.apple.com'), expect: { forward: { name: 'x.5-courier.push.apple.com', type: 'A' } } },
  { title: 'the zone itself → forward', msg: q('push.apple.com', 'SOA'), expect: { forward: { name: 'push.apple.com', type: 'SOA' } } },
  { title: 'other name, case kept', msg: q('Forward.Example.TEST', 'AAAA'), expect: { forward: { name: 'Forward.Example.TEST', type: 'AAAA' } } },
  { title: 'HTTPS for another name', msg: q('forward.example.test', 'UNKNOWN_65'), expect: { forward: { name: 'forward.example.test', type: 'UNKNOWN_65' } } },
  { title: 'root NS → forward "."', msg: q('.', 'NS'), expect: { forward: { name: '.', type: 'NS' } } },
  { title: 'class CH, other name → forward', msg: q('version.bind', 'TXT', { klass: 'CH' }), expect: { forward: { name: 'version.bind', type: 'TXT', class: 'CH' } } },
  // the ACL
  { title: 'outside the ACL: courier → REFUSED', msg: q('5-courier.push.apple.com'), allowed: false, expect: { reply: { rcode: 'REFUSED' } } },
  { title: 'outside the ACL: other name → REFUSED, never forwarded', msg: q('forward.example.test'), allowed: false, expect: { reply: { rcode: 'REFUSED' } } },
  { title: 'outside the ACL: EDNS version 1 → still REFUSED', msg: q('forward.example.test', 'A', { edns: { version: 1 } }), allowed: false, expect: { reply: { rcode: 'REFUSED' } } },
  // EDNS
  { title: 'EDNS with a DNS cookie: answered, option ignored', msg: q('5-courier.push.apple.com', 'A', { edns: { options: COOKIE } }), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5' } } },
  { title: 'EDNS size below 512', msg: q('5-courier.push.apple.com', 'A', { edns: { size: 100 } }), expect: { reply: { rcode: 'NOERROR', a: '198.18.100.5' } } },
  { title: 'EDNS version 1 → BADVERS', msg: q('5-courier.push.apple.com', 'A', { edns: { version: 1 } }), expect: { reply: { rcode: 'NOERROR' } } },
];

for (const row of rows) {
  test(`answer: ${row.title}`, (t) => {
    const d = answerQuery(responder, row.msg, 'udp', row.allowed ?? true);
    const asked = decode(row.msg).questions![0]!;
    if ('reply' in row.expect) {
      const want = row.expect.reply;
      const r = reply(d);
      t.is(r.rcode, want.rcode);
      t.is(r.id, 0x1234);
      t.true(r.flag_qr);
      t.true(r.flag_rd, 'RD copied');
      t.true(r.flag_ra, 'RA set');
      t.false(r.flag_tc);
      t.deepEqual(r.questions, [asked], 'question echoed exactly, case included');
      if (want.a) {
        t.is(r.answers?.length, 1);
        const a = r.answers![0]!;
        t.like(a, { type: 'A', class: 'IN', name: want.name ?? asked.name.replace(/\.$/, ''), ttl: 30, data: want.a });
        t.is(r.authorities?.length, 0);
      } else {
        t.is(r.answers?.length, 0, 'no records in the answer section at all');
      }
      if (want.soa) {
        t.true(r.flag_aa);
        t.is(r.authorities?.length, 1);
        t.like(r.authorities![0]!, { type: 'SOA', name: 'push.apple.com', ttl: 30 });
        t.like((r.authorities![0] as unknown as { data: dnsPacket.SoaData }).data, { mname: 'localhost', rname: 'nobody.invalid', minimum: 30 });
      }
      const reqOpt = decode(row.msg).additionals?.some((x) => x.type === 'OPT');
      const opt = optOf(r);
      t.is(opt !== undefined, reqOpt === true, 'OPT in the reply exactly when the query had one');
      if (opt) t.is(opt.udpPayloadSize, 1232);
    } else if ('forward' in row.expect) {
      t.is(d.kind, 'forward');
      const f = (d as { query: ForwardQuery }).query;
      t.like(f, { ...row.expect.forward, class: row.expect.forward.class ?? 'IN', id: 0x1234, rd: true, limit: 512, dnssecOk: false, checkingDisabled: false });
      t.is(dnsNameProblem(f.name), undefined, 'exchange() accepts the name');
      t.deepEqual(f.question, row.msg.subarray(12, row.msg.length - (f.edns ? 11 : 0)));
    } else {
      t.deepEqual(d, { kind: 'drop', reason: row.expect.drop });
    }
  });
}

test('answer: BADVERS carries extended rcode 1 in our OPT', (t) => {
  const r = reply(answerQuery(responder, q('5-courier.push.apple.com', 'A', { edns: { version: 1 } }), 'udp', true));
  t.like(optOf(r), { extendedRcode: 1, ednsVersion: 0, udpPayloadSize: 1232 });
  t.is(r.answers?.length, 0);
});

test('forward: the client\'s DO and CD travel with the query (a validating client gets what it asked for)', (t) => {
  const cases: [string, Buffer, boolean, boolean][] = [
    ['DO in the OPT', q('forward.example.test', 'A', { edns: { dnssecOk: true } }), true, false],
    ['CD in the header', q('forward.example.test', 'A', { cd: true }), false, true],
    ['both', q('forward.example.test', 'DS', { cd: true, edns: { dnssecOk: true } }), true, true],
    ['neither, with EDNS', q('forward.example.test', 'A', { edns: {} }), false, false],
  ];
  for (const [what, msg, dnssecOk, checkingDisabled] of cases) {
    const d = answerQuery(responder, msg, 'udp', true);
    t.is(d.kind, 'forward', what);
    t.like((d as { query: ForwardQuery }).query, { dnssecOk, checkingDisabled }, what);
  }
});

test('answer: RD and CD copied, ID echoed', (t) => {
  for (const [rd, cd] of [[false, false], [true, true], [false, true]] as const) {
    const r = reply(answerQuery(responder, q('7-courier.push.apple.com', 'A', { id: 0xbeef, rd, cd }), 'udp', true));
    t.is(r.id, 0xbeef);
    t.is(r.flag_rd, rd);
    t.is(r.flag_cd, cd);
    t.true(r.flag_ra);
  }
});

// Malformed and odd headers: [title, bytes, expected rcode | 'drop']
const header = (bytes: number[]): Buffer => Buffer.from(bytes);
const good = q('5-courier.push.apple.com');
const setCount = (msg: Buffer, offset: number, value: number): Buffer => {
  const m = Buffer.from(msg);
  m.writeUInt16BE(value, offset);
  return m;
};
const malformed: [string, Buffer, string][] = [
  ['empty datagram', Buffer.alloc(0), 'drop'],
  ['11 bytes: no readable header', good.subarray(0, 11), 'drop'],
  ['a response (QR set) is never answered', (() => { const m = Buffer.from(good); m[2] = m[2]! | 0x80; return m; })(), 'drop'],
  ['header only, QDCOUNT 1', good.subarray(0, 12), 'FORMERR'],
  ['QDCOUNT 0', setCount(good, 4, 0), 'FORMERR'],
  ['QDCOUNT 2', setCount(good, 4, 2), 'FORMERR'],
  ['question cut inside the name', good.subarray(0, 20), 'FORMERR'],
  ['question without type and class', good.subarray(0, good.length - 4), 'FORMERR'],
  ['ANCOUNT 1 without the record', setCount(good, 6, 1), 'FORMERR'],
  ['ARCOUNT 65535 without records', setCount(good, 10, 65535), 'FORMERR'],
  ['compression pointer in the question', header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]), 'FORMERR'],
  ['pointer loop in the question', header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xc0, 12, 0, 1, 0, 1]), 'FORMERR'],
  ['label length 64 (extended label type)', Buffer.concat([header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64]), Buffer.alloc(64, 0x61), header([0, 0, 1, 0, 1])]), 'FORMERR'],
  ['name longer than 255 bytes', Buffer.concat([header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]), ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])), header([0, 0, 1, 0, 1])]), 'FORMERR'],
  ['two OPT records', withAdditional(good, optBytes(), optBytes()), 'FORMERR'],
  ['OPT in the answer section', (() => { const m = Buffer.concat([good, optBytes()]); m.writeUInt16BE(1, 6); return m; })(), 'FORMERR'],
  ['OPT owned by a non-root name', withAdditional(good, Buffer.concat([Buffer.from([1, 0x61, 0]), optBytes().subarray(1)])), 'FORMERR'],
  ['OPT option overrunning its RDATA', withAdditional(good, optBytes(4096, 0, Buffer.from('000a0010', 'hex'))), 'FORMERR'],
  ['opcode NOTIFY', (() => { const m = Buffer.from(good); m[2] = (4 << 3) | 1; return m; })(), 'NOTIMP'],
  ['opcode UPDATE', (() => { const m = Buffer.from(good); m[2] = 5 << 3; return m; })(), 'NOTIMP'],
  ['opcode STATUS with garbage after the header', Buffer.concat([header([0, 1, 2 << 3, 0, 0xff, 0xff]), Buffer.alloc(20, 0xff)]), 'NOTIMP'],
  ['name with a dot inside a label (not forwardable)', Buffer.concat([header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3]), Buffer.from('a.b'), header([4]), Buffer.from('test'), header([0, 0, 1, 0, 1])]), 'NOTIMP'],
  ['name with a non-ASCII byte (not forwardable)', Buffer.concat([header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0xa9, 0, 0, 1, 0, 1])]), 'NOTIMP'],
  ['unknown class 42 for another name (not forwardable)', header([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 42]), 'NOTIMP'],
];

for (const [title, msg, want] of malformed) {
  test(`malformed: ${title} → ${want}`, (t) => {
    const d = answerQuery(responder, msg, 'udp', true);
    if (want === 'drop') {
      t.is(d.kind, 'drop');
      return;
    }
    t.is(d.kind, 'reply');
    const bytes = (d as { bytes: Buffer }).bytes;
    t.is(bytes.readUInt16BE(0), msg.readUInt16BE(0), 'ID echoed');
    t.is(bytes[2]! & 0x80, 0x80, 'QR');
    t.is(bytes[2]! & 0x78, msg[2]! & 0x78, 'opcode echoed');
    t.is(decode(bytes).rcode, want);
  });
}

/** A name of the production template's shape (any N without leading zeros): answered here, in range or not. */
const shaped = (name: string) => /^(?:0|[1-9][0-9]{0,8})-courier\.push\.apple\.com\.?$/i.test(name);

/** In range (courierMatcher): the snapshot's answer; of the shape but outside: NXDOMAIN here; else forwarded. */
function expectLocal(t: ExecutionContext, d: Decision, name: string, match: (name: string) => number | undefined): void {
  if (match(name) !== undefined) t.is(d.kind, 'reply', name);
  else if (shaped(name)) {
    t.is(d.kind, 'reply', name);
    if (d.kind === 'reply') t.is(decode(d.bytes).rcode, 'NXDOMAIN', name);
  } else t.is(d.kind, 'forward', name);
}

test('every courier 1..60 is answered from the snapshot, every other number of the shape NXDOMAIN here, leading zeros forwarded', (t) => {
  const match = courierMatcher(config);
  for (let n = 0; n <= 300; n++) {
    for (const name of [`${n}-courier.push.apple.com`, `0${n}-courier.push.apple.com`]) {
      expectLocal(t, answerQuery(responder, q(name), 'udp', true), name, match);
    }
  }
});

test('random near-miss names: local answer exactly when courierMatcher matches', (t) => {
  const match = courierMatcher(config);
  let seed = 42;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const parts = ['5', '51', '05', '0', '255', '60', '61', '-courier', '-Courier', '.push', '.PUSH', '.apple', '.com', '.', 'x', '-', 'courier'];
  let local = 0;
  for (let i = 0; i < 5000; i++) {
    let name = '';
    const len = 1 + rnd(7);
    for (let j = 0; j < len; j++) name += parts[rnd(parts.length)];
    if (i % 3 === 0) name = `${1 + rnd(70)}-courier.push.apple.com`.replace(/[a-z]/g, (c) => (rnd(2) ? c.toUpperCase() : c));
    if (dnsNameProblem(name) !== undefined || /^\.|\.\.|^$/.test(name)) continue;
    const d = answerQuery(responder, q(name), 'udp', true);
    expectLocal(t, d, name, match);
    if (d.kind === 'reply') local++;
  }
  t.true(local > 1000, `only ${local} local answers: the generator is not exercising couriers`);
});

test('responder: VIP from the snapshot; a new snapshot changes NXDOMAIN into PREFIX.N', (t) => {
  const before = reply(answerQuery(responder, q('55-courier.push.apple.com'), 'udp', true));
  t.is(before.rcode, 'NXDOMAIN');
  const after = buildResponder(config, testSnapshot(config, { 55: ok(['203.0.113.11']) }));
  t.like(reply(answerQuery(after, q('55-courier.push.apple.com'), 'udp', true)).answers?.[0], { data: '198.18.100.55' });
  const other = testConfig({ vipPrefix: '198.18.7.0/24', dns: { ttl: 5 } });
  const r = reply(answerQuery(buildResponder(other, undefined), q('3-courier.push.apple.com'), 'udp', true));
  t.like(r.answers?.[0], { data: '198.18.7.3', ttl: 5 });
});

test('responder: another template puts the SOA on its zone', (t) => {
  const c = testConfig({ couriers: { template: 'c{n}.couriers.example.test', first: 1, last: 3 } });
  const r = buildResponder(c, undefined);
  t.like(reply(answerQuery(r, q('C2.couriers.EXAMPLE.test'), 'udp', true)).answers?.[0], { name: 'C2.couriers.EXAMPLE.test', data: '198.18.100.2' });
  t.like(reply(answerQuery(r, q('c2.couriers.example.test', 'AAAA'), 'udp', true)).authorities?.[0], { name: 'couriers.EXAMPLE.test'.toLowerCase(), type: 'SOA' });
  const outside = reply(answerQuery(r, q('c4.couriers.example.test'), 'udp', true));
  t.is(outside.rcode, 'NXDOMAIN', 'the template\'s shape outside first..last is answered here');
  t.like(outside.authorities?.[0], { name: 'couriers.example.test', type: 'SOA' });
  t.is(answerQuery(r, q('cx.couriers.example.test'), 'udp', true).kind, 'forward');
});

test('responder: courier names hash without collisions under the chosen seed', (t) => {
  const r = buildResponder(testConfig({ couriers: { first: 1, last: 254 } }), undefined);
  t.is(r.couriers.size, 254 + 201, 'the couriers and the sandbox couriers (exact names wait for the pool)');
  for (const [hash, c] of r.couriers) t.is(nameHash(c.qname, r.seed), hash);
});

test('answer bytes are the precomputed template with ID, flags and question patched', (t) => {
  const msg = q('9-COURIER.push.apple.com', 'A', { id: 7 });
  const a = (answerQuery(responder, msg, 'udp', true) as { bytes: Buffer }).bytes;
  const b = (answerQuery(responder, q('9-courier.push.apple.com', 'A', { id: 8 }), 'udp', true) as { bytes: Buffer }).bytes;
  t.not(a, b, 'a fresh buffer per reply');
  t.is(a.length, b.length);
  const diff = [...a].map((x, i) => (x === b[i] ? -1 : i)).filter((i) => i >= 0);
  t.deepEqual(diff, [1, 15, 16, 17, 18, 19, 20, 21], 'only the ID and the upper-cased letters differ');
});

// Relaying upstream answers
function fq(over: Partial<ForwardQuery> = {}): ForwardQuery {
  const msg = q('Big.Example.TEST');
  return { id: 0x4242, rd: true, name: 'Big.Example.TEST', type: 'A', class: 'IN', question: msg.subarray(12), edns: false, dnssecOk: false, checkingDisabled: false, limit: 512, ...over };
}

function upstreamReply(count: number, opt: boolean, name = 'big.example.test'): Buffer {
  const answers = Array.from({ length: count }, (_, i) => ({ type: 'A' as const, name, ttl: 60, data: `198.51.100.${i % 250}` }));
  return dnsPacket.encode({
    type: 'response', id: 999, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name, type: 'A', class: 'IN' }], answers,
    additionals: opt ? [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.OptAnswer] : [],
  });
}

const relayRows: [string, Partial<ForwardQuery>, number, boolean, { tc: boolean; answers: number; opt: boolean }][] = [
  ['small, no EDNS client: upstream OPT removed', {}, 3, true, { tc: false, answers: 3, opt: false }],
  ['small, EDNS client, upstream without OPT: ours added', { edns: true, limit: 1232 }, 3, false, { tc: false, answers: 3, opt: true }],
  ['small, EDNS client, upstream OPT: kept with our size', { edns: true, limit: 1232 }, 3, true, { tc: false, answers: 3, opt: true }],
  ['over 512 for a plain UDP client → TC, question only', {}, 40, true, { tc: true, answers: 0, opt: false }],
  ['fits the EDNS client', { edns: true, limit: udpLimit(4096) }, 30, true, { tc: false, answers: 30, opt: true }],
  ['over 1232 for an EDNS client → TC with our OPT', { edns: true, limit: udpLimit(4096) }, 100, true, { tc: true, answers: 0, opt: true }],
  ['TCP takes anything', { limit: 65535 }, 100, true, { tc: false, answers: 100, opt: false }],
];

for (const [title, over, count, upOpt, want] of relayRows) {
  test(`relay: ${title}`, (t) => {
    const query = fq(over);
    const out = relayReply(query, upstreamReply(count, upOpt))!;
    t.truthy(out);
    t.true(out.length <= query.limit);
    const r = decode(out);
    t.is(r.id, 0x4242, "client's ID");
    t.is(r.flag_tc, want.tc);
    t.is(r.answers?.length, want.answers);
    t.deepEqual(r.questions, [{ name: 'Big.Example.TEST', type: 'A', class: 'IN' }], "client's question, case kept");
    const opt = optOf(r);
    t.is(opt !== undefined, want.opt);
    if (opt) t.is(opt.udpPayloadSize, 1232);
  });
}

test('udpLimit: 512 without EDNS, client size capped at 1232, never under 512', (t) => {
  t.deepEqual([undefined, 0, 100, 512, 600, 1232, 4096, 65535].map(udpLimit), [512, 512, 512, 512, 600, 1232, 1232, 1232]);
});

test('relay: a reply whose counts do not fit its bytes is refused', (t) => {
  const bad = upstreamReply(3, false);
  bad.writeUInt16BE(9, 6);
  t.is(relayReply(fq(), bad), undefined);
  t.is(relayReply(fq(), bad.subarray(0, 10)), undefined);
});

test('servfail: client ID, question and OPT when it sent one', (t) => {
  const plain = decode(servfail(fq()));
  t.like(plain, { id: 0x4242, rcode: 'SERVFAIL', flag_rd: true, flag_ra: true });
  t.deepEqual(plain.questions, [{ name: 'Big.Example.TEST', type: 'A', class: 'IN' }]);
  t.is(optOf(plain), undefined);
  t.like(optOf(decode(servfail(fq({ edns: true })))), { udpPayloadSize: 1232 });
});

test('courier replies fit 512 bytes even for the longest template: they never need TC', (t) => {
  const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.{n}-${'d'.repeat(59)}.test`;
  const c = testConfig({ couriers: { template: long, first: 254, last: 254 } });
  const name = long.replace('{n}', '254');
  t.true(name.length >= 250, String(name.length));
  const r = buildResponder(c, testSnapshot(c, { 254: { kind: 'nxdomain', chain: [] } }));
  for (const type of ['A', 'AAAA']) {
    const d = answerQuery(r, q(name.toUpperCase(), type, { edns: {} }), 'udp', true);
    t.is(d.kind, 'reply');
    const bytes = (d as { bytes: Buffer }).bytes;
    t.true(bytes.length < 512, `${type}: ${bytes.length} bytes`);
    t.like(decode(bytes), { rcode: 'NXDOMAIN', flag_tc: false });
  }
});
