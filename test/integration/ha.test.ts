// A router pair with the real keepalived and conntrackd (Debian packages), in namespaces
// (lab/ha.ts: two routers between a client-side and an upstream-side switch, a sync link, the
// simulated Apple upstream). 500 held device connections through the kernel path of the primary;
// the primary dies hard (links down, every process SIGKILLed); within 10 s every connection echoes
// through the backup in both directions with zero resets, DNS answers on the shared address, new
// connections work; then the old primary returns, takes the addresses back, and the same check
// passes again. The negative control runs the same failover without conntrackd: the connections
// are lost, so this test can fail. Needs root, keepalived, conntrackd, conntrack: fails (never
// skips) without them.
import anyTest, { type TestFn } from 'ava';
import { type HaLab, createHaLab, holderCheck, startHolder } from '../../lab/ha.js';
import { distPath, nodeBin } from '../../lab/lab.js';

const test = anyTest as TestFn;
const N = 500;
const WINDOW_MS = 10_000;

async function digShort(ha: HaLab, name: string): Promise<string> {
  const r = await ha.lab.exec(ha.ns.client, 'dig', ['+short', '+time=1', '+tries=1', '@192.0.2.1', name], { reject: false, timeoutMs: 5000 });
  return r.stdout.trim();
}

/** Asks until the answer comes or the deadline passes (at least once). */
async function digUntil(ha: HaLab, name: string, deadline: number): Promise<string> {
  let answer = '';
  for (let first = true; first || Date.now() < deadline; first = false) {
    answer = await digShort(ha, name);
    if (/^\d+\.\d+\.\d+\.\d+$/.test(answer)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return answer;
}

/** `apns-proxy doctor` in a router's namespace: its pair lines (check: level message). */
async function doctorPair(ha: HaLab, name: 'a' | 'b'): Promise<string> {
  const r = await ha.lab.exec(ha.ns[name], nodeBin(), [distPath('src/cli.js'), 'doctor', '--config', ha.routers[name].configFile], { reject: false, timeoutMs: 30_000 });
  return r.stdout.split('\n').filter((l) => /^(ok  |WARN|FAIL)  (pair|conntrackd|keepalived)/.test(l)).join('\n');
}

async function upPair(conntrackd: boolean): Promise<HaLab> {
  const ha = await createHaLab();
  try {
    await ha.start('a', { conntrackd });
    await ha.waitPrimary('a', 15_000);
    await ha.start('b', { conntrackd });
    return ha;
  } catch (err) {
    await ha.destroy();
    throw err;
  }
}

test.serial(`pair: ${N} held connections survive a hard primary failure and the failback (keepalived + conntrackd)`, async (t) => {
  t.timeout(180_000);
  const ha = await upPair(true);
  try {
    const [docA, docB] = [await doctorPair(ha, 'a'), await doctorPair(ha, 'b')];
    t.regex(docA, /^ok {4}pair snat: .*203\.0\.113\.1$/m);
    t.regex(docA, /^ok {4}keepalived: MASTER for/m);
    t.regex(docA, /^ok {4}conntrackd: conntrackd syncs over sync/m);
    t.regex(docA, /^ok {4}pair address: this router is primary and holds 203\.0\.113\.1$/m);
    t.is(docA.match(/^ok {4}pair sysctl/gm)?.length, 2, docA);
    t.notRegex(docA, /^(FAIL|WARN)/m, docA);
    t.regex(docB, /^ok {4}keepalived: BACKUP for/m);
    t.regex(docB, /^ok {4}pair address: this router is BACKUP; the peer holds 203\.0\.113\.1$/m);
    t.notRegex(docB, /^(FAIL|WARN)/m, docB);
    const { proc, held } = await startHolder(ha, N);
    t.is(held.held, N, JSON.stringify(held));
    const before = await holderCheck(proc, 'before', 10_000);
    t.is(before.ok, N, JSON.stringify(before));
    // source NAT to the shared upstream-side address, not to A's own (masquerade would use 203.0.113.251)
    const peers = new Set(ha.lab.courierConnections().map((c) => c.peer.split(':')[0]));
    t.deepEqual([...peers], ['203.0.113.1']);
    await ha.waitVipFlows('b', N, 20_000);  // conntrackd put every flow into B's kernel table

    // hard failure of the primary
    const t0 = Date.now();
    await ha.kill('a');
    const failover = holderCheck(proc, 'failover', WINDOW_MS - (Date.now() - t0));
    const takeoverMs = await ha.waitPrimary('b', WINDOW_MS);
    const c1 = await failover;
    t.log(`failover: B holds the shared addresses ${takeoverMs} ms after the failure; ${c1.ok}/${N} echoed, slowest ${c1.maxMs} ms, median ${c1.p50Ms} ms`);
    t.is(c1.ok, N, JSON.stringify(c1));
    t.is(c1.resets, 0);
    t.is(c1.dead, 0);
    t.is(await digUntil(ha, '5-courier.push.apple.com', t0 + WINDOW_MS), '198.18.100.5', 'DNS answers on the shared address on B');
    t.true(Date.now() - t0 <= WINDOW_MS + 1000, `echo and DNS within the window (${Date.now() - t0} ms)`);
    const fresh = await ha.lab.probe(['connect', '198.18.100.7', '5223', '--count', '5']) as { hellos: string[] };
    t.is(fresh.hellos.length, 5, `new connections through B (A is down): ${JSON.stringify(fresh)}`);
    t.regex(ha.notifyLog('b'), /conntrackd -R: ok[\s\S]*conntrackd -B: ok[\s\S]*state MASTER/);

    // the old primary returns (a reboot: empty tables) and takes the addresses back (preempt_delay)
    await ha.revive('a');
    await ha.waitVipFlows('a', N, 20_000);  // B's table came back to A (notify backup: conntrackd -n)
    const t2 = Date.now();
    await ha.waitPrimary('a', 30_000);
    const c2 = await holderCheck(proc, 'failback', WINDOW_MS - (Date.now() - t2));
    t.log(`failback: A primary ${Date.now() - t2} ms after its table was back; ${c2.ok}/${N} echoed, slowest ${c2.maxMs} ms`);
    t.is(c2.ok, N, JSON.stringify(c2));
    t.is(c2.resets, 0);
    t.is(await digUntil(ha, '9-courier.push.apple.com', Date.now() + WINDOW_MS), '198.18.100.9');
    const after = await ha.lab.probe(['connect', '198.18.100.11', '5223', '--count', '5']) as { hellos: string[] };
    t.is(after.hellos.length, 5, JSON.stringify(after));
    proc.write('quit\n');
  } finally {
    await ha.destroy();
  }
});

test.serial('negative control: without conntrackd the same failover loses the connections', async (t) => {
  t.timeout(120_000);
  const ha = await upPair(false);
  try {
    const n = 200;
    const { proc, held } = await startHolder(ha, n);
    t.is(held.held, n);
    t.is((await holderCheck(proc, 'before', 10_000)).ok, n);
    t.is(await ha.vipFlows('b'), 0, 'nothing synced');
    t.regex(await doctorPair(ha, 'b'), /^FAIL {2}conntrackd: conntrackd \(config .*\) does not answer/m, 'doctor sees it');
    const t0 = Date.now();
    await ha.kill('a');
    const failover = holderCheck(proc, 'failover', WINDOW_MS - (Date.now() - t0));
    await ha.waitPrimary('b', WINDOW_MS);
    const c1 = await failover;
    t.is(c1.ok, 0, JSON.stringify(c1));
    // they are lost without a reset: B drops their packets (no state, nf_conntrack_tcp_loose = 0)
    t.is(c1.resets, 0);
    // and B itself works: new connections and DNS
    t.is(await digUntil(ha, '5-courier.push.apple.com', Date.now() + WINDOW_MS), '198.18.100.5');
    const fresh = await ha.lab.probe(['connect', '198.18.100.7', '5223', '--count', '3']) as { hellos: string[] };
    t.is(fresh.hellos.length, 3);
    proc.write('quit\n');
  } finally {
    await ha.destroy();
  }
});
