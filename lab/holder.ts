// Held device connections for the router-pair lab, test and benchmark (runs in the client namespace).
//
//   node dist/lab/holder.js --dst IP:PORT[,IP:PORT...] --count N [--parallel K] [--timeout-ms T] [--max-seconds S]
//
// Opens N connections round-robin over the destinations (at most K connecting at once), waits for
// the courier's HELLO line on each, then holds them. stdout, one JSON line each:
//   {"held":H,"failed":F,"errors":{"TIMEOUT":n,...},"ms":M}                after the opening phase
//   "check ID T"   every live connection sends "ID-<i>\n" and must get it echoed within T ms:
//                  {"check":"ID","ok":n,"noecho":n,"dead":n,"resets":n,"maxMs":x,"p50Ms":y}
//                  ok = echoed (device -> courier -> device, both directions); dead = closed before or
//                  during the check; resets = connections ever ended by ECONNRESET (or EPIPE)
//   "pulse start MS K"  the first K connections send a line every MS ms; echo times are recorded
//   "pulse stop"   {"pulse":{"echoes":n,"maxGapMs":g,"gapFrom":t0,"gapTo":t1}} the longest silence
//                  between two echoes (any pulse connection), as unix ms: last echo before, first after
//   "stats"        {"alive":n,"dead":n,"resets":n}
//   "quit", end of stdin, SIGTERM or --max-seconds (default 600): every socket is reset (no TIME_WAIT), exit.
import net from 'node:net';
import { createInterface } from 'node:readline';

interface Conn { sock: net.Socket; buf: string; alive: boolean; reset: boolean; pending?: { token: string; start: number; done: (ms: number | null) => void } }

function out(o: unknown): void { process.stdout.write(JSON.stringify(o) + '\n'); }

function args(argv: string[]): { dst: { host: string; port: number }[]; count: number; parallel: number; timeoutMs: number; maxSeconds: number } {
  const o = { dst: [] as { host: string; port: number }[], count: 1, parallel: 200, timeoutMs: 10000, maxSeconds: 600 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    if (k === '--dst') o.dst = v.split(',').map((s) => { const [h, p] = s.split(':'); return { host: h!, port: Number(p) }; });
    else if (k === '--count') o.count = Number(v);
    else if (k === '--parallel') o.parallel = Number(v);
    else if (k === '--timeout-ms') o.timeoutMs = Number(v);
    else if (k === '--max-seconds') o.maxSeconds = Number(v);
    else { process.stderr.write(`holder: unknown argument ${String(k)}\n`); process.exit(2); }
  }
  if (o.dst.length === 0 || !(o.count >= 1 && o.count <= 100000)) { process.stderr.write('holder: --dst and --count 1..100000 needed\n'); process.exit(2); }
  return o;
}

const opts = args(process.argv.slice(2));
const conns: Conn[] = [];
let resets = 0;

function open(i: number): Promise<string | null> {
  return new Promise((resolve) => {
    const d = opts.dst[i % opts.dst.length]!;
    const sock = net.connect({ host: d.host, port: d.port });
    const c: Conn = { sock, buf: '', alive: false, reset: false };
    let settled = false;
    const settle = (err: string | null): void => { if (!settled) { settled = true; clearTimeout(timer); resolve(err); } };
    const timer = setTimeout(() => { sock.destroy(); settle('TIMEOUT'); }, opts.timeoutMs);
    sock.setEncoding('latin1');
    sock.setNoDelay(true);
    sock.on('data', (d: string) => {
      c.buf += d;
      let nl: number;
      while ((nl = c.buf.indexOf('\n')) !== -1) {
        const line = c.buf.slice(0, nl);
        c.buf = c.buf.slice(nl + 1);
        if (!c.alive) {
          if (!line.startsWith('HELLO ')) { sock.destroy(); settle('BADHELLO'); return; }
          c.alive = true;
          conns.push(c);
          settle(null);
          continue;
        }
        onLine(c, line);
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') { if (c.alive && !c.reset) { c.reset = true; resets++; } }
      settle(err.code ?? err.message);
    });
    sock.on('close', () => {
      c.alive = false;
      c.pending?.done(null);
      settle('EOF');
    });
  });
}

const pulse = { timer: undefined as NodeJS.Timeout | undefined, echoes: [] as number[], seq: 0 };

function onLine(c: Conn, line: string): void {
  if (line.startsWith('pulse-')) { pulse.echoes.push(Date.now()); return; }
  if (c.pending && line === c.pending.token) c.pending.done(performance.now() - c.pending.start);
}

async function openAll(): Promise<void> {
  const start = performance.now();
  const errors: Record<string, number> = {};
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < opts.count) {
      const err = await open(next++);
      if (err) { failed++; errors[err] = (errors[err] ?? 0) + 1; }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.parallel, opts.count) }, worker));
  out({ held: conns.length, failed, errors, ms: Math.round(performance.now() - start) });
}

function check(id: string, timeoutMs: number): void {
  const times: number[] = [];
  let noecho = 0;
  let dead = 0;
  const waits = conns.map((c, i) => new Promise<void>((resolve) => {
    if (!c.alive) { dead++; resolve(); return; }
    const token = `${id}-${i}`;
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    const finish = (ms: number | null | undefined): void => {
      clearTimeout(timer);
      c.pending = undefined;
      if (ms === undefined) noecho++;
      else if (ms === null) dead++;
      else times.push(ms);
      resolve();
    };
    c.pending = { token, start: performance.now(), done: finish };
    c.sock.write(`${token}\n`);
  }));
  void Promise.all(waits).then(() => {
    times.sort((a, b) => a - b);
    out({ check: id, ok: times.length, noecho, dead, resets, maxMs: Math.round(times.at(-1) ?? 0), p50Ms: Math.round(times[Math.floor(times.length / 2)] ?? 0) });
  });
}

function command(line: string): void {
  const [cmd, a, b, k] = line.trim().split(/\s+/);
  if (cmd === 'check') check(a ?? 'c', Number(b ?? 10000));
  else if (cmd === 'stats') out({ alive: conns.filter((c) => c.alive).length, dead: conns.filter((c) => !c.alive).length, resets });
  else if (cmd === 'pulse' && a === 'start') {
    const every = Number(b ?? 20);
    const n = Math.min(Number(k ?? 8), conns.length);
    pulse.echoes = [];
    clearInterval(pulse.timer);
    pulse.timer = setInterval(() => {
      for (let i = 0; i < n; i++) if (conns[i]!.alive && conns[i]!.sock.writableLength < 4096) conns[i]!.sock.write(`pulse-${pulse.seq++}\n`);
    }, every);
    out({ pulse: 'started' });
  } else if (cmd === 'pulse' && a === 'stop') {
    clearInterval(pulse.timer);
    const e = pulse.echoes;
    let gap = 0; let from = 0; let to = 0;
    for (let i = 1; i < e.length; i++) if (e[i]! - e[i - 1]! > gap) { gap = e[i]! - e[i - 1]!; from = e[i - 1]!; to = e[i]!; }
    out({ pulse: { echoes: e.length, maxGapMs: gap, gapFrom: from, gapTo: to } });
  } else if (cmd === 'quit') quit(0);
  else if (cmd) out({ error: `unknown command ${cmd}` });
}

function quit(code: number): never {
  for (const c of conns) { try { c.sock.resetAndDestroy(); } catch { /* gone */ } }
  process.exit(code);
}

process.on('SIGTERM', () => quit(0));
setTimeout(() => quit(0), opts.maxSeconds * 1000).unref();
await openAll();
const rl = createInterface({ input: process.stdin });
rl.on('line', command);
rl.on('close', () => quit(0));
