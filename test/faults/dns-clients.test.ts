// Fault suite, hostile DNS clients: a TCP slowloris from an outsider and a per-client TCP cap (case 6),
// a UDP flood of garbage (case 12, held). Allowed clients are answered throughout.
// 192.0.2.2 is the allowed client; 192.0.2.3 (added to the client's c0) is outside dns.allowClients.
import anyTest, { type TestFn } from 'ava';
import type { Lab, LabProcess } from '../../lab/lab.js';
import { TOOL, alive, assertMapInvariant, baseConfig, newLab, readMap, startRun, stop, type DnsAnswer } from './harness.js';
import { nodeBin } from '../../lab/lab.js';

const test = anyTest as TestFn<{ lab: Lab; daemon: LabProcess; applied: Map<string, string> }>;

test.before(async (t) => {
  const lab = await newLab();
  await lab.exec(lab.ns.client, 'ip', ['addr', 'add', '192.0.2.3/24', 'dev', 'c0']);
  const config = await baseConfig(lab, { dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.2/32'] } });
  const daemon = await startRun(lab, config, /refresh: 50 fresh/);
  t.context = { lab, daemon, applied: (await readMap(lab))! };
});
test.after.always(async (t) => { await stop(t.context.daemon); await t.context.lab?.destroy(); });

function json(p: LabProcess, what: string): any {
  const last = [...p.lines].reverse().find((l) => l.startsWith('{'));
  if (!last) throw new Error(`${what} printed no JSON: ${p.stderr().slice(-500)}`);
  return JSON.parse(last);
}

function failedAnswers(results: DnsAnswer[]): DnsAnswer[] {
  return results.filter((r) => r.rcode !== 'NOERROR' || r.answers.join() !== '198.18.100.5');
}

test.serial('case 6: a TCP slowloris from an outsider: allowed TCP queries answered, outsiders closed within 1 s', async (t) => {
  const { lab } = t.context;
  const loris = lab.spawn(lab.ns.client, nodeBin(), [TOOL, 'slowloris', '192.0.2.1', '--conns', '300', '--seconds', '6', '--source', '192.0.2.3']);
  const asker = lab.spawn(lab.ns.client, nodeBin(), [TOOL, 'ask', '192.0.2.1', '5-courier.push.apple.com', '--tcp', '--count', '6', '--interval-ms', '1000', '--timeout-ms', '1500', '--source', '192.0.2.2']);
  await Promise.all([loris.exited, asker.exited]);
  const a = json(asker, 'ask');
  t.is(a.results.length, 6);
  t.deepEqual(failedAnswers(a.results), [], 'every allowed TCP query answered with the VIP during the slowloris');
  const l = json(loris, 'slowloris') as { opened: number; failed: number; closeMs: (number | null)[] };
  t.true(l.opened + l.failed >= 300, `slowloris opened ${l.opened}, failed ${l.failed}`);
  const late = l.closeMs.filter((ms) => ms === null || ms > 1000);
  t.is(late.length, 0, `${late.length} of ${l.opened} outsider connections were not closed by the server within 1 s (still open at the end: ${l.closeMs.filter((m) => m === null).length})`);
  t.true(await alive(t.context.daemon));
});

test.serial('case 6: 100 TCP connections from one allowed client: at most 16 (dns.tcpMaxPerClient) stay open', async (t) => {
  const { lab } = t.context;
  const r = await lab.exec(lab.ns.client, nodeBin(), [TOOL, 'hold', '192.0.2.1', '--conns', '100', '--hold-ms', '1500', '--source', '192.0.2.2'], { timeoutMs: 20_000 });
  const h = JSON.parse(r.stdout.trim().split('\n').pop()!) as { opened: number; openAfter: number };
  t.true(h.openAfter <= 16, `${h.openAfter} of ${h.opened} connections from 192.0.2.2 still open after 1.5 s (cap 16)`);
});

test.serial('case 12 (held): a UDP flood of 20 000 garbage datagrams: allowed queries answered, daemon alive, map intact', async (t) => {
  const { lab, daemon, applied } = t.context;
  const flood = lab.spawn(lab.ns.client, nodeBin(), [TOOL, 'flood', '192.0.2.1', '--count', '20000', '--seconds', '5', '--source', '192.0.2.3']);
  const asker = lab.spawn(lab.ns.client, nodeBin(), [TOOL, 'ask', '192.0.2.1', '5-courier.push.apple.com', '--count', '30', '--interval-ms', '100', '--timeout-ms', '1000', '--source', '192.0.2.2']);
  await Promise.all([flood.exited, asker.exited]);
  const f = json(flood, 'flood') as { sent: number; ms: number };
  t.true(f.sent >= 10_000, `the flood sent only ${f.sent} datagrams`);
  const a = json(asker, 'ask');
  t.deepEqual(failedAnswers(a.results), [], `every allowed query answered during a flood of ${f.sent} datagrams in ${f.ms} ms`);
  t.true(await alive(daemon), `daemon died: ${daemon.stderr().slice(-500)}`);
  assertMapInvariant(t, await readMap(lab), { equals: applied });
});
