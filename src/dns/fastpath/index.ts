// The DNS server's UDP fast path (the addon apns_proxy_fastpath: fastpath.c beside this file, with
// its binding.gyp and prebuilds/) as server.ts uses it: a thread per UDP listen socket answers
// courier queries from the replies buildResponder precomputed and hands every other datagram to JS
// unchanged. This module loads the addon and only moves things across: it encodes the table the
// threads answer from (encodeFastPathTable, pure) and decodes the batches they hand over. Optional
// at install: without the addon the DNS server serves UDP with node:dgram.
import { loadAddon } from '../../core/addon.js';
import { ApnsProxyError, errorMessage } from '../../core/errors.js';
import type { HostPort } from '../../core/net.js';
import { parseIPv4 } from '../../core/net.js';
import { aclEntry } from '../acl.js';
import type { Responder } from '../answer.js';

/** The addon's functions (fastpath.c): a thread per UDP listen socket, datagrams for JS in batches. */
export interface FastPathBinding {
  /** onEvent(batch, null): datagrams for JS (records, see decodeBatch); onEvent(null, text): a socket error. */
  dnsCreate(onEvent: (batch: Buffer | null, error: string | null) => void): object;
  /** Binds a UDP socket (errors carry Node's errno code, or E_NATIVE_ADDR for a non-literal host): [index, port]. */
  dnsBind(handle: object, host: string, port: number, family: 4 | 6): [number, number];
  dnsStart(handle: object, index: number): void;
  dnsCloseSocket(handle: object, index: number): void;
  /** 0, or the errno of a send that failed (never blocks). */
  dnsSend(handle: object, index: number, bytes: Buffer, sockaddr: Buffer): number;
  dnsSetTable(handle: object, table: Buffer): void;
  dnsSetRateLimit(handle: object, rate: number, maxKeys: number): void;
  dnsTake(handle: object, address: string): boolean;
  dnsDecide(handle: object, msg: Buffer, address: string): Buffer | null;
  dnsStats(handle: object): FastPathStats;
  dnsClose(handle: object): void;
}

export interface FastPathStats {
  readonly queries: number;          // datagrams received
  readonly rateLimited: number;      // dropped by the rate limit
  readonly handedToJs: number;       // datagrams queued for JS
  readonly handoffDropped: number;   // dropped because too much was already queued for JS
  readonly sendErrors: number;
  readonly courier: number;          // answered natively, by outcome
  readonly nodata: number;
  readonly nxdomain: number;
  readonly rateLimitClients: number; // buckets held
}

let cached: FastPathBinding | undefined;

/**
 * The fast-path addon; throws E_NATIVE_MISSING when it is neither prebuilt for this machine nor
 * built (the DNS server then stays on node:dgram and says so).
 */
export function loadFastPath(): FastPathBinding {
  if (cached) return cached;
  try {
    cached = loadAddon<FastPathBinding>(import.meta.url);
  } catch (err) {
    throw new ApnsProxyError('E_NATIVE_MISSING', `the fastpath addon (apns_proxy_fastpath) is neither prebuilt for this machine nor built (${errorMessage(err).split('\n')[0]}); run "npm run build:native"`, { cause: err });
  }
  return cached;
}

/** A datagram the fast path's thread did not answer, with what a reply through the same socket needs. */
export interface FastPathDatagram {
  readonly socket: number;    // index of the receiving socket (dnsSend)
  readonly charged: boolean;  // the native rate limiter already took this client's token for it
  readonly address: string;   // the sender as Node writes it ("192.0.2.2", "::ffff:192.0.2.2", "fe80::1%eth0")
  readonly peer: Buffer;      // the sender's sockaddr, for the reply
  readonly msg: Buffer;
}

export interface FastPath {
  /** Binds a UDP socket; errors carry Node's errno codes (EADDRINUSE...), E_NATIVE_ADDR for a non-literal host. */
  bind(hp: HostPort): { index: number; port: number };
  /** Starts the socket's thread; throws when it cannot (the caller then serves it with node:dgram). */
  start(index: number): void;
  closeSocket(index: number): void;
  /** Sends through a native socket; 0 or the errno of a failed send. */
  send(index: number, bytes: Buffer, peer: Buffer): number;
  setTable(table: Buffer): void;
  /** Fresh buckets at `rate` queries a second per client (0: off), shared by every socket and TCP. */
  setRateLimit(rate: number, maxKeys: number): void;
  take(address: string): boolean;
  /** What the fast path would answer this datagram from this client with; null: it hands it to JS. */
  decide(msg: Buffer, address: string): Buffer | null;
  stats(): FastPathStats;
  close(): void;
}

/** Opens the fast path; throws when the addon is not built or cannot start. */
export function openFastPath(
  onDatagram: (d: FastPathDatagram) => void,
  onError: (text: string) => void,
  binding: FastPathBinding = loadFastPath(),
): FastPath {
  const b = binding;
  const handle = b.dnsCreate((batch, error) => {
    if (error !== null) return onError(error);
    if (batch !== null) decodeBatch(batch, onDatagram, onError);
  });
  return {
    bind(hp) {
      const [index, port] = b.dnsBind(handle, hp.host, hp.port, hp.family);
      return { index, port };
    },
    start: (index) => b.dnsStart(handle, index),
    closeSocket: (index) => b.dnsCloseSocket(handle, index),
    send: (index, bytes, peer) => b.dnsSend(handle, index, bytes, peer),
    setTable: (table) => b.dnsSetTable(handle, table),
    setRateLimit: (rate, maxKeys) => b.dnsSetRateLimit(handle, rate, maxKeys),
    take: (address) => b.dnsTake(handle, address),
    decide: (msg, address) => b.dnsDecide(handle, msg, address),
    stats: () => b.dnsStats(handle),
    close: () => b.dnsClose(handle),
  };
}

/** Record: u16 length, u16 socket, u8 flags, u8 address length, u8 sockaddr length, sockaddr, address, message. */
const RECORD_HEAD = 7;
const FLAG_CHARGED = 1;

function decodeBatch(batch: Buffer, onDatagram: (d: FastPathDatagram) => void, onError: (text: string) => void): void {
  let p = 0;
  while (p + RECORD_HEAD <= batch.length) {
    const msgLen = batch.readUInt16BE(p);
    const socket = batch.readUInt16BE(p + 2);
    const flags = batch[p + 4]!;
    const textLen = batch[p + 5]!;
    const peerLen = batch[p + 6]!;
    const peerAt = p + RECORD_HEAD;
    const textAt = peerAt + peerLen;
    const msgAt = textAt + textLen;
    p = msgAt + msgLen;
    if (p > batch.length) return onError('dns: fastpath: handed over a malformed batch');
    const d: FastPathDatagram = {
      socket,
      charged: (flags & FLAG_CHARGED) !== 0,
      address: batch.toString('latin1', textAt, msgAt),
      peer: Buffer.from(batch.subarray(peerAt, textAt)),
      msg: batch.subarray(msgAt, p),
    };
    try {
      onDatagram(d);
    } catch (err) {
      onError(`dns: udp: ${String(err)}`);  // one bad datagram must not lose the rest of the batch
    }
  }
}

/** fastpath.c's MAX_ACL. */
const MAX_FAST_NETS = 4096;

/** Outcome codes of the table, in fastpath.c's order. */
const OUTCOME = { courier: 0, nodata: 1, nxdomain: 2 } as const;

/**
 * The table the native threads answer from: whether to answer at all (`answer` false hands every
 * datagram to JS), the IPv4 networks of dns.allowClients (an IPv4 client outside them goes to JS,
 * which says REFUSED or, through an IPv6 rule covering mapped addresses, answers it), and per name
 * of every set (couriers, sandbox couriers, exact names alike: the table is keyed by name, C knows no
 * sets) its lower-cased name, outcomes and the four replies buildResponder made. Big-endian:
 *   "DNSF" u8 1 u8 answer u16 nets (u32 network u8 prefix)*
 *   u16 couriers (u8 nameLen name u8 outcomeA u8 outcomeOther (u16 len bytes)x4: A, A+OPT, other, other+OPT)*
 */
export function encodeFastPathTable(r: Pick<Responder, 'couriers'> & Partial<Pick<Responder, 'seed'>>, allowClients: readonly string[], answer: boolean): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head.write('DNSF', 0, 'latin1');
  head[4] = 1;
  head[5] = answer ? 1 : 0;
  const nets: Buffer[] = [];
  for (const cidr of allowClients) {
    const entry = aclEntry(cidr);  // parsed as ClientAcl parses it, so both judge a client alike
    if (entry?.family !== 4) continue;
    const net = Buffer.alloc(5);
    net.writeUInt32BE(parseIPv4(entry.address)!, 0);
    net[4] = entry.prefix;
    nets.push(net);
  }
  // fastpath.c takes at most MAX_FAST_NETS; with more, no IPv4 client is answered natively (JS decides all)
  if (nets.length > MAX_FAST_NETS) nets.length = 0;
  head.writeUInt16BE(nets.length, 6);
  parts.push(head, ...nets);
  const count = Buffer.alloc(2);
  count.writeUInt16BE(r.couriers.size, 0);
  parts.push(count);
  for (const c of r.couriers.values()) {
    const outcomeA = c.exists === false ? OUTCOME.nxdomain : OUTCOME.courier;
    const outcomeOther = c.exists === false ? OUTCOME.nxdomain : OUTCOME.nodata;
    parts.push(Buffer.from([c.qname.length]), c.qname, Buffer.from([outcomeA, outcomeOther]));
    for (const reply of [c.forA[0], c.forA[1], c.forOther[0], c.forOther[1]]) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(reply.length, 0);
      parts.push(len, reply);
    }
  }
  return Buffer.concat(parts);
}
