// The DNS server's transports (UDP and TCP on every dns.listen address): they only move bytes
// between sockets and the pure answer logic, apply the per-client rate limit and the ACL verdict,
// and hand non-courier questions to the forwarder. UDP is served by the UDP fast path when its
// addon loads (fastpath/index.ts: courier answers in a thread per socket, everything else handed here),
// else by node:dgram; TCP always here.
import dgram from 'node:dgram';
import net from 'node:net';
import { constants as osConstants } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Config } from '../core/config.js';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import type { Generation, Snapshot } from '../sync/mapping.js';
import { formatHostPort, type HostPort } from '../core/net.js';
import { FrameReader, exchange as realExchange, frameMessage } from './client/exchange.js';
import { ClientAcl } from './acl.js';
import { type Decision, type Outcome, type Responder, type Transport, answerQuery, buildResponder, rcodeOf } from './answer.js';
import { type Forwarder, createForwarder } from './forward.js';
import { TokenBuckets } from './limits.js';
import { LogLimiter } from '../core/log.js';
import { type FastPath, type FastPathBinding, type FastPathDatagram, encodeFastPathTable, openFastPath } from './fastpath/index.js';
import { HEADER_SIZE, questionForLog } from './wire.js';

export interface DnsServerOptions {
  readonly config: Config;
  readonly snapshot: Snapshot | undefined;
  readonly logger: Logger;
  /**
   * Monotonic ms (rate limit, log throttling); performance.now. An injected clock (tests) also keeps
   * rate limiting and every answer in JS: the native fast path can only follow the real clock.
   */
  readonly clock?: () => number;
  readonly exchange?: typeof realExchange;    // the upstream seam
  readonly listen?: readonly HostPort[];      // instead of config.dns.listen (tests: port 0 = any free port)
  /**
   * Per answer sent: local (from the snapshot, incl. REFUSED/FORMERR) or forwarded; seconds by `clock`.
   * Not called for the native fast path's courier answers (stats() counts those).
   */
  readonly onAnswered?: (kind: 'local' | 'forwarded', seconds: number) => void;
  /**
   * Serve UDP through the native fast path when its addon loads (default: yes, unless the environment
   * has APNS_PROXY_DNS_NATIVE=0). Without it, or when a socket's thread cannot start, node:dgram.
   */
  readonly nativeUdp?: boolean;
  /** Tests: a stand-in for the fast path's addon. */
  readonly nativeBinding?: FastPathBinding;
}

export interface DnsEndpoint {
  readonly transport: Transport;
  readonly host: string;
  readonly port: number;
}

export interface DnsStats {
  queries: number;                 // every datagram and TCP frame received
  rateLimited: number;             // dropped by the per-client rate limit
  dropped: number;                 // unreadable header or not a query: no reply
  outcomes: Record<Outcome, number>;
  forwarded: number;
  forwardsInFlight: number;
  forwardOverflows: number;        // SERVFAIL at once: dns.maxForwards in flight, or the client held its share
  forwardClientOverflows: number;  // of those, because the client held its share of dns.maxForwards
  tcpConnections: number;          // open now
  tcpRejected: number;             // turned away at dns.tcpMaxConnections
  tcpOutsiders: number;            // closed at accept: the client is outside dns.allowClients
  tcpPerClientRejected: number;    // closed at accept: the client had dns.tcpMaxPerClient open
  tcpFrameTimeouts: number;        // closed: a query frame was not complete within dns.tcpFrameTimeoutMs
  rateLimitClients: number;        // buckets held by the rate limiter
  fastPath: number;                // of the outcomes, answered by the native UDP fast path
  handoffDropped: number;          // datagrams dropped because too many were waiting for JS
}

export interface DnsServer {
  readonly endpoints: readonly DnsEndpoint[];
  /** Adopts a new snapshot and configuration (dns.listen changes need a restart). */
  update(generation: Generation): void;
  stats(): DnsStats;
  close(): Promise<void>;
}

/** A TCP client that does not read its answers is cut off once this much is queued for it. */
const TCP_MAX_QUEUED_BYTES = 256 * 1024;
/** Rate-limit buckets kept at most (one per client address). */
const MAX_RATE_CLIENTS = 65536;
/** Debug lines per second at most (every query is logged at debug, but never as a flood). */
const DEBUG_LINES_PER_SECOND = 50;
const UDP_BUFFER_BYTES = 4 * 1024 * 1024;

/** Per-client token buckets: TokenBuckets in JS, or the native fast path's (shared with its threads). */
interface Limiter {
  take(address: string): boolean;
  readonly size: number;
}

interface State {
  readonly config: Config;
  readonly responder: Responder;
  readonly acl: ClientAcl;
  readonly buckets: Limiter | undefined;
  readonly forwarder: Forwarder;
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const { logger, onAnswered } = opts;
  const clock = opts.clock ?? (() => performance.now());
  const doExchange = opts.exchange ?? realExchange;
  const debugLines = new LogLimiter(DEBUG_LINES_PER_SECOND, 1000, clock);
  const warnLines = new LogLimiter(5, 10_000, clock);
  const countLines = new LogLimiter(1, 600_000, clock);  // push.apple.com TXT count rewritten: once per 10 min
  const retired = new Set<Forwarder>();  // replaced by a reload, still finishing their forwards
  const counters = {
    queries: 0, rateLimited: 0, dropped: 0, forwarded: 0,
    tcpRejected: 0, tcpOutsiders: 0, tcpPerClientRejected: 0, tcpFrameTimeouts: 0,
    outcomes: { courier: 0, nodata: 0, nxdomain: 0, refused: 0, formerr: 0, notimp: 0, badvers: 0 } as Record<Outcome, number>,
  };
  let overflowsRetired = 0;
  let clientOverflowsRetired = 0;
  let nativeSeen = 0;  // datagrams the native threads handed over that JS has taken in
  const boundListen = opts.listen ?? opts.config.dns.listen;
  // Asked again on every update (a reload that changes log.level is followed by a new snapshot).
  let debug = logger.isDebug();

  let native: FastPath | undefined;
  let nativeProblem: string | undefined;
  if (!(opts.nativeUdp ?? process.env.APNS_PROXY_DNS_NATIVE !== '0')) {
    nativeProblem = opts.nativeUdp === false ? 'off (nativeUdp: false)' : 'off (APNS_PROXY_DNS_NATIVE=0)';
  } else if (boundListen.length > 0) {
    try {
      native = openFastPath(onNativeDatagram, (text) => warn(text), opts.nativeBinding);
    } catch (err) {
      nativeProblem = `unavailable: ${errorMessage(err)}`;
    }
  }
  // The fast path answers couriers itself unless every query must pass through JS: at debug (each
  // is logged) and under an injected clock (tests of the rate limit and latency hooks).
  const nativeLimits = native !== undefined && opts.clock === undefined;
  const fastAnswers = (): boolean => nativeLimits && !debug;

  function warn(message: string): void {
    const held = warnLines.take();
    if (held !== undefined) logger.warn(held > 0 ? `${message} (${held} similar lines suppressed)` : message);
  }

  function makeForwarder(config: Config): Forwarder {
    return createForwarder({
      servers: config.upstreamDns,
      timeoutMs: config.dns.forwardTimeoutMs,
      maxInFlight: config.dns.maxForwards,
      exchange: doExchange,
      onForward: (e) => {
        if (e.countRewritten && countLines.take() !== undefined) {
          logger.info(`dns: ${e.query.name} TXT said count=${e.countRewritten.from}; answered count=${e.countRewritten.to}, the couriers this router serves`);
        }
        if (!logger.isDebug()) return;
        const held = debugLines.take();
        if (held === undefined) return;
        logger.debug(`dns: forwarded ${e.query.name} ${e.query.type} via ${e.server ?? '-'}: ${e.outcome} (${e.ms} ms)${held ? ` (${held} lines suppressed)` : ''}`);
      },
    });
  }

  function makeState(config: Config, snapshot: Snapshot | undefined, previous?: State): State {
    const same = <K extends keyof Config['dns']>(k: K) => previous !== undefined && JSON.stringify(previous.config.dns[k]) === JSON.stringify(config.dns[k]);
    // What can fail comes first: a snapshot that cannot be adopted leaves the previous state whole.
    const acl = same('allowClients') ? previous!.acl : new ClientAcl(config.dns.allowClients);
    const responder = buildResponder(config, snapshot);
    if (native !== undefined) pushTable(native, responder, config);
    const sameUpstream = previous !== undefined && JSON.stringify(previous.config.upstreamDns) === JSON.stringify(config.upstreamDns) &&
      same('forwardTimeoutMs') && same('maxForwards');
    let forwarder = previous?.forwarder;
    if (!sameUpstream || forwarder === undefined) {
      if (forwarder) retire(forwarder);
      forwarder = makeForwarder(config);
    }
    return { config, responder, acl, buckets: same('rateLimit') ? previous!.buckets : makeLimiter(config.dns.rateLimit), forwarder };
  }

  /** The native threads' table; if it is refused (a bug), they hand everything to JS rather than stop a snapshot. */
  function pushTable(n: FastPath, responder: Responder, config: Config): void {
    try {
      n.setTable(encodeFastPathTable(responder, config.dns.allowClients, fastAnswers()));
    } catch (err) {
      logger.error(`dns: the UDP fast path refused its table (${errorMessage(err)}); every UDP query goes through node`);
      n.setTable(encodeFastPathTable({ couriers: new Map(), seed: 0 }, [], false));
    }
  }

  function makeLimiter(rate: number): Limiter | undefined {
    if (!nativeLimits) return rate > 0 ? new TokenBuckets(rate, rate, MAX_RATE_CLIENTS, clock) : undefined;
    const n = native!;
    n.setRateLimit(rate, MAX_RATE_CLIENTS);  // fresh buckets, as a new TokenBuckets would be
    return rate > 0 ? { take: (address) => n.take(address), get size() { return n.stats().rateLimitClients; } } : undefined;
  }

  function retire(f: Forwarder): void {
    retired.add(f);  // kept until its last forward completes, for counts and close()
    pruneRetired();
  }

  function pruneRetired(): void {
    for (const f of retired) {
      if (f.inFlight > 0) continue;
      overflowsRetired += f.overflows;
      clientOverflowsRetired += f.clientOverflows;
      retired.delete(f);
    }
  }

  let state: State;
  try {
    state = makeState(opts.config, opts.snapshot);
  } catch (err) {
    native?.close();
    throw err;
  }

  /**
   * One query through the pipeline: bytes to send now, a promise of bytes (forwarded), or nothing.
   * `charged`: handed over by the native threads, which counted it and (when true) took its token.
   */
  function handle(msg: Buffer, address: string, transport: Transport, charged?: boolean): Buffer | Promise<Buffer> | undefined {
    if (charged === undefined) counters.queries++;
    else nativeSeen++;
    const started = onAnswered === undefined ? 0 : clock();  // no clock reads unless someone listens
    const s = state;
    if (s.buckets !== undefined && charged !== true && !s.buckets.take(address)) {
      counters.rateLimited++;
      return undefined;
    }
    const decision = answerQuery(s.responder, msg, transport, s.acl.allows(address));
    if (debug) logQuery(msg, address, transport, decision);
    switch (decision.kind) {
      case 'reply':
        counters.outcomes[decision.outcome]++;
        if (onAnswered !== undefined) answered('local', started);
        return decision.bytes;
      case 'forward': {
        counters.forwarded++;
        const f = s.forwarder;
        if (f.inFlight >= s.config.dns.maxForwards) warn(`dns: ${s.config.dns.maxForwards} forwards in flight (dns.maxForwards); answering SERVFAIL`);
        else if (f.heldBy(address) >= f.share) warn(`dns: ${address} holds ${f.share} forwards, its share of dns.maxForwards (${s.config.dns.maxForwards}); answering it SERVFAIL`);
        const reply = f.forward(decision.query, address);
        return onAnswered === undefined ? reply : reply.then((bytes) => { answered('forwarded', started); return bytes; });
      }
      default:
        counters.dropped++;
        return undefined;
    }
  }

  function answered(kind: 'local' | 'forwarded', started: number): void {
    try {
      onAnswered!(kind, (clock() - started) / 1000);
    } catch {
      // a failing metrics hook must not fail an answer
    }
  }

  function debugLine(text: string): void {
    const held = debugLines.take();
    if (held !== undefined) logger.debug(`${text}${held ? ` (${held} lines suppressed)` : ''}`);
  }

  function logQuery(msg: Buffer, address: string, transport: Transport, d: Decision): void {
    const held = debugLines.take();
    if (held === undefined) return;
    const what = msg.length > HEADER_SIZE ? questionForLog(msg) : '(no question)';
    const result = d.kind === 'reply'
      ? `${d.outcome}${d.outcome === 'courier' ? ` ${vipOf(d.bytes)}` : ''} (rcode ${rcodeOf(d.bytes)})`
      : d.kind === 'forward' ? `forward ${d.query.type}` : `drop (${d.reason})`;
    logger.debug(`dns: ${address} ${transport} ${what}: ${result}${held ? ` (${held} lines suppressed)` : ''}`);
  }

  const udpSockets: dgram.Socket[] = [];
  const nativeEndpoints: string[] = [];
  const tcpServers: net.Server[] = [];
  const connections = new Set<net.Socket>();
  const tcpPerClient = new Map<string, number>();  // open TCP connections per client address; no entry at 0
  const endpoints: DnsEndpoint[] = [];

  function serveUdp(socket: dgram.Socket): void {
    socket.on('message', (msg, rinfo) => {
      const out = handle(msg, rinfo.address, 'udp');
      if (out === undefined) return;
      if (!(out instanceof Promise)) socket.send(out, rinfo.port, rinfo.address);
      else void out.then((bytes) => { if (!closed) socket.send(bytes, rinfo.port, rinfo.address); });
    });
    // e.g. a reply the kernel would not send (EPERM from a firewall): log, keep serving
    socket.on('error', (err) => warn(`dns: udp: ${errorMessage(err)}`));
  }

  function onNativeDatagram(d: FastPathDatagram): void {
    const out = handle(d.msg, d.address, 'udp', d.charged);
    if (out === undefined) return;
    if (!(out instanceof Promise)) nativeSend(d, out);
    else void out.then((bytes) => { if (!closed) nativeSend(d, bytes); });
  }

  function nativeSend(d: FastPathDatagram, bytes: Buffer): void {
    const err = native!.send(d.socket, bytes, d.peer);
    if (err !== 0) warn(`dns: udp: send to ${d.address}: ${errnoName(err)}`);
  }

  function serveTcp(socket: net.Socket): void {
    socket.on('error', () => undefined);  // resets by clients are theirs to have
    const address = socket.remoteAddress;
    if (address === undefined) return void socket.destroy();  // already gone
    const { dns } = state.config;
    // judged at accept: an outsider's queries would only be REFUSED, so it must not hold a slot
    if (!state.acl.allows(address)) {
      counters.tcpOutsiders++;
      if (debug) debugLine(`dns: ${address} tcp: connection closed at accept (not in dns.allowClients)`);
      return void socket.destroy();
    }
    const open = tcpPerClient.get(address) ?? 0;
    if (open >= dns.tcpMaxPerClient) {
      counters.tcpPerClientRejected++;
      warn(`dns: tcp connection from ${address} refused: ${open} open (dns.tcpMaxPerClient)`);
      return void socket.destroy();
    }
    tcpPerClient.set(address, open + 1);
    connections.add(socket);
    socket.setNoDelay(true);
    // idle counts from the last complete frame or answer: stray bytes do not keep a connection
    const idle = setTimeout(() => socket.destroy(), dns.tcpIdleTimeoutMs);
    // a frame that has started must be complete by this deadline (no trickling a slot away)
    let frameDeadline: NodeJS.Timeout | undefined;
    const frameTimedOut = (): void => {
      counters.tcpFrameTimeouts++;
      if (debug) debugLine(`dns: ${address} tcp: connection closed: a query frame not complete within ${dns.tcpFrameTimeoutMs} ms (dns.tcpFrameTimeoutMs)`);
      socket.destroy();
    };
    const frames = new FrameReader();
    let pending = 0;
    let ended = false;
    const write = (bytes: Buffer): void => {
      if (socket.destroyed || !socket.writable) return;
      if (socket.writableLength > TCP_MAX_QUEUED_BYTES) return void socket.destroy();
      socket.write(frameMessage(bytes));
      idle.refresh();
    };
    socket.on('data', (chunk: Buffer) => {
      const msgs = frames.push(chunk);
      if (msgs.length > 0) idle.refresh();
      if (frames.buffered === 0) {
        clearTimeout(frameDeadline);
        frameDeadline = undefined;
      } else if (frameDeadline === undefined) {
        frameDeadline = setTimeout(frameTimedOut, dns.tcpFrameTimeoutMs);
      } else if (msgs.length > 0) {
        frameDeadline.refresh();  // the frames before it are complete: a new one started in this chunk
      }
      // several queries per connection, pipelined: answered as they come (forwards may overtake)
      for (const msg of msgs) {
        const out = handle(msg, address, 'tcp');
        if (out === undefined) continue;
        if (!(out instanceof Promise)) {
          write(out);
          continue;
        }
        pending++;
        void out.then((bytes) => {
          pending--;
          write(bytes);
          if (ended && pending === 0) socket.end();
        });
      }
    });
    socket.on('end', () => {
      ended = true;  // the client is done sending; finish what it asked, then close
      if (pending === 0) socket.end();
    });
    socket.on('close', () => {
      clearTimeout(idle);
      clearTimeout(frameDeadline);
      connections.delete(socket);
      const left = (tcpPerClient.get(address) ?? 1) - 1;
      if (left > 0) tcpPerClient.set(address, left);
      else tcpPerClient.delete(address);
    });
  }

  let closed = false;
  let closing: Promise<void> | undefined;
  try {
    for (const hp of boundListen) {
      const { udp: side, tcp } = await bindPair(hp, native);
      tcpServers.push(tcp);
      let port: number;
      if (side.kind === 'native') {
        port = side.port;
        try {
          native!.start(side.index);
          nativeEndpoints.push(formatHostPort({ host: hp.host, port }));
        } catch (err) {
          native!.closeSocket(side.index);
          logger.info(`dns: udp ${formatHostPort({ host: hp.host, port })}: the UDP fast path cannot start (${errorMessage(err)}); serving it with node:dgram`);
          let udp: dgram.Socket;
          try {
            udp = await bindUdp({ ...hp, port });
          } catch (bindErr) {
            throw new ApnsProxyError('E_LISTEN', `dns.listen ${formatHostPort(hp)}: cannot bind udp: ${bindProblem(bindErr)}`, { cause: bindErr });
          }
          serveUdp(udp);
          udpSockets.push(udp);
        }
      } else {
        serveUdp(side.socket);
        udpSockets.push(side.socket);
        port = side.socket.address().port;
      }
      tcp.on('connection', serveTcp);
      tcp.on('drop', () => {
        counters.tcpRejected++;
        warn(`dns: tcp connection refused: ${state.config.dns.tcpMaxConnections} open (dns.tcpMaxConnections)`);
      });
      tcp.on('error', (err) => warn(`dns: tcp: ${errorMessage(err)}`));
      endpoints.push({ transport: 'udp', host: hp.host, port }, { transport: 'tcp', host: hp.host, port });
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  for (const tcp of tcpServers) tcp.maxConnections = state.config.dns.tcpMaxConnections;
  if (endpoints.length > 0) logger.info(`dns: serving on ${[...new Set(endpoints.map((e) => formatHostPort(e)))].join(', ')} (udp+tcp)`);
  if (nativeEndpoints.length > 0) {
    const passing = debug ? 'log.level is debug' : 'a test clock is injected';
    logger.info(`dns: udp ${nativeEndpoints.join(', ')} on the UDP fast path (a thread per socket answers courier queries, ` +
      `${fastAnswers() ? 'the rest goes to node' : `every query goes to node while ${passing}`})`);
  }
  if (udpSockets.length > 0) {
    const dgramEndpoints = endpoints.filter((e) => e.transport === 'udp' && !nativeEndpoints.includes(formatHostPort(e)));
    logger.info(`dns: udp ${dgramEndpoints.map(formatHostPort).join(', ')} on node:dgram${nativeProblem ? ` (UDP fast path ${nativeProblem})` : ''}`);
  }

  function closeAll(): Promise<void> {
    closing ??= closeNow();
    return closing;
  }

  async function closeNow(): Promise<void> {
    closed = true;
    native?.close();
    state.forwarder.close();
    for (const f of retired) f.close();
    for (const c of connections) c.destroy();
    await Promise.all([
      ...udpSockets.map((s) => new Promise<void>((resolve) => { try { s.close(() => resolve()); } catch { resolve(); } })),
      ...tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
    ]);
  }

  return {
    endpoints,
    update({ config, snapshot }) {
      if (closed) return;  // e.g. a snapshot published while the daemon stops: nothing serves any more
      const listenChanged = JSON.stringify(config.dns.listen) !== JSON.stringify(state.config.dns.listen);
      if (listenChanged && !opts.listen) logger.warn(`dns: dns.listen changes take effect on restart (still serving on ${JSON.stringify(boundListen.map(formatHostPort))})`);
      debug = logger.isDebug();
      try {
        state = makeState(config, snapshot, state);
      } catch (err) {
        // called from the controller's publish step: never let it fail there; keep serving the old state
        logger.error(`dns: cannot adopt the new snapshot (${errorMessage(err)}); still serving the previous one`);
      }
      for (const tcp of tcpServers) tcp.maxConnections = config.dns.tcpMaxConnections;
    },
    stats() {
      pruneRetired();
      let inFlight = state.forwarder.inFlight;
      let overflows = overflowsRetired + state.forwarder.overflows;
      let clientOverflows = clientOverflowsRetired + state.forwarder.clientOverflows;
      for (const f of retired) {
        inFlight += f.inFlight;
        overflows += f.overflows;
        clientOverflows += f.clientOverflows;
      }
      const out: DnsStats = {
        ...counters, outcomes: { ...counters.outcomes },
        forwardsInFlight: inFlight, forwardOverflows: overflows, forwardClientOverflows: clientOverflows,
        tcpConnections: connections.size, rateLimitClients: state.buckets?.size ?? 0,
        fastPath: 0, handoffDropped: 0,
      };
      if (native !== undefined) {
        const n = native.stats();
        // datagrams handed over count once JS has taken them in (as node:dgram's are counted)
        out.queries += n.queries - n.handedToJs + nativeSeen;
        out.rateLimited += n.rateLimited;
        out.outcomes.courier += n.courier;
        out.outcomes.nodata += n.nodata;
        out.outcomes.nxdomain += n.nxdomain;
        out.fastPath = n.courier + n.nodata + n.nxdomain;
        out.handoffDropped = n.handoffDropped;
      }
      return out;
    },
    close: closeAll,
  };
}

/** The VIP in a courier A reply we built (its last 4 bytes before any OPT), for the debug log. */
function vipOf(reply: Buffer): string {
  const ar = reply.readUInt16BE(10);
  const end = reply.length - (ar > 0 ? 11 : 0);
  return reply.readUInt16BE(6) === 1 ? [...reply.subarray(end - 4, end)].join('.') : '';
}

/** Why a bind failed, in words an operator can act on. */
function bindProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE': return 'address already in use (another DNS server on this port, e.g. dnsmasq or systemd-resolved?)';
    case 'EACCES': case 'EPERM': return 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)';
    case 'EADDRNOTAVAIL': return 'no such address on this host';
    default: return errorMessage(err);
  }
}

function bindUdp(hp: HostPort): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({
      type: hp.family === 6 ? 'udp6' : 'udp4',
      recvBufferSize: UDP_BUFFER_BYTES,
      sendBufferSize: UDP_BUFFER_BYTES,
      // replies go to the literal address a query came from: no resolver lookup per send
      lookup: (address, _options, callback) => callback(null, address, hp.family),
    });
    socket.once('error', reject);
    socket.bind({ port: hp.port, address: hp.host, exclusive: true }, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

function listenTcp(hp: HostPort, port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    server.once('error', reject);
    server.listen({ port, host: hp.host, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

type UdpSide = { readonly kind: 'native'; readonly index: number; readonly port: number } | { readonly kind: 'dgram'; readonly socket: dgram.Socket };

/** A UDP socket: native when the fast path is open and the host is a literal it can bind, else node:dgram. */
async function bindUdpSide(hp: HostPort, native: FastPath | undefined): Promise<UdpSide> {
  if (native !== undefined) {
    try {
      return { kind: 'native', ...native.bind(hp) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'E_NATIVE_ADDR') throw err;
    }
  }
  return { kind: 'dgram', socket: await bindUdp(hp) };
}

/** UDP and TCP on the same port; with port 0, the port UDP got (retried if TCP finds it taken). */
async function bindPair(hp: HostPort, native: FastPath | undefined): Promise<{ udp: UdpSide; tcp: net.Server }> {
  for (let attempt = 0; ; attempt++) {
    let udp: UdpSide;
    try {
      udp = await bindUdpSide(hp, native);
    } catch (err) {
      throw new ApnsProxyError('E_LISTEN', `dns.listen ${formatHostPort(hp)}: cannot bind udp: ${bindProblem(err)}`, { cause: err });
    }
    const port = udp.kind === 'native' ? udp.port : udp.socket.address().port;
    try {
      return { udp, tcp: await listenTcp(hp, port) };
    } catch (err) {
      if (udp.kind === 'native') native!.closeSocket(udp.index);
      else udp.socket.close();
      if (hp.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 20) continue;
      throw new ApnsProxyError('E_LISTEN', `dns.listen ${formatHostPort(hp)}: cannot listen on tcp: ${bindProblem(err)}`, { cause: err });
    }
  }
}

/** An errno number (from the native send) by its name, for a log line. */
function errnoName(err: number): string {
  return Object.entries(osConstants.errno).find(([, v]) => v === err)?.[0] ?? `errno ${err}`;
}
