import { writeFileSync } from 'node:fs';
import test from 'ava';
import { desiredElements, desiredMapping } from '../../src/sync/mapping.js';
import { elementsFromText } from '../../src/nft/elements.js';
import { diffElements, renderDelta, renderFlush, renderFullSync, renderRuleset } from '../../src/nft/render.js';
import { REPO, TEMPLATE, nx, ok, readRepoFile, testConfig } from '../helpers/fixtures.js';

function goldenElements() {
  const config = testConfig({ couriers: { first: 1, last: 4 } });
  const results = new Map([
    [1, ok(['203.0.113.10', '203.0.113.11'])],
    [2, ok(['203.0.113.12', '203.0.113.13', '203.0.113.14'])],
    [3, nx],
    [4, ok(['203.0.113.15'])],
  ]);
  return desiredElements(desiredMapping({ config, previous: new Map(), results, now: 0 }).snapshot);
}

// The golden file is the reviewed shape of what we send the kernel; regenerate with UPDATE_GOLDEN=1.
test('full sync script matches the golden file', (t) => {
  const config = testConfig();
  const { text } = renderRuleset(config, TEMPLATE);
  const script = renderFullSync(text, config.nft.table, goldenElements());
  if (process.env.UPDATE_GOLDEN) writeFileSync(new URL('test/golden/full-sync.nft', REPO), script);
  t.is(script, readRepoFile('test/golden/full-sync.nft'));
});

test('masquerade and fallback can be switched off; the stamp follows the rules', (t) => {
  const on = renderRuleset(testConfig(), TEMPLATE);
  const off = renderRuleset(testConfig({ nft: { masquerade: false }, fallback: { enabled: false } }), TEMPLATE);
  t.regex(on.text, /masquerade/);
  t.regex(on.text, /tproxy ip to 127\.0\.0\.1:15223 meta mark set 0x2a/);
  t.notRegex(off.text, /masquerade|postrouting/);
  t.notRegex(off.text, /tproxy|chain fallback/);
  t.regex(off.text, /dnat ip to ip daddr \. numgen random mod 8 map @couriers4/);
  t.not(on.stamp, off.stamp);
  t.is(renderRuleset(testConfig(), TEMPLATE).stamp, on.stamp, 'same config, same stamp');
  t.true(on.text.includes(`comment "${on.stamp}"`));
});

test('nft.snat: source NAT to the shared address instead of masquerade (precedence), invalid packets of our flows dropped', (t) => {
  const pair = renderRuleset(testConfig({ nft: { snat: '203.0.113.1' } }), TEMPLATE);
  t.regex(pair.text, /\n\t\tct status dnat ct original ip daddr 198\.18\.100\.0\/24 snat ip to 203\.0\.113\.1\n/);
  t.notRegex(pair.text, /masquerade/, 'snat takes precedence over nft.masquerade (true by default)');
  t.regex(pair.text, /chain pair \{\n\t\ttype filter hook prerouting priority dstnat - 10; policy accept;\n\t\tip daddr \{ 198\.18\.100\.0\/24, 203\.0\.113\.1 \} ct state invalid drop\n\t\}/);
  const both = renderRuleset(testConfig({ nft: { snat: '203.0.113.1', masquerade: false } }), TEMPLATE);
  t.is(both.text, pair.text.replace(pair.stamp, both.stamp));
  t.not(pair.stamp, renderRuleset(testConfig(), TEMPLATE).stamp);
  const single = renderRuleset(testConfig(), TEMPLATE);
  t.notRegex(single.text, /snat|chain pair|invalid/, 'a single router is unchanged');
});

test('ports and prefix come from config', (t) => {
  const { text } = renderRuleset(testConfig({ ports: [5223], vipPrefix: '198.18.7.0/24' }), TEMPLATE);
  t.regex(text, /ip daddr 198\.18\.7\.0\/24 tcp dport \{ 5223 \} dnat/);
  t.notRegex(text, /\{\{|\}\}/, 'no placeholder left');
});

test('a broken template is an error, not a silent bad ruleset', (t) => {
  t.throws(() => renderRuleset(testConfig(), 'table inet {{tabel}} {}'), { message: /unknown placeholder \{\{tabel\}\}/ });
  t.throws(() => renderRuleset(testConfig(), '@nat\tchain x {}'), { message: /unknown feature tag @nat/ });
});

test('diff: identical maps give no operations and an empty delta', (t) => {
  const el = goldenElements();
  const diff = diffElements(el, new Map(el));
  t.deepEqual(diff, { remove: [], add: [] });
  t.is(renderDelta('apns_proxy', diff), '');
});

test('diff: changed values are deleted and re-added, removed keys deleted, new keys added', (t) => {
  const before = elementsFromText([['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.11'], ['198.18.100.2 . 0', '203.0.113.12']]);
  const after = elementsFromText([['198.18.100.1 . 0', '203.0.113.10'], ['198.18.100.1 . 1', '203.0.113.19'], ['198.18.100.3 . 0', '203.0.113.13']]);
  const diff = diffElements(before, after);
  t.deepEqual(diff.remove.map((e) => `${e.vip} . ${e.slot}`), ['198.18.100.1 . 1', '198.18.100.2 . 0']);
  t.deepEqual(diff.add.map((e) => [`${e.vip} . ${e.slot}`, e.address]), [['198.18.100.1 . 1', '203.0.113.19'], ['198.18.100.3 . 0', '203.0.113.13']]);
  t.is(renderDelta('apns_proxy', diff),
    'delete element inet apns_proxy couriers4 { 198.18.100.1 . 1, 198.18.100.2 . 0 }\n' +
    'add element inet apns_proxy couriers4 { 198.18.100.1 . 1 : 203.0.113.19, 198.18.100.3 . 0 : 203.0.113.13 }\n');
});

test('full sync replaces the table atomically and can drop a renamed one', (t) => {
  const script = renderFullSync('table inet t {\n}\n', 't', new Map(), ['old']);
  t.is(script, 'add table inet old\ndelete table inet old\nadd table inet t\ndelete table inet t\ntable inet t {\n}\n');
  t.is(renderFlush('t'), 'add table inet t\ndelete table inet t\n');
});

test('table ownership: our stamped map says ours; a same-named table without it is foreign', async (t) => {
  const { parseTableOwner } = await import('../../src/nft/runner.js');
  const { FakeNft } = await import('../helpers/fake-nft.js');
  const list = (comment?: string) => JSON.stringify({ nftables: [
    { table: { family: 'inet', name: 'filter', handle: 1 } },
    { map: { family: 'inet', name: 'couriers4', table: 'filter', ...(comment ? { comment } : {}) } },
  ] });
  t.is(parseTableOwner(list('apns-proxy 0123456789abcdef'), 'filter'), 'ours');
  t.is(parseTableOwner(list(), 'filter'), 'foreign');
  t.is(parseTableOwner(list('somebody else'), 'filter'), 'foreign');
  t.is(parseTableOwner(JSON.stringify({ nftables: [{ table: { family: 'inet', name: 'filter' } }] }), 'filter'), 'foreign');
  const nft = new FakeNft();
  t.is(await nft.tableOwner('apns_proxy'), 'absent');
  nft.addForeignTable('filter');
  t.is(await nft.tableOwner('filter'), 'foreign');
  const config = testConfig();
  await nft.apply(renderFullSync(renderRuleset(config, TEMPLATE).text, 'apns_proxy', new Map()));
  t.is(await nft.tableOwner('apns_proxy'), 'ours');
});
