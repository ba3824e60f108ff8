// The drift check's pure parts: reading `nft -j list table` (nft 1.0.6's real JSON) and comparing it
// with what was applied.
import test from 'ava';
import { coverage, tableDrift, type AppliedTable } from '../../src/nft/drift.js';
import { type LiveTable, parseTableJson } from '../../src/nft/runner.js';
import { elementMap } from '../../src/nft/elements.js';

// captured with `ip netns exec x nft -j list table inet apns_proxy` (nft 1.0.6; rules left out)
const LISTING = '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "apns_proxy", "handle": 2}}, {"map": {"family": "inet", "name": "couriers4", "table": "apns_proxy", "type": ["ipv4_addr", "integer"], "handle": 5, "comment": "apns-proxy 11ffb3f08edb6c93", "map": "ipv4_addr", "elem": [[{"elem": {"val": {"concat": ["198.18.100.1", 0]}, "comment": "1-courier.push.apple.com", "counter": {"packets": 0, "bytes": 0}}}, "203.0.113.10"]], "stmt": [{"counter": null}]}}, {"set": {"family": "inet", "name": "vipports", "table": "apns_proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 6, "elem": [{"concat": ["198.18.100.1", "udp", 123]}, {"concat": ["198.18.100.1", "tcp", 443]}]}}, {"set": {"family": "inet", "name": "vips", "table": "apns_proxy", "type": "ipv4_addr", "handle": 7, "elem": ["198.18.100.1"]}}, {"set": {"family": "inet", "name": "direct", "table": "apns_proxy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 8, "elem": [{"concat": ["203.0.113.10", "tcp", 443]}]}}, {"set": {"family": "inet", "name": "upstream", "table": "apns_proxy", "type": "ipv4_addr", "handle": 9, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 25}}, {"prefix": {"addr": "10.0.0.128", "len": 25}}, "198.51.100.7", {"prefix": {"addr": "198.51.100.128", "len": 25}}, {"prefix": {"addr": "203.0.113.0", "len": 24}}]}}, {"chain": {"family": "inet", "table": "apns_proxy", "name": "prerouting", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}]}';

const APPLIED: AppliedTable = {
  handle: 2,
  stamp: 'apns-proxy 11ffb3f08edb6c93',
  elements: elementMap([{ vip: '198.18.100.1', slot: 0, address: '203.0.113.10', name: '1-courier.push.apple.com' }]),
  ports: [{ vip: '198.18.100.1', proto: 'tcp', port: 443 }, { vip: '198.18.100.1', proto: 'udp', port: 123 }],
  direct: [{ address: '203.0.113.10', proto: 'tcp', port: 443 }],
  upstream: ['10.0.0.0/24', '198.51.100.7/32', '198.51.100.128/25', '203.0.113.0/24'],
};

test('parseTableJson reads the handle, the map and every set of one table listing', (t) => {
  const live = parseTableJson(LISTING, 'apns_proxy');
  t.is(live.handle, 2);
  t.is(live.map!.stamp, 'apns-proxy 11ffb3f08edb6c93');
  t.deepEqual([...live.map!.elements.values()], [{ vip: '198.18.100.1', slot: 0, address: '203.0.113.10', name: '1-courier.push.apple.com', packets: 0 }]);
  t.deepEqual(live.ports, [{ vip: '198.18.100.1', proto: 'udp', port: 123 }, { vip: '198.18.100.1', proto: 'tcp', port: 443 }]);
  t.deepEqual(live.vips, ['198.18.100.1']);
  t.deepEqual(live.direct, [{ address: '203.0.113.10', proto: 'tcp', port: 443 }]);
  t.deepEqual(live.upstream, ['10.0.0.0/25', '10.0.0.128/25', '198.51.100.7', '198.51.100.128/25', '203.0.113.0/24']);
  // an empty set has no "elem"; a missing set or map is null; a range is "a-b"
  const doc = JSON.parse(LISTING) as { nftables: Record<string, { name?: string; elem?: unknown[] }>[] };
  doc.nftables = doc.nftables.filter((o) => o.map === undefined && o.set?.name !== 'direct');
  for (const o of doc.nftables) if (o.set?.name === 'vips') delete o.set.elem;
  for (const o of doc.nftables) if (o.set?.name === 'upstream') o.set.elem = [{ range: ['192.0.2.10', '192.0.2.20'] }];
  const partial = parseTableJson(JSON.stringify(doc), 'apns_proxy');
  t.is(partial.map, null);
  t.is(partial.direct, null);
  t.deepEqual(partial.vips, []);
  t.deepEqual(partial.upstream, ['192.0.2.10-192.0.2.20']);
  t.throws(() => parseTableJson(LISTING.replace('"udp", 123', '"sctp", 123'), 'apns_proxy'), { message: /unexpected set element/ });
});

test('tableDrift: nothing when the listing is what was applied (nft spells /32 bare and keeps adjacent prefixes apart)', (t) => {
  t.deepEqual(tableDrift('apns_proxy', APPLIED, parseTableJson(LISTING, 'apns_proxy')), []);
});

test('tableDrift names each part that differs; a removed or re-created table is one line', (t) => {
  const live = parseTableJson(LISTING, 'apns_proxy');
  t.deepEqual(tableDrift('apns_proxy', APPLIED, null), ['table inet apns_proxy was removed behind our back']);
  t.deepEqual(tableDrift('apns_proxy', APPLIED, { ...live, handle: 7, ports: [] }), ['table inet apns_proxy was re-created behind our back']);
  t.deepEqual(tableDrift('apns_proxy', { ...APPLIED, handle: null }, { ...live, handle: 7 }), [], 'handle unknown: not compared');
  const tampered: LiveTable = {
    ...live,
    ports: live.ports!.slice(1),
    vips: [...live.vips!, '198.18.100.9'],
    direct: [...live.direct!, { address: '198.51.100.99', proto: 'tcp', port: 22 }],
    upstream: ['203.0.113.0/24'],
  };
  t.deepEqual(tableDrift('apns_proxy', APPLIED, tampered), [
    'set vipports differs from what was applied (1 missing, 0 foreign elements: missing 198.18.100.1 . udp . 123)',
    'set vips differs from what was applied (0 missing, 1 foreign elements: foreign 198.18.100.9)',
    'set direct differs from what was applied (0 missing, 1 foreign elements: foreign 198.51.100.99 . tcp . 22)',
    'set upstream differs from allowedUpstreamNets (holds 203.0.113.0/24; want 10.0.0.0/24, 198.51.100.7/32, 198.51.100.128/25, 203.0.113.0/24)',
  ]);
  t.deepEqual(tableDrift('apns_proxy', APPLIED, { ...live, map: null, direct: null }), ['map apns_proxy couriers4 is gone', 'set direct is gone']);
  t.deepEqual(tableDrift('apns_proxy', APPLIED, { ...live, map: { stamp: 'apns-proxy other', elements: new Map() } }), ['map apns_proxy couriers4 carries another stamp (apns-proxy other)']);
  t.deepEqual(tableDrift('apns_proxy', APPLIED, { ...live, map: { ...live.map!, elements: new Map() } }), ['the kernel map differs from what was applied (1 missing, 0 changed, 0 foreign elements)']);
});

test('coverage: addresses, prefixes and ranges as merged ranges; unreadable items give null', (t) => {
  t.deepEqual(coverage(['10.0.0.128/25', '10.0.0.0/25', '198.51.100.7']), ['10.0.0.0-10.0.0.255', '198.51.100.7-198.51.100.7']);
  t.deepEqual(coverage(['0.0.0.0/0']), ['0.0.0.0-255.255.255.255']);
  t.deepEqual(coverage(['192.0.2.10-192.0.2.20', '192.0.2.15/32']), ['192.0.2.10-192.0.2.20']);
  t.deepEqual(coverage([]), []);
  t.is(coverage(['fe80::/10']), null);
  t.is(coverage(['192.0.2.20-192.0.2.10']), null);
});
