// Load generators, all bounded in time (and count): wrk, iperf3, and the C helpers holder/churn.
import { ADDR, type Lab } from './lab.js';
import type { Bg } from './proc.js';
import { sleep } from './proc.js';
import { waitListening } from './router.js';

export interface WrkResult {
  readonly rps: number;
  readonly requests: number;
  readonly seconds: number;
  readonly latencyMs: number;
  readonly errors: { connect: number; read: number; write: number; timeout: number };
  readonly non2xx: number;
}

export function wrkArgv(target: string, port: number, o: { close: boolean; seconds: number; conns: number; threads: number }): string[] {
  return ['wrk', `-t${o.threads}`, `-c${o.conns}`, `-d${o.seconds}s`, '--timeout', '2s',
    ...(o.close ? ['-H', 'Connection: close'] : []), `http://${target}:${port}/`];
}

const UNIT: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60000 };

export function parseWrk(text: string): WrkResult {
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  const done = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(text);
  const lat = /Latency\s+([\d.]+)(us|ms|s|m)/.exec(text);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (!done) throw new Error(`wrk printed no result:\n${text}`);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    requests: Number(done[1]),
    seconds: Number(done[2]) * (UNIT[done[3] ?? 's'] ?? 1000) / 1000,
    latencyMs: lat ? Number(lat[1]) * (UNIT[lat[2] ?? 'ms'] ?? 1) : NaN,
    errors: se ? { connect: Number(se[1]), read: Number(se[2]), write: Number(se[3]), timeout: Number(se[4]) } : { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
  };
}

export async function wrk(lab: Lab, target: string, port: number, o: { close: boolean; seconds: number; conns: number; threads: number }): Promise<WrkResult> {
  const r = await lab.exec(lab.ns.c, wrkArgv(target, port, o), { timeoutMs: (o.seconds + 30) * 1000 });
  return parseWrk(r.stdout);
}

export interface IperfResult { readonly bps: number; readonly retransmits: number }

export function iperfArgv(target: string, port: number, seconds: number): string[] {
  return ['iperf3', '-4', '-c', target, '-p', String(port), '-t', String(seconds), '-O', '1', '-A', '0,1', '-J', '--connect-timeout', '3000'];
}

/** One TCP stream client → target for `seconds` (after 1 s omitted), a one-off iperf3 server on the couriers. */
export async function iperf(lab: Lab, target: string, port: number, seconds: number): Promise<IperfResult> {
  const server = lab.bg(lab.ns.u, 'iperf3-server', ['iperf3', '-s', '-4', '-p', String(port), '-1']);
  try {
    await waitListening(lab, lab.ns.u, [`0.0.0.0:${port}`], server);
    const r = await lab.exec(lab.ns.c, iperfArgv(target, port, seconds), { timeoutMs: (seconds + 30) * 1000, check: false });
    let doc: { error?: string; end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } } };
    try {
      doc = JSON.parse(r.stdout) as typeof doc;
    } catch {
      throw new Error(`iperf3 to ${target}: no JSON (exit ${String(r.code)}): ${r.stderr.slice(-500)}`);
    }
    if (doc.error || !doc.end?.sum_received?.bits_per_second) throw new Error(`iperf3 to ${target}: ${doc.error ?? 'no result'}`);
    return { bps: doc.end.sum_received.bits_per_second, retransmits: doc.end.sum_sent?.retransmits ?? 0 };
  } finally {
    await server.stop(3000);
  }
}

export interface HoldOpen { readonly held: number; readonly failed: number; readonly errors: Record<string, number>; readonly ms: number }
export interface HoldCheck { readonly alive: number; readonly dropped: number; readonly noecho: number; readonly ms: number }

export const PER_HOLDER = 12500;

export function holderArgv(lab: Lab, i: number, dsts: readonly string[], count: number, o: { parallel: number; timeoutMs: number; maxSeconds: number }): string[] {
  return [lab.bin('holder'), '--src', ADDR.device(i % 20), '--dst', dsts.join(','), '--count', String(count),
    '--parallel', String(o.parallel), '--timeout-ms', String(o.timeoutMs), '--max-seconds', String(o.maxSeconds)];
}

/** Idle connections held by several holder processes (≤ 12 500 each, each from its own source address). */
export class Holders {
  private constructor(private readonly procs: Bg[], readonly opened: HoldOpen) {}

  static async open(lab: Lab, dsts: readonly string[], total: number,
    o: { parallel?: number; timeoutMs?: number; maxSeconds?: number; perProc?: number } = {}): Promise<Holders> {
    const per = o.perProc ?? PER_HOLDER;
    const n = Math.ceil(total / per);
    const opts = { parallel: o.parallel ?? 256, timeoutMs: o.timeoutMs ?? 10000, maxSeconds: o.maxSeconds ?? 600 };
    const procs: Bg[] = [];
    for (let i = 0; i < n; i++) {
      const count = Math.min(per, total - i * per);
      procs.push(lab.bg(lab.ns.c, 'holder', holderArgv(lab, i, dsts, count, opts), { stdin: true }));
    }
    try {
      const lines = await Promise.all(procs.map((p) => p.waitFor(/^\{"held"/, 240000)));
      const results = lines.map((l) => JSON.parse(l) as HoldOpen);
      const errors: Record<string, number> = {};
      for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
      return new Holders(procs, {
        held: results.reduce((s, r) => s + r.held, 0),
        failed: results.reduce((s, r) => s + r.failed, 0),
        errors,
        ms: Math.max(...results.map((r) => r.ms)),
      });
    } catch (err) {
      for (const p of procs) await p.stop(2000);
      throw err;
    }
  }

  /** Every held connection sends a byte and must get it echoed (10 s). */
  async check(): Promise<HoldCheck> {
    const marks = this.procs.map((p) => p.mark());
    for (const p of this.procs) p.write('check\n');
    const lines = await Promise.all(this.procs.map((p, i) => p.waitFor(/^\{"alive"/, 30000, marks[i])));
    const r = lines.map((l) => JSON.parse(l) as HoldCheck);
    return {
      alive: r.reduce((s, x) => s + x.alive, 0),
      dropped: r.reduce((s, x) => s + x.dropped, 0),
      noecho: r.reduce((s, x) => s + x.noecho, 0),
      ms: Math.max(...r.map((x) => x.ms)),
    };
  }

  /** Closes everything with RST (no TIME_WAIT anywhere) and waits for the processes. */
  async quit(): Promise<void> {
    for (const p of this.procs) p.write('quit\n');
    await Promise.all(this.procs.map(async (p) => {
      const t = setTimeout(() => p.kill('SIGKILL'), 15000);
      await p.exited;
      clearTimeout(t);
    }));
    await sleep(500);
  }
}

export interface ChurnResult {
  readonly started: number;
  readonly ok: number;
  readonly failed: number;
  readonly skipped: number;
  readonly errors: Record<string, number>;
  readonly ms: number;
}

export function churnArgv(lab: Lab, src: string, dsts: readonly string[], rate: number, seconds: number): string[] {
  return [lab.bin('churn'), '--src', src, '--dst', dsts.join(','), '--rate', String(rate), '--seconds', String(seconds), '--timeout-ms', '5000'];
}

/** A background churn; stop() ends it early (SIGINT) and returns its result. */
export class Churn {
  private constructor(private readonly proc: Bg) {}

  static start(lab: Lab, src: string, dsts: readonly string[], rate: number, seconds: number): Churn {
    return new Churn(lab.bg(lab.ns.c, 'churn', churnArgv(lab, src, dsts, rate, seconds)));
  }

  async stop(): Promise<ChurnResult> {
    this.proc.kill('SIGINT');
    const line = await this.proc.waitFor(/^\{"started"/, 30000);
    await this.proc.exited;
    return JSON.parse(line) as ChurnResult;
  }
}

/** wrk running in the background (bounded by -d); stop() sends SIGINT and parses its summary. */
export class WrkBg {
  private constructor(private readonly proc: Bg) {}

  static start(lab: Lab, target: string, port: number, o: { close: boolean; seconds: number; conns: number; threads: number }): WrkBg {
    return new WrkBg(lab.bg(lab.ns.c, 'wrk', wrkArgv(target, port, o)));
  }

  async stop(): Promise<WrkResult> {
    this.proc.kill('SIGINT');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 20000);
    await this.proc.exited;
    clearTimeout(t);
    return parseWrk(this.proc.lines().join('\n'));
  }
}
