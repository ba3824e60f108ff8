// Shared by the dns-*.test.ts files: queries built with dns-packet (an independent codec) plus raw
// EDNS bytes, a snapshot in the test address plan, and a decoder for what the server sends back.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Config } from '../../src/core/config.js';
import { desiredMapping, type Snapshot } from '../../src/sync/mapping.js';
import type { Resolution } from '../../src/dns/client/resolver.js';
import { FrameReader, frameMessage } from '../../src/dns/client/exchange.js';
import { fail, nx, ok, testConfig } from '../helpers/fixtures.js';

export type Decoded = dnsPacket.DecodedPacket & { rcode: string; opcode: string };

export interface QueryOptions {
  id?: number;
  rd?: boolean;               // default true
  cd?: boolean;
  klass?: string;             // default 'IN'
  edns?: {                    // an OPT record, written by hand so every field is under the test's control
    size?: number;            // default 4096
    version?: number;
    dnssecOk?: boolean;       // the DO flag
    options?: Buffer;         // raw option bytes (code, length, data)
  };
}

/** The wire bytes of an OPT record. */
export function optBytes(size = 4096, version = 0, options: Buffer = Buffer.alloc(0), dnssecOk = false): Buffer {
  const head = Buffer.alloc(11);
  head.writeUInt16BE(41, 1);
  head.writeUInt16BE(size, 3);
  head[6] = version;
  head[7] = dnssecOk ? 0x80 : 0;
  head.writeUInt16BE(options.length, 9);
  return Buffer.concat([head, options]);
}

/** A DNS cookie option (RFC 7873): 8 bytes of client cookie. */
export const COOKIE = Buffer.from('000a00080102030405060708', 'hex');

/** Appends records to a message and raises ARCOUNT. */
export function withAdditional(msg: Buffer, ...records: Buffer[]): Buffer {
  const out = Buffer.concat([msg, ...records]);
  out.writeUInt16BE(out.readUInt16BE(10) + records.length, 10);
  return out;
}

export function query(name: string, type = 'A', o: QueryOptions = {}): Buffer {
  const flags = (o.rd ?? true ? dnsPacket.RECURSION_DESIRED : 0) | (o.cd ? dnsPacket.CHECKING_DISABLED : 0);
  const msg = dnsPacket.encode({
    type: 'query', id: o.id ?? 0x1234, flags,
    questions: [{ name, type: type as dnsPacket.RecordType, class: (o.klass ?? 'IN') as dnsPacket.RecordClass }],
  });
  return o.edns ? withAdditional(msg, optBytes(o.edns.size, o.edns.version, o.edns.options, o.edns.dnssecOk)) : msg;
}

export function decode(bytes: Buffer): Decoded {
  return dnsPacket.decode(bytes) as Decoded;
}

/** The test plan's couriers: 1..49 resolved, 50 never resolved (existence unknown), 51..60 NXDOMAIN. */
export function testSnapshot(config: Config = testConfig(), overrides: Record<number, Resolution> = {}): Snapshot {
  const results = new Map<string, Resolution>();
  for (let n = config.couriers.first; n <= config.couriers.last; n++) {
    results.set(config.couriers.template.replace('{n}', String(n)), overrides[n] ?? (n < 50 ? ok(['203.0.113.10']) : n === 50 ? fail() : nx));
  }
  return desiredMapping({ config, previous: new Map(), results, now: 1_700_000_000_000 }).snapshot;
}

export function optOf(p: Decoded): dnsPacket.OptAnswer | undefined {
  return p.additionals?.find((r): r is dnsPacket.OptAnswer => r.type === 'OPT');
}

/** One UDP exchange with a server on loopback; rejects after timeoutMs without a reply. */
export function udpAsk(port: number, msg: Buffer, timeoutMs = 2000, host = '127.0.0.1'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket(net.isIP(host) === 6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => { socket.close(); reject(new Error(`no UDP reply within ${timeoutMs} ms`)); }, timeoutMs);
    socket.on('message', (reply) => { clearTimeout(timer); socket.close(); resolve(reply); });
    socket.send(msg, port, host);
  });
}

/** A TCP client: write raw bytes, read framed replies as they come. */
export interface TcpClient {
  socket: net.Socket;
  replies: Buffer[];
  /** Resolves once `count` replies have arrived in total. */
  waitFor(count: number, timeoutMs?: number): Promise<Buffer[]>;
  /** Resolves when the server closes the connection. */
  closed: Promise<void>;
  send(msg: Buffer): void;
}

export async function tcpConnect(port: number, host = '127.0.0.1'): Promise<TcpClient> {
  const socket = net.connect({ port, host });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.setNoDelay(true);
  const replies: Buffer[] = [];
  const frames = new FrameReader();
  const waiters: (() => void)[] = [];
  socket.on('data', (chunk: Buffer) => {
    replies.push(...frames.push(chunk).map((m) => Buffer.from(m)));
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    resolve();
    for (const w of waiters.splice(0)) w();
  }));
  return {
    socket, replies, closed,
    send: (msg) => void socket.write(frameMessage(msg)),
    waitFor(count, timeoutMs = 2000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${replies.length} of ${count} TCP replies within ${timeoutMs} ms`)), timeoutMs);
        const check = (): void => {
          if (replies.length >= count) {
            clearTimeout(timer);
            resolve(replies.slice(0, count));
          } else if (socket.destroyed) {
            clearTimeout(timer);
            reject(new Error(`connection closed after ${replies.length} of ${count} replies`));
          } else {
            waiters.push(check);
          }
        };
        check();
      });
    },
  };
}
