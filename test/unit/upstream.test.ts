import test from 'ava';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { ApnsProxyError } from '../../src/core/errors.js';
import { EDNS_UDP_SIZE, FrameReader, exchange, frameMessage } from '../../src/dns/client/exchange.js';
import { startScriptedDns, type ScriptedQuery } from '../helpers/scripted-dns.js';

const TC = dnsPacket.TRUNCATED_RESPONSE;

function a(name: string, data: string, ttl = 60): dnsPacket.Answer {
  return { type: 'A', name, ttl, data };
}

const answerFor = (q: ScriptedQuery) => ({ answers: [a(q.name, '203.0.113.10')] });

test('UDP exchange: decoded reply, raw bytes, EDNS0 1232 and RD on the query', async (t) => {
  const dns = await startScriptedDns(answerFor);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  t.is(result.transport, 'udp');
  t.deepEqual(result.server, dns.hostPort);
  t.is(result.response.rcode, 'NOERROR');
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10']);
  t.deepEqual(dnsPacket.decode(result.raw).answers, result.response.answers);
  t.is(dns.queries.length, 1);
  const query = dns.queries[0]!.packet;
  t.true(query.flag_rd);
  const opt = query.additionals?.find((r) => r.type === 'OPT');
  t.is(opt && 'udpPayloadSize' in opt ? opt.udpPayloadSize : undefined, EDNS_UDP_SIZE);
});

test('recursionDesired: false clears RD', async (t) => {
  const dns = await startScriptedDns(answerFor);
  t.teardown(() => dns.close());
  await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000, recursionDesired: false });
  t.false(dns.queries[0]!.packet.flag_rd);
});

test('dnssecOk and checkingDisabled set DO and CD in the query; by default neither', async (t) => {
  const dns = await startScriptedDns(answerFor);
  t.teardown(() => dns.close());
  await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000, dnssecOk: true, checkingDisabled: true });
  const flags = dns.queries.map((x) => {
    const opt = x.packet.additionals?.find((r) => r.type === 'OPT') as dnsPacket.OptAnswer | undefined;
    return { do: opt?.flag_do, cd: x.packet.flag_cd };
  });
  t.deepEqual(flags, [{ do: false, cd: false }, { do: true, cd: true }]);
});

test('rcode is not interpreted: SERVFAIL is a valid reply', async (t) => {
  const dns = await startScriptedDns(() => ({ rcode: 'SERVFAIL' }));
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'AAAA' }, { timeoutMs: 1000 });
  t.is(result.response.rcode, 'SERVFAIL');
  t.is(dns.queries[0]!.type, 'AAAA');
});

test('TC over UDP: retried over TCP with a fresh query, TCP answer used', async (t) => {
  const dns = await startScriptedDns((q) => q.transport === 'udp'
    ? { flags: TC, answers: [a(q.name, '192.0.2.99')] }
    : { answers: [a(q.name, '203.0.113.10'), a(q.name, '203.0.113.11')] });
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 1000 });
  t.is(result.transport, 'tcp');
  t.false(result.response.flag_tc);
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10', '203.0.113.11']);
  t.deepEqual(dns.queries.map((q) => q.transport), ['udp', 'tcp']);
  t.is(dns.queries[1]!.name, 'big.example');
});

test('TC over UDP: TCP reply written in 2 chunks is reassembled', async (t) => {
  const dns = await startScriptedDns((q) => q.transport === 'udp'
    ? { flags: TC }
    : { answers: [a(q.name, '203.0.113.12')], tcpSplit: [20] });
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 1000 });
  t.is(result.transport, 'tcp');
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.12']);
});

test('TCP reply split inside the length prefix, after a wrong-ID frame, is reassembled', async (t) => {
  const dns = await startScriptedDns((q) => q.transport === 'udp'
    ? { flags: TC }
    : [{ id: (q.id + 1) % 65536, answers: [a(q.name, '192.0.2.66')] }, { answers: [a(q.name, '203.0.113.13')], tcpSplit: [1, 2, 30] }]);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 1000 });
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.13']);
});

test('IPv6 server, spelled non-canonically, over UDP and TCP', async (t) => {
  let dns;
  try {
    dns = await startScriptedDns((q) => q.transport === 'udp' ? { flags: TC } : answerFor(q), { host: '::1' });
  } catch (err) {
    t.log(`no IPv6 loopback here (${String(err)}): skipped`);
    t.pass();
    return;
  }
  t.teardown(() => dns.close());
  const result = await exchange({ host: '0:0::1', port: dns.port, family: 6 }, { name: 'v6.example', type: 'A' }, { timeoutMs: 1000 });
  t.is(result.transport, 'tcp');
  t.deepEqual(dns.queries.map((q) => [q.transport, q.remoteAddress]), [['udp', '::1'], ['tcp', '::1']]);
});

test('FrameReader: byte-by-byte and joined frames', (t) => {
  const one = Buffer.from('first message');
  const two = Buffer.from('second');
  const wire = Buffer.concat([frameMessage(one), frameMessage(two)]);
  const reader = new FrameReader();
  const out: Buffer[] = [];
  for (let i = 0; i < wire.length; i++) out.push(...reader.push(wire.subarray(i, i + 1)));
  t.deepEqual(out.map(String), ['first message', 'second']);
  t.is(reader.buffered, 0);
  t.deepEqual(new FrameReader().push(wire).map(String), ['first message', 'second']);
  const partial = new FrameReader();
  t.deepEqual(partial.push(wire.subarray(0, 5)), []);
  t.is(partial.buffered, 5);
});

test('a reply with the wrong ID is ignored, the right one accepted', async (t) => {
  const dns = await startScriptedDns((q) => [
    { id: (q.id + 1) % 65536, answers: [a(q.name, '192.0.2.66')] },
    { answers: [a(q.name, '203.0.113.10')] },
  ]);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10']);
});

test('replies with another question, type or class, or without QR, are ignored', async (t) => {
  const dns = await startScriptedDns((q) => [
    { questions: [{ name: 'other.example', type: 'A' }], answers: [a('other.example', '192.0.2.66')] },
    { questions: [{ name: q.name, type: 'AAAA' }] },
    { questions: [{ name: q.name, type: 'A', class: 'CH' }] },
    { questions: [], answers: [a(q.name, '192.0.2.67')] },
    { type: 'query', answers: [a(q.name, '192.0.2.68')] },
    { questions: [{ name: q.name.toUpperCase(), type: 'A' }], answers: [a(q.name, '203.0.113.10')] },
  ]);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  // the last one differs only in case: names compare case-insensitively
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10']);
});

test('only a reply with a different question → E_TIMEOUT', async (t) => {
  const dns = await startScriptedDns(() => ({ questions: [{ name: 'other.example', type: 'A' }] }));
  t.teardown(() => dns.close());
  await t.throwsAsync(exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 150 }),
    { instanceOf: ApnsProxyError, code: 'E_TIMEOUT' });
});

test('a reply from another source port is ignored', async (t) => {
  const dns = await startScriptedDns((q) => [
    { fromOtherPort: true, answers: [a(q.name, '192.0.2.66')] },
    { answers: [a(q.name, '203.0.113.10')], delayMs: 20 },
  ]);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10']);
});

test('garbage then a valid reply: the garbage does not end the wait', async (t) => {
  const dns = await startScriptedDns((q) => [{ raw: Buffer.from('garbage') }, { answers: [a(q.name, '203.0.113.10')] }]);
  t.teardown(() => dns.close());
  const result = await exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 });
  t.deepEqual(result.response.answers?.map((r) => r.type === 'A' && r.data), ['203.0.113.10']);
});

test('only undecodable bytes before the timeout → E_MALFORMED', async (t) => {
  const dns = await startScriptedDns(() => [{ raw: Buffer.from('garbage') }, { raw: Buffer.alloc(40, 0xff) }]);
  t.teardown(() => dns.close());
  const started = performance.now();
  await t.throwsAsync(exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 150 }),
    { instanceOf: ApnsProxyError, code: 'E_MALFORMED' });
  t.true(performance.now() - started >= 150);
});

test('silence → E_TIMEOUT naming server and name, not before the timeout', async (t) => {
  const dns = await startScriptedDns(() => ({ drop: true }));
  t.teardown(() => dns.close());
  const started = performance.now();
  const err = await t.throwsAsync(exchange(dns.hostPort, { name: 'quiet.example', type: 'A' }, { timeoutMs: 150 }),
    { instanceOf: ApnsProxyError, code: 'E_TIMEOUT' });
  t.true(performance.now() - started >= 150);
  t.true(err?.message.includes(`127.0.0.1:${dns.port}`));
  t.true(err?.message.includes('quiet.example'));
});

test('a wrong-ID reply only → E_TIMEOUT, not E_MALFORMED', async (t) => {
  const dns = await startScriptedDns((q) => ({ id: (q.id + 1) % 65536 }));
  t.teardown(() => dns.close());
  await t.throwsAsync(exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 150 }),
    { instanceOf: ApnsProxyError, code: 'E_TIMEOUT' });
});

test('the TCP retry shares the remaining time budget', async (t) => {
  // the truncated reply comes after 300 of 400 ms: a fresh budget for TCP would end at 700 ms
  const dns = await startScriptedDns((q) => q.transport === 'udp' ? { flags: TC, delayMs: 300 } : { drop: true });
  t.teardown(() => dns.close());
  const started = performance.now();
  const err = await t.throwsAsync(exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 400 }),
    { instanceOf: ApnsProxyError, code: 'E_TIMEOUT' });
  const elapsed = performance.now() - started;
  t.true(elapsed >= 400 && elapsed < 650, `elapsed ${elapsed}`);
  t.regex(err?.message ?? '', /tcp/);
  t.deepEqual(dns.queries.map((q) => q.transport), ['udp', 'tcp']);
});

test('TCP connection closed without a reply → E_NETWORK', async (t) => {
  const dns = await startScriptedDns((q) => q.transport === 'udp' ? { flags: TC } : { close: true });
  t.teardown(() => dns.close());
  await t.throwsAsync(exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 1000 }),
    { instanceOf: ApnsProxyError, code: 'E_NETWORK' });
});

test('undecodable TCP reply → E_MALFORMED at once', async (t) => {
  const dns = await startScriptedDns((q) => q.transport === 'udp' ? { flags: TC } : { raw: Buffer.from('garbage') });
  t.teardown(() => dns.close());
  const started = performance.now();
  await t.throwsAsync(exchange(dns.hostPort, { name: 'big.example', type: 'A' }, { timeoutMs: 1000 }),
    { instanceOf: ApnsProxyError, code: 'E_MALFORMED' });
  t.true(performance.now() - started < 900);
});

test('nobody listening (ICMP port unreachable) → E_NETWORK', async (t) => {
  const dns = await startScriptedDns(() => ({ drop: true }));
  const server = dns.hostPort;
  await dns.close();
  await t.throwsAsync(exchange(server, { name: 'host.example', type: 'A' }, { timeoutMs: 1000 }),
    { instanceOf: ApnsProxyError, code: 'E_NETWORK' });
});

test('IDs and source ports differ across queries', async (t) => {
  const dns = await startScriptedDns(answerFor);
  t.teardown(() => dns.close());
  const n = 20;
  for (let i = 0; i < n; i++) await exchange(dns.hostPort, { name: `h${i}.example`, type: 'A' }, { timeoutMs: 1000 });
  t.is(dns.queries.length, n);
  // random 16-bit IDs and OS-random ports may collide by chance, rarely more than once
  t.true(new Set(dns.queries.map((q) => q.id)).size >= n - 2);
  t.true(new Set(dns.queries.map((q) => q.remotePort)).size >= n - 2);
});

test('abort signal rejects with its reason', async (t) => {
  const controller = new AbortController();
  const dns = await startScriptedDns(() => {
    controller.abort();
    return { drop: true };
  });
  t.teardown(() => dns.close());
  const nameOfRejection = (p: Promise<unknown>): Promise<unknown> =>
    p.then(() => 'resolved', (err: unknown) => (err as { name?: unknown }).name);
  const started = performance.now();
  t.is(await nameOfRejection(exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 5000, signal: controller.signal })), 'AbortError');
  t.true(performance.now() - started < 4000);
  t.is(dns.queries.length, 1);
  // already aborted: nothing is sent
  t.is(await nameOfRejection(exchange(dns.hostPort, { name: 'host.example', type: 'A' }, { timeoutMs: 5000, signal: controller.signal })), 'AbortError');
  t.is(dns.queries.length, 1);
});

test('invalid arguments are rejected with the bad value in the message', async (t) => {
  const server = { host: '127.0.0.1', port: 53, family: 4 } as const;
  const q = { name: 'host.example', type: 'A' };
  await t.throwsAsync(exchange(server, q, { timeoutMs: 0 }), { message: /timeoutMs.*got 0/ });
  await t.throwsAsync(exchange(server, q, { timeoutMs: 1.5 }), { message: /timeoutMs.*got 1\.5/ });
  await t.throwsAsync(exchange({ ...server, port: 70000 }, q, { timeoutMs: 100 }), { message: /70000/ });
  await t.throwsAsync(exchange({ host: 'dns.example', port: 53, family: 4 }, q, { timeoutMs: 100 }), { message: /dns\.example/ });
  await t.throwsAsync(exchange(server, { name: 'host.example', type: 'BOGUS' }, { timeoutMs: 100 }), { message: /BOGUS/ });
  await t.throwsAsync(exchange(server, { name: 'host.example', type: 'A', class: 'XX' }, { timeoutMs: 100 }), { message: /XX/ });
  await t.throwsAsync(exchange(server, { name: 'a..b', type: 'A' }, { timeoutMs: 100 }), { message: /a\.\.b.*empty label/ });
  await t.throwsAsync(exchange(server, { name: `${'x'.repeat(64)}.example`, type: 'A' }, { timeoutMs: 100 }), { message: /63/ });
});

function activeHandles(): number {
  return process.getActiveResourcesInfo().length;
}

function summary(): string {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${r}×${n}`).join(', ');
}

async function handlesSettle(baseline: number): Promise<number> {
  // closed sockets leave the active list only once libuv has run their close callbacks
  for (let i = 0; i < 200 && activeHandles() > baseline; i++) await new Promise((r) => setImmediate(r));
  return activeHandles();
}

test.serial('200 exchanges (UDP, TCP retries, timeouts) leave no handles behind', async (t) => {
  const dns = await startScriptedDns((q) => {
    const n = Number(q.name.slice(1, q.name.indexOf('.')));
    if (n % 10 === 0) return q.transport === 'udp' ? { flags: TC } : answerFor(q);
    if (n % 25 === 1) return { drop: true };
    return answerFor(q);
  });
  t.teardown(() => dns.close());
  await exchange(dns.hostPort, { name: 'h2.example', type: 'A' }, { timeoutMs: 1000 });  // warm up
  const baseline = await handlesSettle(activeHandles());
  // a short timeout only where silence is scripted, so a busy machine cannot turn answers into timeouts
  const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) =>
    exchange(dns.hostPort, { name: `h${i}.example`, type: 'A' }, { timeoutMs: i % 25 === 1 ? 100 : 5000 })));
  t.is(results.filter((r) => r.status === 'rejected').length, 8);
  t.is(results.filter((r) => r.status === 'fulfilled' && r.value.transport === 'tcp').length, 20);
  const after = await handlesSettle(baseline);
  t.true(after <= baseline, `handles: ${after} > ${baseline}: ${summary()}`);
});
