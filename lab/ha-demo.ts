// `npm run lab -- --ha [--check] [--connections N] [--no-failback] [--keep-going]`: the router-pair
// walkthrough. Builds the pair lab (lab/ha.ts), then: devices connect through the
// primary (router A), A dies hard (links down, every process SIGKILLed), B takes over, the same
// connections carry data both ways, DNS on the shared address and new connections work through B,
// A returns (and takes the addresses back unless --no-failback) and still no connection is lost.
// --check: every step is asserted; the exit code is the number of failed steps (0 = all passed).
import { type HaLab, createHaLab, holderCheck, startHolder } from './ha.js';

interface Step { name: string; ok: boolean; detail: string }

function parse(argv: string[]): { check: boolean; connections: number; failback: boolean } {
  const o = { check: false, connections: 500, failback: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--ha') continue;
    else if (a === '--check') o.check = true;
    else if (a === '--no-failback') o.failback = false;
    else if (a === '--connections') o.connections = Number(argv[++i]);
    else { process.stderr.write(`lab --ha: unknown argument ${String(a)}\n`); process.exit(2); }
  }
  if (!Number.isInteger(o.connections) || o.connections < 1 || o.connections > 20000) { process.stderr.write('lab --ha: --connections 1..20000\n'); process.exit(2); }
  return o;
}

const say = (s: string): void => { process.stdout.write(`${s}\n`); };

async function dig(ha: HaLab, name: string): Promise<string> {
  const r = await ha.lab.exec(ha.ns.client, 'dig', ['+short', '+time=1', '+tries=1', '@192.0.2.1', name], { reject: false, timeoutMs: 5000 });
  return r.stdout.trim();
}

/** Retries dig until it answers (bounded by the deadline); returns the answer and the time taken. */
async function digUntil(ha: HaLab, name: string, deadline: number): Promise<{ answer: string; ms: number }> {
  const start = Date.now();
  let answer = '';
  for (let first = true; first || Date.now() < deadline; first = false) {
    answer = await dig(ha, name);
    if (/^\d+\.\d+\.\d+\.\d+$/.test(answer)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { answer, ms: Date.now() - start };
}

export async function main(argv: string[]): Promise<number> {
  const o = parse(argv);
  const steps: Step[] = [];
  const step = (name: string, ok: boolean, detail: string): void => {
    steps.push({ name, ok, detail });
    say(`${ok ? 'ok  ' : 'FAIL'}  ${name}: ${detail}`);
  };
  say(`lab --ha: building the pair (client, two switches, routers A and B with keepalived + conntrackd, simulated Apple); ${o.connections} devices; failback ${o.failback ? 'on' : 'off'}`);
  const ha = await createHaLab({ pair: { failback: o.failback } });
  try {
    await ha.start('a');
    const tA = await ha.waitPrimary('a', 15000);
    await ha.start('b');
    step('A is primary', true, `A holds 192.0.2.1 and 203.0.113.1 (${tA} ms after keepalived started); B is backup`);

    const { proc, held } = await startHolder(ha, o.connections);
    step('devices connect through the primary', held.held === o.connections, `${held.held} of ${o.connections} connections held (${JSON.stringify(held.errors)})`);
    const c0 = await holderCheck(proc, 'before', 10000);
    step('every connection echoes through A', c0.ok === o.connections, JSON.stringify(c0));
    await ha.waitVipFlows('b', o.connections, 15000).then(
      () => step('conntrackd synced every flow to B', true, `B's kernel table has the ${o.connections} flows`),
      (e: Error) => step('conntrackd synced every flow to B', false, e.message));

    const t0 = Date.now();
    await ha.kill('a');
    say('      A dies: links down, every process SIGKILLed');
    const c1p = holderCheck(proc, 'failover', 10000 - (Date.now() - t0));
    const takeover = await ha.waitPrimary('b', 10000).then((ms) => ms, () => -1);
    step('B takes over', takeover >= 0, takeover >= 0 ? `B holds both shared addresses ${Date.now() - t0} ms after the failure` : 'B did not take over within 10 s');
    const c1 = await c1p;
    step('the same connections carry data both ways through B, within 10 s', c1.ok === o.connections && c1.resets === 0,
      `${c1.ok} of ${o.connections} echoed (slowest ${c1.maxMs} ms), ${c1.noecho} silent, ${c1.dead} closed, ${c1.resets} resets`);
    const d1 = await digUntil(ha, '5-courier.push.apple.com', t0 + 10000);
    step('DNS answers on the shared address', d1.answer === '198.18.100.5', `dig @192.0.2.1 5-courier.push.apple.com → ${d1.answer || '(nothing)'} (${Date.now() - t0} ms after the failure)`);
    const fresh = await ha.lab.probe(['connect', '198.18.100.7', '5223', '--count', '3']) as { hellos: string[]; errors: unknown[] };
    step('new connections go through B', fresh.hellos.length === 3, JSON.stringify(fresh));

    await ha.revive('a');
    say(`      A returns (a reboot: empty tables), ${o.failback ? `takes the addresses back after ${ha.pair.failbackDelay} s` : 'stays backup (nopreempt)'}`);
    const t2 = Date.now();
    if (o.failback) {
      const back = await ha.waitPrimary('a', 30000).then(() => Date.now() - t2, () => -1);
      step('A is primary again (failback)', back >= 0, back >= 0 ? `${back} ms after A started` : 'A did not take over within 30 s');
    } else {
      await new Promise((r) => setTimeout(r, 8000));
      const h = await ha.holders();
      step('B stays primary (no failback)', h.client.join() === 'b' && h.upstream.join() === 'b', JSON.stringify(h));
    }
    const c2 = await holderCheck(proc, 'failback', 10000);
    step('after A returned, still every connection echoes', c2.ok === o.connections && c2.resets === 0,
      `${c2.ok} of ${o.connections} echoed (slowest ${c2.maxMs} ms), ${c2.noecho} silent, ${c2.dead} closed, ${c2.resets} resets`);
    const d2 = await digUntil(ha, '9-courier.push.apple.com', Date.now() + 10000);
    step('DNS still answers on the shared address', d2.answer === '198.18.100.9', `→ ${d2.answer || '(nothing)'}`);
    proc.write('quit\n');
  } catch (err) {
    step('walkthrough', false, (err as Error).stack ?? String(err));
  } finally {
    for (const n of ['a', 'b'] as const) {
      const log = ha.notifyLog(n).trim();
      if (log) say(`notify log, router ${n.toUpperCase()}:\n${log.split('\n').map((l) => `      ${l}`).join('\n')}`);
    }
    await ha.destroy();
  }
  const failed = steps.filter((s) => !s.ok).length;
  say(failed ? `${failed} step(s) failed` : `all ${steps.length} steps passed`);
  return o.check ? Math.min(failed, 100) : 0;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: unknown) => { process.stderr.write(`${(err as Error).stack ?? String(err)}\n`); process.exit(1); });
}
