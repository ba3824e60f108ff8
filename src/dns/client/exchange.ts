// One DNS exchange with one upstream server: UDP first, TCP when the UDP reply is truncated.
// Used by the resolver (courier names) and by the DNS forwarder (everything else).
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { ApnsProxyError, errorMessage, show } from '../../core/errors.js';
import { formatHostPort, type HostPort } from '../../core/net.js';

export interface Question {
  name: string;
  type: string;    // 'A', 'AAAA', ... as dns-packet names it ('UNKNOWN_65' for unnamed types)
  class?: string;  // default 'IN'
}

export interface ExchangeOptions {
  timeoutMs: number;           // whole budget: UDP and, if truncated, the TCP retry
  recursionDesired?: boolean;  // default true
  dnssecOk?: boolean;          // DO in our OPT (default false): a forwarded validating client's wish
  checkingDisabled?: boolean;  // CD (default false): likewise
  signal?: AbortSignal;        // abort rejects with signal.reason and closes the socket
}

/** A decoded reply; dns-packet sets rcode and opcode at run time but its typings omit them. */
export type DecodedReply = dnsPacket.DecodedPacket & { rcode: string; opcode: string };

export interface ExchangeResult {
  response: DecodedReply;
  raw: Buffer;               // the reply bytes as received (TCP: without the length prefix)
  transport: 'udp' | 'tcp';
  server: HostPort;
}

/** EDNS0 UDP payload size we advertise (the DNS flag day 2020 value: avoids IP fragmentation). */
export const EDNS_UDP_SIZE = 1232;

const MAX_TIMEOUT_MS = 2_147_483_647;  // setTimeout's limit

export async function exchange(server: HostPort, question: Question, opts: ExchangeOptions): Promise<ExchangeResult> {
  checkServer(server);
  const timeoutMs = opts?.timeoutMs;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`exchange: timeoutMs must be a positive integer, got ${show(timeoutMs)}`);
  }
  const q = checkQuestion(question);
  const flags = { rd: opts.recursionDesired ?? true, dnssecOk: opts.dnssecOk ?? false, cd: opts.checkingDisabled ?? false };
  opts.signal?.throwIfAborted();
  const deadline = performance.now() + timeoutMs;
  const ctx: Attempt = { server, q, flags, deadline, timeoutMs, signal: opts.signal };
  const udp = await udpAttempt(ctx);
  if (!udp.response.flag_tc) return udp;
  return tcpAttempt(ctx);  // truncated: same question over TCP with a fresh ID, in the time left
}

interface CheckedQuestion { name: string; type: string; class: string }

interface QueryFlags { rd: boolean; dnssecOk: boolean; cd: boolean }

interface Attempt {
  server: HostPort;
  q: CheckedQuestion;
  flags: QueryFlags;
  deadline: number;   // performance.now() value
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** Returns why `name` cannot be put on the wire, or undefined when it can ('.' is the root). */
export function dnsNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'not a string';
  if (name === '.') return undefined;
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare.length === 0) return 'empty';
  if (bare.length > 253) return 'longer than 253 characters';
  // printable ASCII only: dns-packet decodes labels as UTF-8, so anything else would not round-trip
  for (const label of bare.split('.')) {
    if (label.length === 0) return 'empty label';
    if (label.length > 63) return 'label longer than 63 characters';
    if (!/^[\x21-\x7e]+$/.test(label)) return 'characters outside printable ASCII';
  }
  return undefined;
}

/** DNS names compare case-insensitively in ASCII only; trailing dot ignored. */
export function canonicalName(name: string): string {
  const lower = name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  return lower.length > 1 && lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

function checkServer(server: HostPort): void {
  const ok = typeof server === 'object' && server !== null &&
    (server.family === 4 || server.family === 6) && net.isIP(server.host) === server.family &&
    Number.isInteger(server.port) && server.port >= 1 && server.port <= 65535;
  if (!ok) throw new TypeError(`exchange: server must be {host, port, family} with a literal address, got ${show(server)}`);
}

function checkQuestion(question: Question): CheckedQuestion {
  const problem = dnsNameProblem(question?.name);
  if (problem) throw new TypeError(`exchange: question name ${show(question?.name)} is invalid: ${problem}`);
  if (typeof question.type !== 'string') throw new TypeError(`exchange: question type must be a string, got ${show(question.type)}`);
  const type = question.type.toUpperCase();
  const klass = (question.class ?? 'IN').toUpperCase();
  // round-trip through the codec: an unknown type or class name would silently encode as 0
  const decoded = dnsPacket.decode(encodeQuery(0, { name: question.name, type, class: klass }, { rd: true, dnssecOk: false, cd: false })).questions?.[0];
  if (decoded?.type !== type) throw new TypeError(`exchange: unknown question type ${show(question.type)}`);
  if (decoded.class !== klass) throw new TypeError(`exchange: unknown question class ${show(question.class)}`);
  return { name: question.name, type, class: klass };
}

function encodeQuery(id: number, q: CheckedQuestion, f: QueryFlags): Buffer {
  const opt: dnsPacket.OptAnswer = {
    type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE, extendedRcode: 0, ednsVersion: 0,
    flags: f.dnssecOk ? dnsPacket.DNSSEC_OK : 0, flag_do: f.dnssecOk, options: [],
  };
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: (f.rd ? dnsPacket.RECURSION_DESIRED : 0) | (f.cd ? dnsPacket.CHECKING_DISABLED : 0),
    questions: [{ name: q.name, type: q.type as dnsPacket.RecordType, class: q.class as dnsPacket.RecordClass }],
    additionals: [opt],
  });
}

function tryDecode(msg: Buffer): DecodedReply | undefined {
  try {
    return dnsPacket.decode(msg) as DecodedReply;
  } catch {
    return undefined;
  }
}

/** Same ID, a response to a standard query, and exactly our question (name case-insensitive). */
function isReplyTo(reply: DecodedReply, id: number, q: CheckedQuestion): boolean {
  const rq = reply.questions;
  return reply.id === id && reply.flag_qr && reply.opcode === 'QUERY' && rq?.length === 1 &&
    canonicalName(rq[0]!.name) === canonicalName(q.name) && rq[0]!.type === q.type && rq[0]!.class === q.class;
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  if (net.isIP(a) !== 6 || net.isIP(b) !== 6) return false;
  try {  // IPv6 has many spellings: compare the URL-canonical form
    return new URL(`http://[${a}]/`).hostname === new URL(`http://[${b}]/`).hostname;
  } catch {
    return a.toLowerCase() === b.toLowerCase();
  }
}

function describe(ctx: Attempt): string {
  return `${formatHostPort(ctx.server)} for ${ctx.q.name} ${ctx.q.type}`;
}

interface Settle<T> {
  ok(value: T): void;
  fail(err: unknown): void;
}

interface Started {
  close(): void;               // releases the socket; called exactly once
  timeoutError(): Error;       // what to reject with when the deadline passes
}

/** Runs one transport attempt with the shared deadline and abort signal; settles once and cleans up. */
function runAttempt<T>(ctx: Attempt, start: (settle: Settle<T>) => Started): Promise<T> {
  // A timer we can clear and a listener we remove: AbortSignal.timeout cannot be cancelled (a pending
  // timer per query for its whole budget) and AbortSignal.any keeps a dependent on the forwarder's
  // long-lived signal per query; under a flood both showed as RSS growth.
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    let started: Started | undefined;
    const finish = (fn: () => void): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      ctx.signal?.removeEventListener('abort', onAbort);
      started?.close();
      fn();
    };
    const settle: Settle<T> = {
      ok: (value) => finish(() => resolve(value)),
      fail: (err) => finish(() => reject(err)),
    };
    const onAbort = (): void => settle.fail(ctx.signal?.reason);
    // libuv timers may fire a little early against performance.now(): re-arm until really due
    const arm = (): void => {
      const left = ctx.deadline - performance.now();
      timer = setTimeout(() => {
        if (ctx.deadline - performance.now() > 0) arm();
        else settle.fail(started?.timeoutError());
      }, Math.max(0, Math.ceil(left)));
    };
    if (ctx.signal?.aborted) return reject(ctx.signal.reason);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    arm();
    try {
      started = start(settle);
      if (done) started.close();  // settled synchronously inside start()
    } catch (err) {
      settle.fail(new ApnsProxyError('E_NETWORK', `upstream ${describe(ctx)}: ${errorMessage(err)}`, { cause: err }));
    }
  });
}

function networkError(ctx: Attempt, transport: 'udp' | 'tcp', err: unknown): ApnsProxyError {
  return new ApnsProxyError('E_NETWORK', `upstream ${describe(ctx)} (${transport}): ${errorMessage(err)}`, { cause: err });
}

function timeoutError(ctx: Attempt, transport: 'udp' | 'tcp'): ApnsProxyError {
  return new ApnsProxyError('E_TIMEOUT', `upstream ${describe(ctx)}: no ${transport} reply within ${ctx.timeoutMs} ms`);
}

function malformedError(ctx: Attempt, transport: 'udp' | 'tcp', detail: string): ApnsProxyError {
  return new ApnsProxyError('E_MALFORMED', `upstream ${describe(ctx)} (${transport}): ${detail}`);
}

function udpAttempt(ctx: Attempt): Promise<ExchangeResult> {
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, ctx.q, ctx.flags);
  return runAttempt<ExchangeResult>(ctx, (settle) => {
    // a new socket per exchange: the OS picks a random source port, and no state is shared
    const socket = dgram.createSocket(ctx.server.family === 6 ? 'udp6' : 'udp4');
    let fromServer = 0;
    let undecodable = 0;
    socket.on('error', (err) => settle.fail(networkError(ctx, 'udp', err)));
    socket.on('message', (msg, rinfo) => {
      // strays, spoofs and garbage are ignored: only a matching reply or the deadline ends the wait
      if (rinfo.port !== ctx.server.port || !sameAddress(rinfo.address, ctx.server.host)) return;
      fromServer += 1;
      const reply = tryDecode(msg);
      if (!reply) {
        undecodable += 1;
        return;
      }
      if (isReplyTo(reply, id, ctx.q)) settle.ok({ response: reply, raw: msg, transport: 'udp', server: ctx.server });
    });
    // connect() binds to port 0 (OS-random) and has the kernel drop datagrams from other peers
    // No callback: dgram would pass a failed connect (e.g. ENETUNREACH) to it instead of 'error'.
    socket.once('connect', () => {
      socket.send(query, (err) => {
        if (err) settle.fail(networkError(ctx, 'udp', err));
      });
    });
    socket.connect(ctx.server.port, ctx.server.host);
    return {
      close: () => closeQuietly(socket),
      timeoutError: () => fromServer > 0 && undecodable === fromServer
        ? malformedError(ctx, 'udp', `only undecodable replies within ${ctx.timeoutMs} ms`)
        : timeoutError(ctx, 'udp'),
    };
  });
}

function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // already closed: nothing left to release
  }
}

function tcpAttempt(ctx: Attempt): Promise<ExchangeResult> {
  const id = randomInt(0, 65536);
  const query = encodeQuery(id, ctx.q, ctx.flags);
  return runAttempt<ExchangeResult>(ctx, (settle) => {
    const socket = net.connect({ host: ctx.server.host, port: ctx.server.port, family: ctx.server.family });
    const frames = new FrameReader();
    socket.setNoDelay(true);
    socket.on('connect', () => socket.write(frameMessage(query)));
    socket.on('data', (chunk: Buffer) => {
      for (const msg of frames.push(chunk)) {
        const reply = tryDecode(msg);
        // over TCP the bytes can only come from the server: garbage there is the server's fault
        if (!reply) return settle.fail(malformedError(ctx, 'tcp', 'undecodable reply'));
        if (isReplyTo(reply, id, ctx.q)) return settle.ok({ response: reply, raw: msg, transport: 'tcp', server: ctx.server });
      }
    });
    socket.on('error', (err) => settle.fail(networkError(ctx, 'tcp', err)));
    socket.on('close', () => settle.fail(networkError(ctx, 'tcp', 'connection closed before a reply')));
    return { close: () => socket.destroy(), timeoutError: () => timeoutError(ctx, 'tcp') };
  });
}

/** Prefixes a DNS message with its 2-byte length for TCP (RFC 1035 4.2.2). */
export function frameMessage(msg: Buffer): Buffer {
  if (msg.length > 65535) throw new RangeError(`frameMessage: message of ${msg.length} bytes exceeds 65535`);
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(msg.length, 0);
  return Buffer.concat([prefix, msg]);
}

/** Reassembles length-prefixed DNS messages from TCP chunks that may split or join frames anywhere. */
export class FrameReader {
  private pending: Buffer = Buffer.alloc(0);

  /** Feeds one chunk; returns every message it completed, in order. */
  push(chunk: Buffer): Buffer[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    while (this.pending.length >= 2) {
      const size = this.pending.readUInt16BE(0);
      if (this.pending.length < 2 + size) break;
      out.push(this.pending.subarray(2, 2 + size));
      this.pending = this.pending.subarray(2 + size);
    }
    return out;
  }

  /** Bytes received that do not yet form a whole message. */
  get buffered(): number {
    return this.pending.length;
  }
}
