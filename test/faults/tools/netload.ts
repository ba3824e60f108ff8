// The fault suite's client-side load tool (runs in the lab's client namespace). Every mode is bounded
// in count and time and prints one JSON line.
//
//   netload.js ask SERVER NAME [--count N] [--interval-ms I] [--tcp] [--source A] [--timeout-ms T]
//       N A queries (one TCP connection each with --tcp), one every I ms
//       → {"results":[{"rcode":"NOERROR","answers":["198.18.100.5"],"ms":3}, {"rcode":"NONE","error":"TIMEOUT",...}]}
//   netload.js slowloris SERVER --conns N --seconds S [--source A]
//       N TCP connections to SERVER:53, each sent one byte per second for S seconds
//       → {"opened":N,"failed":0,"closeMs":[12, 30, null, ...]}   (ms from connect to the server's close; null = still open)
//   netload.js hold SERVER --conns N --hold-ms H [--source A]
//       N idle TCP connections to SERVER:53; after H ms → {"opened":N,"failed":0,"openAfter":16}
//   netload.js flood SERVER --count N --seconds S [--source A]
//       N random/malformed UDP datagrams to SERVER:53 within at most S seconds → {"sent":N,"ms":...}
//   netload.js connflood HOST PORT --count N [--concurrency C] [--seconds S]
//       N TCP connections (C at a time), each closed on the first byte, reset or after 1 s → {"done":N,"codes":{...},"ms":...}
import dgram from 'node:dgram';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import dnsPacket from 'dns-packet';

const argv = process.argv.slice(2);
const mode = argv[0];
const opt = (name: string, def?: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const num = (name: string, def: number, max: number): number => {
  const v = Number(opt(name, String(def)));
  if (!Number.isFinite(v) || v < 0 || v > max) { process.stderr.write(`netload: ${name} must be 0..${max}\n`); process.exit(2); }
  return v;
};
const flag = (name: string): boolean => argv.includes(name);
const source = opt('--source');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const out = (o: unknown): void => { process.stdout.write(JSON.stringify(o) + '\n'); };

// hard stop: nothing here may run longer than 60 s
setTimeout(() => { out({ error: 'netload: 60 s hard limit' }); process.exit(3); }, 60_000).unref();

const RCODES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

interface Result { rcode: string; answers: string[]; ms: number; error?: string }

function decodeResult(buf: Buffer, id: number, started: number): Result {
  const p = dnsPacket.decode(buf);
  if (p.id !== id) return { rcode: 'NONE', answers: [], ms: Date.now() - started, error: 'WRONG_ID' };
  const rcode = RCODES[(p.flags ?? 0) & 0xf] ?? String((p.flags ?? 0) & 0xf);
  const answers = (p.answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data: unknown }).data));
  return { rcode, answers, ms: Date.now() - started };
}

function askUdp(server: string, name: string, timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    const started = Date.now();
    const id = randomBytes(2).readUInt16BE(0);
    const sock = dgram.createSocket('udp4');
    const done = (r: Result) => { clearTimeout(timer); try { sock.close(); } catch { /* closed */ } resolve(r); };
    const timer = setTimeout(() => done({ rcode: 'NONE', answers: [], ms: Date.now() - started, error: 'TIMEOUT' }), timeoutMs);
    sock.on('error', (e) => done({ rcode: 'NONE', answers: [], ms: Date.now() - started, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    sock.on('message', (m) => { try { done(decodeResult(m, id, started)); } catch (e) { done({ rcode: 'NONE', answers: [], ms: 0, error: String(e) }); } });
    sock.bind({ address: source ?? '0.0.0.0', port: 0 }, () => {
      sock.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] }), 53, server);
    });
  });
}

function askTcp(server: string, name: string, timeoutMs: number): Promise<Result> {
  return new Promise((resolve) => {
    const started = Date.now();
    const id = randomBytes(2).readUInt16BE(0);
    const sock = net.connect({ host: server, port: 53, ...(source ? { localAddress: source } : {}) });
    let buf = Buffer.alloc(0);
    let finished = false;
    const done = (r: Result) => { if (finished) return; finished = true; clearTimeout(timer); sock.destroy(); resolve(r); };
    const timer = setTimeout(() => done({ rcode: 'NONE', answers: [], ms: Date.now() - started, error: 'TIMEOUT' }), timeoutMs);
    sock.on('error', (e) => done({ rcode: 'NONE', answers: [], ms: Date.now() - started, error: (e as NodeJS.ErrnoException).code ?? e.message }));
    sock.on('close', () => done({ rcode: 'NONE', answers: [], ms: Date.now() - started, error: 'EOF' }));
    sock.on('connect', () => {
      const q = dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', name }] });
      const frame = Buffer.alloc(2 + q.length);
      frame.writeUInt16BE(q.length, 0);
      q.copy(frame, 2);
      sock.write(frame);
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        try { done(decodeResult(buf.subarray(2, 2 + buf.readUInt16BE(0)), id, started)); } catch (e) { done({ rcode: 'NONE', answers: [], ms: 0, error: String(e) }); }
      }
    });
  });
}

async function ask(): Promise<void> {
  const server = argv[1]!;
  const name = argv[2]!;
  const count = num('--count', 1, 1000);
  const interval = num('--interval-ms', 0, 10_000);
  const timeoutMs = num('--timeout-ms', 2000, 10_000);
  const results: Result[] = [];
  for (let i = 0; i < count; i++) {
    const started = Date.now();
    results.push(await (flag('--tcp') ? askTcp(server, name, timeoutMs) : askUdp(server, name, timeoutMs)));
    if (i + 1 < count) await sleep(Math.max(0, interval - (Date.now() - started)));
  }
  out({ results });
}

interface Conn { sock: net.Socket; connectedAt?: number; closedAt?: number; failed?: boolean }

function openConns(server: string, n: number): Promise<Conn[]> {
  return new Promise((resolve) => {
    const conns: Conn[] = [];
    let pending = n;
    const settle = () => { if (--pending === 0) resolve(conns); };
    for (let i = 0; i < n; i++) {
      const c: Conn = { sock: net.connect({ host: server, port: 53, ...(source ? { localAddress: source } : {}) }) };
      conns.push(c);
      let settled = false;
      const once = () => { if (!settled) { settled = true; settle(); } };
      c.sock.on('connect', () => { c.connectedAt = Date.now(); once(); });
      c.sock.on('error', () => { if (c.connectedAt === undefined) c.failed = true; });
      c.sock.on('close', () => { c.closedAt = Date.now(); if (c.connectedAt === undefined) c.failed = true; once(); });
      c.sock.on('data', () => undefined);
    }
    setTimeout(() => resolve(conns), 5000);  // bounded
  });
}

async function slowloris(): Promise<void> {
  const conns = await openConns(argv[1]!, num('--conns', 300, 5000));
  const seconds = num('--seconds', 6, 30);
  for (let s = 0; s < seconds; s++) {
    for (const c of conns) if (c.closedAt === undefined && !c.sock.destroyed) c.sock.write(Buffer.from([0]));
    await sleep(1000);
  }
  out({
    opened: conns.filter((c) => c.connectedAt !== undefined).length,
    failed: conns.filter((c) => c.failed).length,
    closeMs: conns.filter((c) => c.connectedAt !== undefined).map((c) => (c.closedAt === undefined ? null : c.closedAt - c.connectedAt!)),
  });
  for (const c of conns) c.sock.destroy();
}

async function hold(): Promise<void> {
  const conns = await openConns(argv[1]!, num('--conns', 100, 5000));
  await sleep(num('--hold-ms', 1500, 20_000));
  out({
    opened: conns.filter((c) => c.connectedAt !== undefined).length,
    failed: conns.filter((c) => c.failed).length,
    openAfter: conns.filter((c) => c.connectedAt !== undefined && c.closedAt === undefined).length,
  });
  for (const c of conns) c.sock.destroy();
}

async function flood(): Promise<void> {
  const server = argv[1]!;
  const count = num('--count', 20_000, 200_000);
  const end = Date.now() + num('--seconds', 4, 30) * 1000;
  const started = Date.now();
  const sock = dgram.createSocket('udp4');
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.bind({ address: source ?? '0.0.0.0', port: 0 }, () => r()));
  let sent = 0;
  for (let i = 0; i < count && Date.now() < end; i++) {
    // a mix: random garbage, short headers, truncated queries, responses, and huge counts
    const kind = i % 5;
    let b: Buffer;
    if (kind === 0) b = randomBytes(1 + (i % 600));
    else if (kind === 1) b = randomBytes(i % 12);
    else if (kind === 2) b = dnsPacket.encode({ type: 'query', id: i & 0xffff, questions: [{ type: 'A', name: `${i % 300}-courier.push.apple.com` }] }).subarray(0, 12 + (i % 20));
    else if (kind === 3) { b = randomBytes(40); b.writeUInt16BE(0x8180, 2); }
    else { b = randomBytes(60); b.writeUInt16BE(0x0100, 2); b.writeUInt16BE(0xffff, 4); }
    sock.send(b, 53, server);
    sent++;
    if (i % 200 === 199) await sleep(10);  // let the socket drain; ~20 000 per 1–2 s
  }
  await sleep(200);
  sock.close();
  out({ sent, ms: Date.now() - started });
}

async function connflood(): Promise<void> {
  const host = argv[1]!;
  const port = Number(argv[2]);
  const count = num('--count', 2000, 20_000);
  const concurrency = num('--concurrency', 50, 500);
  const end = Date.now() + num('--seconds', 10, 30) * 1000;
  const started = Date.now();
  const codes: Record<string, number> = {};
  let next = 0;
  let done = 0;
  const one = (): Promise<void> => new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let code = 'TIMEOUT';
    let finished = false;
    const fin = () => { if (finished) return; finished = true; clearTimeout(timer); sock.destroy(); codes[code] = (codes[code] ?? 0) + 1; done++; resolve(); };
    const timer = setTimeout(fin, 1000);
    sock.on('data', () => { code = 'DATA'; fin(); });
    sock.on('error', (e) => { code = (e as NodeJS.ErrnoException).code ?? 'ERROR'; fin(); });
    sock.on('close', () => { if (code === 'TIMEOUT') code = 'EOF'; fin(); });
  });
  const worker = async () => { while (next < count && Date.now() < end) { next++; await one(); } };
  await Promise.all(Array.from({ length: concurrency }, worker));
  out({ done, codes, ms: Date.now() - started });
}

const modes: Record<string, () => Promise<void>> = { ask, slowloris, hold, flood, connflood };
const run = mode ? modes[mode] : undefined;
if (!run) {
  process.stderr.write('usage: netload.js ask|slowloris|hold|flood|connflood ...\n');
  process.exit(2);
}
run().then(() => process.exit(0), (e: unknown) => { out({ error: String(e) }); process.exit(1); });
