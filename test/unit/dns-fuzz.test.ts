// Bounded fuzzing (seeded, reproducible): random and mutated packets against the pure answer logic
// and against a live server over UDP and TCP. Nothing may throw or crash; every reply must decode;
// afterwards the server still answers correctly and its memory has not grown without bound.
import test from 'ava';
import dgram from 'node:dgram';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import dnsPacket from 'dns-packet';
import { answerQuery, buildResponder, relayReply, type ForwardQuery } from '../../src/dns/answer.js';
import { startDnsServer } from '../../src/dns/server.js';
import { memoryLogger } from '../helpers/memory-logger.js';
import { dnsNameProblem, frameMessage } from '../../src/dns/client/exchange.js';
import { testConfig } from '../helpers/fixtures.js';
import { startScriptedDns } from '../helpers/scripted-dns.js';
import { COOKIE, decode, optBytes, query, tcpConnect, testSnapshot, udpAsk, withAdditional } from './dns-util.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** mulberry32: small, seeded, good enough to drive mutations reproducibly. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
}

const SEEDS: Buffer[] = [
  query('5-courier.push.apple.com'),
  query('5-COURIER.push.apple.com', 'AAAA'),
  query('51-courier.push.apple.com', 'A', { edns: { options: COOKIE } }),
  query('forward.example.test', 'A', { edns: { size: 1232 } }),
  query('a.b.c.d.e.f.example.test', 'UNKNOWN_65'),
  query('.', 'NS'),
  withAdditional(query('7-courier.push.apple.com'), optBytes(512, 0, Buffer.from('000c0004aabbccdd', 'hex'))),
];

/** One hostile packet: random bytes, or a valid query truncated, bit-flipped, re-counted, looped. */
function mutant(rnd: (n: number) => number): Buffer {
  const kind = rnd(10);
  if (kind === 0) return Buffer.from(Array.from({ length: rnd(40) }, () => rnd(256)));           // tiny, often no header
  if (kind === 1) return Buffer.from(Array.from({ length: 12 + rnd(600) }, () => rnd(256)));     // random, readable header
  const m = Buffer.from(SEEDS[rnd(SEEDS.length)]!);
  m[2] = m[2]! & 0x7f;  // mostly queries, so the deeper paths run
  switch (kind) {
    case 2: return m.subarray(0, rnd(m.length + 1));                                               // truncated anywhere
    case 3: for (let i = 0, n = 1 + rnd(6); i < n; i++) m[rnd(m.length)] = rnd(256); return m;    // byte flips
    case 4: m.writeUInt16BE(rnd(4) === 0 ? 65535 : rnd(4), 4 + 2 * rnd(4)); return m;              // wrong counts
    case 5: {                                                                                      // compression loop in the name
      const at = 12 + rnd(Math.max(1, m.length - 14));
      m[at] = 0xc0 | rnd(64);
      m[at + 1] = rnd(256);
      return m;
    }
    case 6: {                                                                                      // oversized label
      const big = Buffer.concat([m.subarray(0, 12), Buffer.from([64 + rnd(192)]), Buffer.alloc(rnd(300), 0x61), m.subarray(12)]);
      return big;
    }
    case 7: return withAdditional(m, optBytes(rnd(65536), rnd(3), Buffer.from(Array.from({ length: rnd(30) }, () => rnd(256)))));
    case 8: { m[2] = rnd(256); m[3] = rnd(256); return m; }                                       // any opcode and flags
    default: return Buffer.concat([m, Buffer.from(Array.from({ length: rnd(50) }, () => rnd(256)))]); // trailing junk
  }
}

test('fuzz, pure: 200 000 hostile packets; no throw, every reply decodes and answers the right ID', (t) => {
  const config = testConfig();
  const responder = buildResponder(config, testSnapshot(config));
  const rnd = prng(0xd15ea5e);
  const seen = { reply: 0, forward: 0, drop: 0 };
  for (let i = 0; i < 200_000; i++) {
    const msg = mutant(rnd);
    const d = answerQuery(responder, msg, rnd(2) ? 'udp' : 'tcp', rnd(8) !== 0);
    seen[d.kind]++;
    if (d.kind === 'reply') {
      let r: ReturnType<typeof decode>;
      try {
        r = decode(d.bytes);
      } catch (err) {
        t.fail(`reply to ${msg.toString('hex')} does not decode: ${String(err)}`);
        return;
      }
      if (r.id !== msg.readUInt16BE(0) || !r.flag_qr) {
        t.fail(`reply to ${msg.toString('hex')}: id ${r.id}, qr ${r.flag_qr}`);
        return;
      }
    } else if (d.kind === 'forward' && dnsNameProblem(d.query.name) !== undefined) {
      t.fail(`forwarded a name exchange() refuses: ${JSON.stringify(d.query.name)}`);
      return;
    } else if (d.kind === 'drop' && msg.length >= 12 && (msg[2]! & 0x80) === 0) {
      t.fail(`dropped a query with a readable header: ${msg.toString('hex')}`);
      return;
    }
  }
  t.true(seen.reply > 50_000 && seen.forward > 5_000 && seen.drop > 5_000, JSON.stringify(seen));
});

test('fuzz, pure: 50 000 hostile upstream replies to relay; no throw, client ID on what is relayed', (t) => {
  const rnd = prng(0xfeed);
  const base = dnsPacket.encode({
    type: 'response', id: 9, flags: dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name: 'forward.example.test', type: 'A', class: 'IN' }],
    answers: [{ type: 'A', name: 'forward.example.test', ttl: 5, data: '198.51.100.1' }, { type: 'CNAME', name: 'forward.example.test', ttl: 5, data: 'x.example.test' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 4096, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as dnsPacket.OptAnswer],
  });
  const q: ForwardQuery = { id: 0x7777, rd: true, name: 'forward.example.test', type: 'A', class: 'IN', question: query('forward.example.test').subarray(12), edns: false, dnssecOk: false, checkingDisabled: false, limit: 512 };
  let relayed = 0;
  for (let i = 0; i < 50_000; i++) {
    const m = Buffer.from(base);
    for (let j = 0, n = 1 + rnd(4); j < n; j++) m[rnd(m.length)] = rnd(256);
    const cut = rnd(3) === 0 ? m.subarray(0, rnd(m.length)) : m;
    const out = relayReply({ ...q, edns: rnd(2) === 0, limit: [512, 1232, 65535][rnd(3)]! }, cut);
    if (out) {
      relayed++;
      if (out.readUInt16BE(0) !== 0x7777) return void t.fail(`relayed without the client ID: ${cut.toString('hex')}`);
    }
  }
  t.true(relayed > 10_000, `only ${relayed} relayed`);
});

test('fuzz, live: 100 000 packets over UDP and 25 000 frames over TCP; server answers right after, memory bounded', async (t) => {
  const upstream = await startScriptedDns((q) => ({ answers: [{ type: 'A', name: q.name, ttl: 1, data: '198.51.100.3' }] }));
  const config = testConfig({ upstreamDns: [`127.0.0.1:${upstream.port}`], dns: { allowClients: ['127.0.0.0/8'], rateLimit: 0, maxForwards: 64, forwardTimeoutMs: 500, tcpMaxPerClient: 64 } });
  // tcpMaxPerClient: all 40 fuzzing connections come from 127.0.0.1 and must each be served
  const server = await startDnsServer({ config, snapshot: testSnapshot(config), logger: memoryLogger(), listen: [{ host: '127.0.0.1', port: 0, family: 4 }] });
  t.teardown(async () => {
    await server.close();
    await upstream.close();
  });
  const port = server.endpoints[0]!.port;
  const rnd = prng(0xc0ffee);
  const client = dgram.createSocket('udp4');
  let replies = 0;
  let undecodable = 0;
  client.on('message', (m) => {
    replies++;
    try {
      decode(m);
    } catch {
      undecodable++;
    }
  });
  t.teardown(() => client.close());
  const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

  async function udpRound(count: number): Promise<void> {
    // libuv reads at most 32 datagrams per socket per loop turn: send fewer per turn, so few are lost
    for (let sent = 0; sent < count; sent += 25) {
      for (let i = 0; i < 25; i++) client.send(mutant(rnd), port, '127.0.0.1');
      await yieldNow();
    }
  }

  async function tcpRound(connections: number, frames: number): Promise<void> {
    await Promise.all(Array.from({ length: connections }, async (_, c) => {
      const conn = await tcpConnect(port);
      conn.socket.on('error', () => undefined);
      if (c % 10 === 9) {
        conn.socket.write(Buffer.from(Array.from({ length: 2000 }, () => rnd(256))));  // unframed garbage
      } else {
        for (let i = 0; i < frames; i += 50) {
          conn.socket.write(Buffer.concat(Array.from({ length: 50 }, () => frameMessage(mutant(rnd)))));
          await yieldNow();
        }
      }
      conn.socket.destroy();
    }));
  }

  // warm-up round, then measure the heap across the bulk of the run
  await udpRound(20_000);
  await tcpRound(10, 500);
  await settle();
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  await udpRound(80_000);
  await tcpRound(40, 500);
  await settle();
  gc();
  const heapAfter = process.memoryUsage().heapUsed;

  async function settle(): Promise<void> {
    for (let i = 0; i < 2000 && (server.stats().forwardsInFlight > 0 || server.stats().tcpConnections > 0); i++) {
      await new Promise<void>((resolve) => setTimeout(resolve, 5));  // waiting for the server to drain, bounded (10 s)
    }
    upstream.queries.length = 0;  // the scripted upstream keeps every query: not the server's memory
  }

  const stats = server.stats();
  t.true(stats.queries >= 110_000, `server saw ${stats.queries} packets`);
  t.true(replies > 50_000, `${replies} UDP replies`);
  t.is(undecodable, 0, 'every UDP reply decodes');
  t.is(stats.forwardsInFlight, 0);
  t.is(stats.tcpConnections, 0);
  t.is(stats.tcpPerClientRejected, 0);
  t.true(heapAfter - heapBefore < 4 * 1024 * 1024, `heap grew ${((heapAfter - heapBefore) / 1048576).toFixed(1)} MB`);

  const r = decode(await udpAsk(port, query('5-Courier.push.apple.com', 'A', { id: 4242 })));
  t.like(r, { id: 4242, rcode: 'NOERROR' });
  t.like(r.answers?.[0], { name: '5-Courier.push.apple.com', data: '198.18.100.5' });
  const tcp = await tcpConnect(port);
  t.teardown(() => tcp.socket.destroy());
  tcp.send(query('51-courier.push.apple.com', 'A', { id: 7 }));
  t.like(decode((await tcp.waitFor(1))[0]!), { id: 7, rcode: 'NXDOMAIN' });
  t.log(`server: ${JSON.stringify(stats)}; heap ${((heapAfter - heapBefore) / 1048576).toFixed(2)} MB`);
});
