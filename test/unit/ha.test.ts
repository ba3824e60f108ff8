// The router pair: its templates (contrib/ha, rendered by src/ops/ha/render.ts), pair.json validation,
// the config keys a pair needs, and doctor's pair checks (src/ops/ha/doctor.ts) with fake probes.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { parseConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { type PairProbes, pairFindings, parseSyncTraffic } from '../../src/ops/ha/doctor.js';
import { EXAMPLE_PAIR, parsePair, pairConfigKeys, renderConntrackd, renderKeepalived } from '../../src/ops/ha/render.js';
import { repoRoot } from '../../lab/lab.js';

const read = (f: string) => readFileSync(`${repoRoot()}/contrib/ha/${f}`, 'utf8');

test('keepalived.conf: one sync group with both instances, both BACKUP, unicast to the peer, notify hooks, preempt per failback', (t) => {
  const a = renderKeepalived(read('keepalived.conf.in'), EXAMPLE_PAIR, 'a');
  t.notRegex(a, /\{\{|\}\}/);
  t.regex(a, /vrrp_sync_group apns_proxy \{\n\tgroup \{\n\t\tapns_client\n\t\tapns_upstream\n\t\}/);
  t.is(a.match(/\tstate BACKUP\n/g)?.length, 2);
  t.is(a.match(/\tpriority 250\n/g)?.length, 2);
  t.is(a.match(/\tadvert_int 1\n/g)?.length, 2);
  t.is(a.match(/\tpreempt_delay 10\n/g)?.length, 2);
  t.regex(a, /notify_master "\/etc\/apns-proxy\/ha\/notify\.sh primary \/etc\/conntrackd\/conntrackd\.conf \/run\/apns-proxy\/ha-state"/);
  t.regex(a, /notify_backup "\/etc\/apns-proxy\/ha\/notify\.sh backup /);
  t.regex(a, /notify_fault "\/etc\/apns-proxy\/ha\/notify\.sh fault /);
  t.regex(a, /unicast_src_ip 192\.0\.2\.251\n\tunicast_peer \{\n\t\t192\.0\.2\.252\n/);
  t.regex(a, /192\.0\.2\.1\/24 dev eth0/);
  t.regex(a, /203\.0\.113\.1\/24 dev eth1/);
  const b = renderKeepalived(read('keepalived.conf.in'), { ...EXAMPLE_PAIR, failback: false }, 'b');
  t.regex(b, /unicast_src_ip 203\.0\.113\.252\n\tunicast_peer \{\n\t\t203\.0\.113\.251\n/);
  t.is(b.match(/\tnopreempt\n/g)?.length, 2);
  t.notRegex(b, /preempt_delay/);
});

test('conntrackd.conf: FT-FW without external cache, UDP over the sync link, TCP only, own and shared addresses ignored', (t) => {
  const a = renderConntrackd(read('conntrackd.conf.in'), EXAMPLE_PAIR, 'a');
  t.notRegex(a, /\{\{|\}\}/);
  t.regex(a, /Mode FTFW \{[^}]*DisableExternalCache On/);
  t.regex(a, /IPv4_address 198\.51\.100\.1\n\t\tIPv4_Destination_Address 198\.51\.100\.2\n\t\tPort 3780\n\t\tInterface eth2\n/);
  t.regex(a, /Filter From Userspace \{\n\t\tProtocol Accept \{\n\t\t\tTCP\n\t\t\}/);
  const ignored = [...a.matchAll(/\t\t\tIPv4_address (\S+)/g)].map((m) => m[1]);
  t.deepEqual(ignored, ['127.0.0.1', '198.51.100.0/30', '192.0.2.251', '203.0.113.251', '192.0.2.252', '203.0.113.252', '192.0.2.1', '203.0.113.1']);
  // never a device or courier network: the filter sees original and reply sources, and ours are those
  t.false(ignored.some((x) => /\/(24|16|8)$/.test(x!)));
});

test('notify script and sysctl file: the primary-backup.sh steps, the two sysctls', (t) => {
  const n = read('notify.sh');
  t.regex(n, /primary\) state=MASTER; step -c; step -f; step -R; step -B ;;/);
  t.regex(n, /backup\) state=BACKUP; step -n ;;/);
  t.regex(n, /fault\) state=FAULT; step -t ;;/);
  const s = read('sysctl.conf');
  t.regex(s, /^net\.netfilter\.nf_conntrack_tcp_loose = 0$/m);
  t.regex(s, /^net\.ipv4\.ip_nonlocal_bind = 1$/m);
});

test('pair.json: the example parses; mistakes name the key', (t) => {
  t.deepEqual(parsePair(JSON.parse(JSON.stringify(EXAMPLE_PAIR))), EXAMPLE_PAIR);
  const bad = (mut: (p: any) => void, key: RegExp) => {
    const p = JSON.parse(JSON.stringify(EXAMPLE_PAIR));
    mut(p);
    const err = t.throws(() => parsePair(p), { instanceOf: ConfigError });
    t.regex(err!.message, key);
  };
  bad((p) => { p.routers.b.priority = 250; }, /pair\.routers\.b\.priority/);
  bad((p) => { p.vrid.upstream = 51; }, /pair\.vrid\.upstream/);
  bad((p) => { p.shared.client = '192.0.2.1'; }, /pair\.shared\.client/);
  bad((p) => { p.routers.a.sync.address = '198.51.100'; }, /pair\.routers\.a\.sync\.address/);
  bad((p) => { delete p.syncPort; }, /pair\.syncPort/);
  bad((p) => { p.extra = 1; }, /pair\.extra/);
});

test('the config keys of a pair: same on both routers, valid, snat = shared upstream address, DNS on shared + both own addresses', (t) => {
  const keys = pairConfigKeys(EXAMPLE_PAIR);
  t.deepEqual(keys.dns.listen, ['192.0.2.1:53', '192.0.2.251:53', '192.0.2.252:53']);
  const c = parseConfig({ ...keys, dns: { ...keys.dns, allowClients: ['192.0.2.0/24'] } });
  t.is(c.nft.snat, '203.0.113.1');
  t.true(c.ha.enabled);
});

const STATS = `UDP traffic (active device=sync):
                3840 Bytes sent                   16 Bytes recv
                  54 Pckts sent                    7 Pckts recv
                   0 Error send                    0 Error recv
`;

function probes(over: Partial<PairProbes> = {}): PairProbes {
  return {
    sysctl: async (k) => (k.endsWith('tcp_loose') ? '0' : '1'),
    localAddresses: async () => [{ ifname: 'eth1', family: 4, address: '203.0.113.1', prefixlen: 24 }],
    conntrackdStats: async () => ({ exitCode: 0, output: STATS }),
    readState: async () => 'MASTER 1000 4242\n',
    processName: async (pid) => (pid === 4242 ? 'keepalived' : null),
    now: () => 1_060_000,
    ...over,
  };
}
const pairConfig = parseConfig({ nft: { snat: '203.0.113.1' }, ha: { enabled: true } });
const levels = (f: { check: string; level: string }[]) => f.map((x) => `${x.check}:${x.level}`);

test('doctor pair: a healthy primary', async (t) => {
  t.deepEqual(parseSyncTraffic(STATS), { device: 'sync', sent: 54, recv: 7, sendErrors: 0, recvErrors: 0 });
  const f = await pairFindings(pairConfig, probes());
  t.deepEqual(levels(f), ['pair snat:ok', 'pair sysctl:ok', 'pair sysctl:ok', 'conntrackd:ok', 'keepalived:ok', 'pair address:ok']);
  t.regex(f.find((x) => x.check === 'keepalived')!.message, /MASTER for 60 s \(keepalived pid 4242\)/);
});

test('doctor pair: each broken piece is a failure naming the fix', async (t) => {
  const noSnat = await pairFindings(parseConfig({ ha: { enabled: true } }), probes());
  t.is(noSnat[0]!.level, 'fail');
  t.regex(noSnat[0]!.fix!, /nft\.snat/);
  const loose = await pairFindings(pairConfig, probes({ sysctl: async (k) => (k.endsWith('tcp_loose') ? '1' : '0') }));
  t.deepEqual(levels(loose).filter((l) => l.startsWith('pair sysctl')), ['pair sysctl:fail', 'pair sysctl:fail']);
  const down = await pairFindings(pairConfig, probes({ conntrackdStats: async () => ({ exitCode: 1, output: 'cannot connect to socket' }) }));
  t.true(levels(down).includes('conntrackd:fail'));
  const deaf = await pairFindings(pairConfig, probes({ conntrackdStats: async () => ({ exitCode: 0, output: STATS.replace('7 Pckts recv', '0 Pckts recv') }) }));
  t.regex(deaf.find((x) => x.check === 'conntrackd')!.message, /never heard its peer/);
  const gone = await pairFindings(pairConfig, probes({ processName: async () => null }));
  t.true(levels(gone).includes('keepalived:fail'));
  t.false(levels(gone).some((l) => l.startsWith('pair address')));
  const noState = await pairFindings(pairConfig, probes({ readState: async () => null }));
  t.true(levels(noState).includes('keepalived:fail'));
  const masterWithout = await pairFindings(pairConfig, probes({ localAddresses: async () => [] }));
  t.true(levels(masterWithout).includes('pair address:fail'));
  const backupWith = await pairFindings(pairConfig, probes({ readState: async () => 'BACKUP 1000 4242' }));
  t.regex(backupWith.find((x) => x.check === 'pair address')!.message, /BACKUP but holds 203\.0\.113\.1/);
  const backupOk = await pairFindings(pairConfig, probes({ readState: async () => 'BACKUP 1000 4242', localAddresses: async () => [] }));
  t.true(levels(backupOk).includes('pair address:ok'));
});
