import test from 'ava';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import type { HostPort } from '../../src/core/net.js';
import { createResolver, type QueryEvent, type ResolverOptions } from '../../src/dns/client/resolver.js';
import { startScriptedDns, type ScriptedHandler, type ScriptedQuery } from '../helpers/scripted-dns.js';

// the chain operators see for a courier (DESIGN.md 5)
const COURIER = '5-courier.push.apple.com';
const MIDDLE = '5.courier-push-apple.com.akadns.net';
const REGION = 'eu-courier-4.push-apple.com.akadns.net';

function a(name: string, data: string, ttl = 60): dnsPacket.Answer {
  return { type: 'A', name, ttl, data };
}
function cname(name: string, data: string, ttl = 60): dnsPacket.Answer {
  return { type: 'CNAME', name, ttl, data };
}

const isA = (q: ScriptedQuery, name: string): boolean => q.name.toLowerCase() === name && q.type === 'A';

async function scripted(t: { teardown(fn: () => unknown): void }, handler: ScriptedHandler) {
  const dns = await startScriptedDns(handler);
  t.teardown(() => dns.close());
  return dns;
}

function resolverFor(servers: readonly HostPort[], extra: Partial<ResolverOptions> = {}) {
  return createResolver({ servers, timeoutMs: 1000, ...extra });
}

test('CNAME chain → sorted unique addresses, min TTL over the chain, lower-case chain', async (t) => {
  const dns = await scripted(t, (q) => ({
    // records deliberately out of order and in mixed case
    answers: [
      a(REGION.toUpperCase(), '203.0.113.42', 60),
      cname(MIDDLE, REGION, 20),
      a(REGION, '203.0.113.11', 120),
      cname('5-Courier.Push.Apple.Com', MIDDLE.toUpperCase(), 3600),
      a(REGION, '203.0.113.30', 60),
      a(REGION, '203.0.113.11', 60),
    ],
  }));
  const r = await resolverFor([dns.hostPort]).resolveA('5-Courier.push.apple.com.');
  t.deepEqual(r, {
    kind: 'ok',
    addresses: ['203.0.113.11', '203.0.113.30', '203.0.113.42'],
    ttl: 20,
    chain: [COURIER, MIDDLE, REGION],
  });
  t.is(dns.queries.length, 1);
});

test('min TTL can come from an A record', async (t) => {
  const dns = await scripted(t, () => ({
    answers: [cname(COURIER, MIDDLE, 300), cname(MIDDLE, REGION, 300), a(REGION, '203.0.113.10', 7), a(REGION, '203.0.113.12', 60)],
  }));
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.like(r, { kind: 'ok', ttl: 7 });
});

test('chain split across two answers: the target is queried', async (t) => {
  const dns = await scripted(t, (q) => {
    if (isA(q, COURIER)) return { answers: [cname(COURIER, MIDDLE, 50)] };
    if (isA(q, MIDDLE)) return { answers: [cname(MIDDLE, REGION, 300), a(REGION, '203.0.113.10', 40)] };
    return { rcode: 'SERVFAIL' };
  });
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.deepEqual(r, { kind: 'ok', addresses: ['203.0.113.10'], ttl: 40, chain: [COURIER, MIDDLE, REGION] });
  t.deepEqual(dns.queries.map((q) => q.name), [COURIER, MIDDLE]);
});

test('CNAME loop inside one answer → E_CNAME_LOOP', async (t) => {
  const dns = await scripted(t, () => ({ answers: [cname(COURIER, MIDDLE), cname(MIDDLE, COURIER), a(REGION, '203.0.113.10')] }));
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.like(r, { kind: 'error', code: 'E_CNAME_LOOP' });
});

test('CNAME loop across answers → E_CNAME_LOOP', async (t) => {
  const dns = await scripted(t, (q) => isA(q, COURIER)
    ? { answers: [cname(COURIER, MIDDLE)] }
    : { answers: [cname(MIDDLE, COURIER.toUpperCase())] });
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.like(r, { kind: 'error', code: 'E_CNAME_LOOP' });
  t.is(dns.queries.length, 2);
});

test('a chain longer than maxChain → E_CNAME_LONG; exactly maxChain hops is fine', async (t) => {
  const dns = await scripted(t, () => ({
    answers: [cname('n0.example', 'n1.example'), cname('n1.example', 'n2.example'), cname('n2.example', 'n3.example'), a('n3.example', '203.0.113.10')],
  }));
  t.like(await resolverFor([dns.hostPort], { maxChain: 2 }).resolveA('n0.example'), { kind: 'error', code: 'E_CNAME_LONG' });
  t.like(await resolverFor([dns.hostPort], { maxChain: 3 }).resolveA('n0.example'), { kind: 'ok', addresses: ['203.0.113.10'] });
});

test('maxChain also bounds chains that need re-queries', async (t) => {
  // every answer aliases the asked name to a new one: without the bound this would never end
  const dns = await scripted(t, (q) => ({ answers: [cname(q.name, `x${q.name}`)] }));
  const r = await resolverFor([dns.hostPort], { maxChain: 4 }).resolveA('a.example');
  t.like(r, { kind: 'error', code: 'E_CNAME_LONG' });
  t.regex((r as { message: string }).message, /CNAME chain too long: at least 5 hops from a\.example, the limit is 4/);
  t.is(dns.queries.length, 5);
});

test('a 20-hop CNAME chain → E_CNAME_LONG naming its hops and the limit, not E_CNAME_LOOP', async (t) => {
  const hops = Array.from({ length: 20 }, (_, i) => cname(`h${i}.example`, `h${i + 1}.example`));
  const dns = await scripted(t, () => ({ answers: [...hops.reverse(), a('h20.example', '203.0.113.10')] }));
  const r = await resolverFor([dns.hostPort]).resolveA('h0.example');
  t.like(r, { kind: 'error', code: 'E_CNAME_LONG' });
  t.regex((r as { message: string }).message, /: CNAME chain too long: 20 hops from h0\.example, the limit is 8$/);
  t.is(dns.queries.length, 1);
});

test('a loop beyond the hop limit is still E_CNAME_LOOP', async (t) => {
  const hops = Array.from({ length: 12 }, (_, i) => cname(`h${i}.example`, `h${i + 1}.example`));
  const dns = await scripted(t, () => ({ answers: [...hops, cname('h12.example', 'h5.example')] }));
  const r = await resolverFor([dns.hostPort]).resolveA('h0.example');
  t.like(r, { kind: 'error', code: 'E_CNAME_LOOP' });
  t.regex((r as { message: string }).message, /CNAME loop h0\.example -> .* -> h12\.example -> h5\.example/);
});

test('NXDOMAIN → nxdomain (final, not an error)', async (t) => {
  const dns = await scripted(t, () => ({ rcode: 'NXDOMAIN' }));
  const other = await scripted(t, () => ({ answers: [a('51-courier.push.apple.com', '203.0.113.10')] }));
  const r = await resolverFor([dns.hostPort, other.hostPort]).resolveA('51-courier.push.apple.com');
  t.deepEqual(r, { kind: 'nxdomain', chain: ['51-courier.push.apple.com'] });
  t.is(other.queries.length, 0);
});

test('NXDOMAIN after a CNAME in the same answer → nxdomain with the chain', async (t) => {
  const dns = await scripted(t, () => ({ rcode: 'NXDOMAIN', answers: [cname(COURIER, MIDDLE), cname(MIDDLE, REGION)] }));
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.deepEqual(r, { kind: 'nxdomain', chain: [COURIER, MIDDLE, REGION] });
});

test('NXDOMAIN for the re-queried CNAME target → nxdomain with the chain', async (t) => {
  const dns = await scripted(t, (q) => isA(q, COURIER) ? { answers: [cname(COURIER, MIDDLE)] } : { rcode: 'NXDOMAIN' });
  const r = await resolverFor([dns.hostPort]).resolveA(COURIER);
  t.deepEqual(r, { kind: 'nxdomain', chain: [COURIER, MIDDLE] });
});

test('NOERROR without an A → nodata', async (t) => {
  const dns = await scripted(t, (q) => ({ answers: [{ type: 'AAAA', name: q.name, ttl: 60, data: '2001:db8::1' }] }));
  t.deepEqual(await resolverFor([dns.hostPort]).resolveA(COURIER), { kind: 'nodata', chain: [COURIER] });
});

test('NOERROR without an A at the end of the chain → nodata with the chain', async (t) => {
  const dns = await scripted(t, (q) => isA(q, COURIER) ? { answers: [cname(COURIER, MIDDLE), cname(MIDDLE, REGION)] } : {});
  t.deepEqual(await resolverFor([dns.hostPort]).resolveA(COURIER), { kind: 'nodata', chain: [COURIER, MIDDLE, REGION] });
  t.deepEqual(dns.queries.map((q) => q.name), [COURIER, REGION]);
});

test('A records whose owner is not on the chain are ignored', async (t) => {
  const dns = await scripted(t, (q) => isA(q, COURIER)
    ? {
      answers: [
        a('evil.example', '192.0.2.66'), a(COURIER, '192.0.2.67'), cname(COURIER, MIDDLE), a('push.apple.com', '192.0.2.68'),
        cname(MIDDLE, REGION), a(REGION, '203.0.113.10'), a(`x.${REGION}`, '192.0.2.69'),
      ],
    }
    : { answers: [a('evil.example', '192.0.2.66')] });
  t.like(await resolverFor([dns.hostPort]).resolveA(COURIER), { kind: 'ok', addresses: ['203.0.113.10'] });
  // only unrelated records: that is no data for our name
  t.deepEqual(await resolverFor([dns.hostPort]).resolveA('other.example'), { kind: 'nodata', chain: ['other.example'] });
});

test('two different CNAMEs for one owner → E_MALFORMED', async (t) => {
  const dns = await scripted(t, () => ({ answers: [cname(COURIER, MIDDLE), cname(COURIER, REGION), a(REGION, '203.0.113.10')] }));
  t.like(await resolverFor([dns.hostPort]).resolveA(COURIER), { kind: 'error', code: 'E_MALFORMED' });
});

test('SERVFAIL on the first server, the second answers', async (t) => {
  const one = await scripted(t, () => ({ rcode: 'SERVFAIL' }));
  const two = await scripted(t, (q) => ({ answers: [a(q.name, '203.0.113.10')] }));
  const r = await resolverFor([one.hostPort, two.hostPort]).resolveA(COURIER);
  t.like(r, { kind: 'ok', addresses: ['203.0.113.10'] });
  t.is(one.queries.length, 1);
  t.is(two.queries.length, 1);
});

test('REFUSED → E_REFUSED; other rcodes → E_RCODE; SERVFAIL → E_SERVFAIL', async (t) => {
  const refused = await scripted(t, () => ({ rcode: 'REFUSED' }));
  const notimp = await scripted(t, () => ({ rcode: 'NOTIMP' }));
  const servfail = await scripted(t, () => ({ rcode: 'SERVFAIL' }));
  t.like(await resolverFor([refused.hostPort]).resolveA(COURIER), { kind: 'error', code: 'E_REFUSED' });
  t.like(await resolverFor([notimp.hostPort]).resolveA(COURIER), { kind: 'error', code: 'E_RCODE' });
  t.like(await resolverFor([servfail.hostPort]).resolveA(COURIER), { kind: 'error', code: 'E_SERVFAIL' });
});

test('timeout on the first server, the second answers', async (t) => {
  const one = await scripted(t, () => ({ drop: true }));
  const two = await scripted(t, (q) => ({ answers: [a(q.name, '203.0.113.10')] }));
  const started = performance.now();
  const r = await resolverFor([one.hostPort, two.hostPort], { timeoutMs: 150 }).resolveA(COURIER);
  t.true(performance.now() - started >= 150);
  t.like(r, { kind: 'ok', addresses: ['203.0.113.10'] });
  t.is(one.queries.length, 1);
  t.is(two.queries.length, 1);
});

test('all servers fail → error with the last code, naming every server', async (t) => {
  const one = await scripted(t, () => ({ rcode: 'SERVFAIL' }));
  const two = await scripted(t, () => ({ drop: true }));
  const r = await resolverFor([one.hostPort, two.hostPort], { timeoutMs: 150 }).resolveA(COURIER);
  t.is(r.kind, 'error');
  if (r.kind !== 'error') return;
  t.is(r.code, 'E_TIMEOUT');
  t.true(r.message.includes(`127.0.0.1:${one.port}`), r.message);
  t.true(r.message.includes(`127.0.0.1:${two.port}`), r.message);
  t.true(r.message.includes(COURIER), r.message);
});

test('undecodable replies only → E_MALFORMED', async (t) => {
  const dns = await scripted(t, () => ({ raw: Buffer.from([1, 2, 3]) }));
  t.like(await resolverFor([dns.hostPort], { timeoutMs: 150 }).resolveA(COURIER), { kind: 'error', code: 'E_MALFORMED' });
});

test('truncated UDP answer → TCP answer used; onQuery reports each query', async (t) => {
  const dns = await scripted(t, (q) => q.transport === 'udp'
    ? { flags: dnsPacket.TRUNCATED_RESPONSE, answers: [a(q.name, '192.0.2.66')] }
    : { answers: [a(q.name, '203.0.113.10'), a(q.name, '203.0.113.11')] });
  const events: QueryEvent[] = [];
  const r = await resolverFor([dns.hostPort], { onQuery: (e) => events.push(e) }).resolveA(COURIER);
  t.like(r, { kind: 'ok', addresses: ['203.0.113.10', '203.0.113.11'] });
  t.is(events.length, 1);
  t.like(events[0], { name: COURIER, server: `127.0.0.1:${dns.port}`, transport: 'tcp', outcome: 'NOERROR' });
  t.true(events[0]!.ms >= 0);
});

test('onQuery reports failures with the error code, and its exceptions are ignored', async (t) => {
  const dns = await scripted(t, () => ({ rcode: 'SERVFAIL' }));
  const events: QueryEvent[] = [];
  const r = await resolverFor([dns.hostPort], {
    onQuery: (e) => {
      events.push(e);
      throw new Error('logger broke');
    },
  }).resolveA(COURIER);
  t.like(r, { kind: 'error', code: 'E_SERVFAIL' });
  t.like(events[0], { outcome: 'SERVFAIL', transport: 'udp' });
  const silent = await scripted(t, () => ({ drop: true }));
  events.length = 0;
  await resolverFor([silent.hostPort], { timeoutMs: 100, onQuery: (e) => events.push(e) }).resolveA(COURIER);
  t.like(events[0], { outcome: 'E_TIMEOUT', transport: undefined });
});

test('resolveA never throws: exchange failures and bad names become errors', async (t) => {
  const server = { host: '127.0.0.1', port: 53, family: 4 } as const;
  const throwing = createResolver({ servers: [server], timeoutMs: 100, exchange: async () => { throw new TypeError('boom'); } });
  const r = await throwing.resolveA(COURIER);
  t.like(r, { kind: 'error', code: 'E_NETWORK' });
  t.regex(r.kind === 'error' ? r.message : '', /boom/);
  t.like(await throwing.resolveA('a..b'), { kind: 'error', code: 'E_MALFORMED' });
  t.like(await throwing.resolveA(42 as unknown as string), { kind: 'error', code: 'E_MALFORMED' });
});

test('injected exchange is used for every query, with timeoutMs and type A', async (t) => {
  const seen: string[] = [];
  const server = { host: '192.0.2.53', port: 53, family: 4 } as const;
  const resolver = createResolver({
    servers: [server], timeoutMs: 321,
    exchange: async (srv, question, opts) => {
      seen.push(`${srv.host} ${question.name} ${question.type} ${opts.timeoutMs}`);
      const response = dnsPacket.decode(dnsPacket.encode({
        type: 'response', id: 1, questions: [{ name: question.name, type: 'A' }], answers: [a(question.name, '203.0.113.10')],
      })) as Awaited<ReturnType<NonNullable<ResolverOptions['exchange']>>>['response'];
      return { response, raw: Buffer.alloc(0), transport: 'udp', server: srv };
    },
  });
  t.like(await resolver.resolveA(COURIER), { kind: 'ok', addresses: ['203.0.113.10'] });
  t.deepEqual(seen, [`192.0.2.53 ${COURIER} A 321`]);
});

function courierHandler(delayMs: number): ScriptedHandler {
  return (q) => {
    const n = q.name.slice(0, q.name.indexOf('-'));
    if (q.name.startsWith(`${n}-courier`)) {
      return {
        delayMs,
        answers: [
          cname(q.name, `${n}.courier-push-apple.com.akadns.net`, 300),
          cname(`${n}.courier-push-apple.com.akadns.net`, REGION, 60),
          a(REGION, '203.0.113.10', 20), a(REGION, '203.0.113.11', 20),
        ],
      };
    }
    return { rcode: 'SERVFAIL' };
  };
}

test.serial('resolveMany: 254 names in well under a second with 32 in flight at most', async (t) => {
  const dns = await scripted(t, courierHandler(2));
  const names = Array.from({ length: 254 }, (_, i) => `${i + 1}-courier.push.apple.com`);
  const started = performance.now();
  const results = await resolverFor([dns.hostPort]).resolveMany(names, 32);
  const elapsed = performance.now() - started;
  t.true(elapsed < 1000, `took ${elapsed} ms`);
  t.deepEqual([...results.keys()], names);
  t.true([...results.values()].every((r) => r.kind === 'ok' && r.addresses.length === 2 && r.ttl === 20));
  t.is(dns.queries.length, 254);
  t.true(dns.maxInFlight <= 32, `max in flight ${dns.maxInFlight}`);
  t.true(dns.maxInFlight >= 16, `max in flight ${dns.maxInFlight}: the pool is not used`);
});

test('resolveMany respects a small bound, keys by the given names and asks once per name', async (t) => {
  const dns = await scripted(t, courierHandler(5));
  const names = ['1-courier.push.apple.com', '2-Courier.push.apple.com', '1-courier.push.apple.com',
    ...Array.from({ length: 17 }, (_, i) => `${i + 3}-courier.push.apple.com`)];
  const results = await resolverFor([dns.hostPort]).resolveMany(names, 4);
  t.is(results.size, 19);
  t.like(results.get('2-Courier.push.apple.com'), { kind: 'ok', chain: ['2-courier.push.apple.com', '2.courier-push-apple.com.akadns.net', REGION] });
  t.is(dns.queries.length, 19);
  t.true(dns.maxInFlight <= 4 && dns.maxInFlight >= 2, `max in flight ${dns.maxInFlight}`);
  t.deepEqual(await resolverFor([dns.hostPort]).resolveMany([], 4), new Map());
});

test('resolveMany rejects a bad concurrency, naming it', async (t) => {
  const resolver = resolverFor([{ host: '127.0.0.1', port: 53, family: 4 }]);
  await t.throwsAsync(resolver.resolveMany(['a.example'], 0), { message: /concurrency.*got 0/ });
  await t.throwsAsync(resolver.resolveMany(['a.example'], 2.5), { message: /concurrency.*got 2\.5/ });
});

test('option validation names the bad value', (t) => {
  const server = { host: '127.0.0.1', port: 53, family: 4 } as const;
  const make = (o: unknown) => () => createResolver(o as ResolverOptions);
  t.throws(make({ servers: [], timeoutMs: 100 }), { message: /servers.*got \[\]/ });
  t.throws(make({ servers: '8.8.8.8', timeoutMs: 100 }), { message: /servers.*got "8\.8\.8\.8"/ });
  t.throws(make({ servers: [server, { host: 'dns.example', port: 53, family: 4 }], timeoutMs: 100 }), { message: /servers\[1\].*dns\.example/ });
  t.throws(make({ servers: [{ ...server, port: 0 }], timeoutMs: 100 }), { message: /servers\[0\].*"port":0/ });
  t.throws(make({ servers: [server], timeoutMs: 0 }), { message: /timeoutMs.*got 0/ });
  t.throws(make({ servers: [server], timeoutMs: '100' }), { message: /timeoutMs.*got "100"/ });
  t.throws(make({ servers: [server], timeoutMs: 1.5 }), { message: /timeoutMs.*got 1\.5/ });
  t.throws(make({ servers: [server] }), { message: /timeoutMs.*got nothing/ });
  t.throws(make({ servers: [server], timeoutMs: 100, maxChain: 0 }), { message: /maxChain.*got 0/ });
  t.throws(make({ servers: [server], timeoutMs: 100, exchange: 'udp' }), { message: /exchange.*got "udp"/ });
  t.throws(make({ servers: [server], timeoutMs: 100, onQuery: 1 }), { message: /onQuery.*got 1/ });
  t.throws(make(undefined), { message: /options.*got nothing/ });
  t.notThrows(make({ servers: [server], timeoutMs: 100, maxChain: 8 }));
});
