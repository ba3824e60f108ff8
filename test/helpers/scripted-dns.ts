// A scripted DNS upstream for tests: real UDP and TCP sockets on one loopback port, and a
// handler that decides, query by query, what goes back (a reply, exact bytes, silence, several).
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { HostPort } from '../../src/core/net.js';
import { FrameReader, frameMessage } from '../../src/dns/client/exchange.js';

export type Transport = 'udp' | 'tcp';

export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED';
const RCODES: Record<Rcode, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

/** Options every sending action accepts. */
export interface SendOptions {
  delayMs?: number;                 // wait this long before sending (a slow upstream)
  tcpSplit?: readonly number[];     // TCP: write the framed bytes in pieces cut at these offsets...
  tcpGapMs?: number;                // ...this far apart (default 10 ms, so the client reads them separately)
  fromOtherPort?: boolean;          // UDP: send from another socket (a spoof from the right host, wrong port)
}

/**
 * A reply packet. Missing fields are filled from the query: `id`, `questions`, `type` ('response')
 * and `flags` (RD copied, RA set). Give them to send something else (a wrong ID, another question).
 */
export interface ScriptedPacket extends dnsPacket.Packet, SendOptions {
  rcode?: Rcode | number;           // sets the low 4 bits of flags
}
export interface ScriptedRaw extends SendOptions {
  raw: Buffer;                      // exact message bytes (TCP: the helper adds the length prefix...
  unframed?: boolean;               // ...unless this is set, then the bytes go out as they are)
}
export interface ScriptedDrop { drop: true }         // no reply at all
export interface ScriptedClose { close: true }       // TCP: close the connection (UDP: same as drop)

export type ScriptedAction = ScriptedPacket | ScriptedRaw | ScriptedDrop | ScriptedClose;
export type ScriptedResponse = ScriptedAction | readonly ScriptedAction[] | undefined;

export interface ScriptedQuery {
  name: string;                     // as asked, case preserved
  type: string;
  class: string;
  id: number;
  transport: Transport;
  remoteAddress: string;
  remotePort: number;               // the client's source port
  packet: dnsPacket.DecodedPacket;  // the whole decoded query
  raw: Buffer;
}

export type ScriptedHandler = (query: ScriptedQuery) => ScriptedResponse | Promise<ScriptedResponse>;

export interface ScriptedDns {
  readonly port: number;
  readonly hostPort: HostPort;
  readonly queries: ScriptedQuery[];  // every decodable query, in arrival order
  readonly inFlight: number;          // queries received whose actions are not finished yet
  readonly maxInFlight: number;
  readonly undecodable: number;       // datagrams/frames that were not DNS
  readonly errors: unknown[];         // handler exceptions (the query is then dropped)
  close(): Promise<void>;
}

/** Starts the server on `host` (default 127.0.0.1), UDP and TCP on the same OS-chosen port. */
export async function startScriptedDns(handler: ScriptedHandler, options: { host?: string } = {}): Promise<ScriptedDns> {
  const host = options.host ?? '127.0.0.1';
  const family: 4 | 6 = net.isIP(host) === 6 ? 6 : 4;
  const { udp, tcp, port } = await bindBoth(host, family);
  const queries: ScriptedQuery[] = [];
  const errors: unknown[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const connections = new Set<net.Socket>();
  let other: dgram.Socket | undefined;
  let inFlight = 0;
  let maxInFlight = 0;
  let undecodable = 0;
  let closed = false;

  const wait = (ms: number): Promise<void> => new Promise((resolve) => {
    if (ms <= 0 || closed) return resolve();
    const t = setTimeout(() => { timers.delete(t); resolve(); }, ms);
    timers.add(t);
  });

  function decodeQuery(raw: Buffer): dnsPacket.DecodedPacket | undefined {
    try {
      const packet = dnsPacket.decode(raw);
      return packet.questions?.[0] ? packet : undefined;
    } catch {
      return undefined;
    }
  }

  async function serve(raw: Buffer, transport: Transport, remoteAddress: string, remotePort: number,
    send: (bytes: Buffer, action: SendOptions) => Promise<void>, hangup: () => void): Promise<void> {
    const packet = decodeQuery(raw);
    if (!packet) {
      undecodable += 1;
      return;
    }
    const question = packet.questions![0]!;
    const query: ScriptedQuery = {
      name: question.name, type: question.type, class: question.class ?? 'IN', id: packet.id ?? 0,
      transport, remoteAddress, remotePort, packet, raw,
    };
    queries.push(query);
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      const response = await handler(query);
      const actions: readonly ScriptedAction[] = response === undefined ? [] : isList(response) ? response : [response];
      for (const action of actions) {
        if (closed) break;
        if ('drop' in action) continue;
        if ('close' in action) {
          hangup();
          break;
        }
        await wait(action.delayMs ?? 0);
        if (closed) break;
        await send('raw' in action ? action.raw : encodeReply(packet, action), action);
      }
    } catch (err) {
      errors.push(err);
    } finally {
      inFlight -= 1;
    }
  }

  udp.on('message', (msg, rinfo) => {
    const send = async (bytes: Buffer, action: SendOptions): Promise<void> => {
      if (closed) return;
      if (action.fromOtherPort) {
        other ??= dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
        other.send(bytes, rinfo.port, rinfo.address);
      } else {
        udp.send(bytes, rinfo.port, rinfo.address);
      }
    };
    void serve(msg, 'udp', rinfo.address, rinfo.port, send, () => undefined);
  });

  tcp.on('connection', (socket) => {
    connections.add(socket);
    socket.setNoDelay(true);
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => undefined);  // clients may reset; nothing to do
    const frames = new FrameReader();
    const send = async (bytes: Buffer, action: SendOptions): Promise<void> => {
      const wire = 'unframed' in action && action.unframed ? bytes : frameMessage(bytes);
      const cuts = [...(action.tcpSplit ?? []), wire.length];
      let from = 0;
      for (const [i, cut] of cuts.entries()) {
        if (closed || socket.destroyed) return;
        if (i > 0) await wait(action.tcpGapMs ?? 10);
        if (closed || socket.destroyed) return;
        socket.write(wire.subarray(from, cut));
        from = cut;
      }
    };
    socket.on('data', (chunk: Buffer) => {
      for (const msg of frames.push(chunk)) {
        void serve(msg, 'tcp', socket.remoteAddress ?? '', socket.remotePort ?? 0, send, () => socket.end());
      }
    });
  });

  return {
    port,
    hostPort: { host, port, family },
    queries,
    get inFlight() { return inFlight; },
    get maxInFlight() { return maxInFlight; },
    get undecodable() { return undecodable; },
    errors,
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const socket of connections) socket.destroy();
      other?.close();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

function isList(response: ScriptedAction | readonly ScriptedAction[]): response is readonly ScriptedAction[] {
  return Array.isArray(response);
}

function encodeReply(query: dnsPacket.DecodedPacket, action: ScriptedPacket): Buffer {
  const { rcode, delayMs: _d, tcpSplit: _s, tcpGapMs: _g, fromOtherPort: _o, ...packet } = action;
  const rd = query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0;
  let flags = packet.flags ?? (rd | dnsPacket.RECURSION_AVAILABLE);
  if (rcode !== undefined) flags = (flags & ~0xf) | (typeof rcode === 'number' ? rcode : RCODES[rcode]);
  return dnsPacket.encode({
    ...packet,
    type: packet.type ?? 'response',
    id: packet.id ?? query.id,
    questions: packet.questions ?? query.questions,
    flags,
  });
}

/** Binds UDP on port 0, then TCP on the same number; retries if TCP finds that port taken. */
async function bindBoth(host: string, family: 4 | 6): Promise<{ udp: dgram.Socket; tcp: net.Server; port: number }> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => { udp.off('error', reject); resolve(); });
    });
    const port = udp.address().port;
    const tcp = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, host, () => { tcp.off('error', reject); resolve(); });
      });
      udp.on('error', () => undefined);  // e.g. ICMP errors after a client went away
      return { udp, tcp, port };
    } catch (err) {
      udp.close();
      if (attempt >= 20) throw err;
    }
  }
}
