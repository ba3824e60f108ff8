// DNS over TCP: listeners on every listen address, the connection limits judged at accept (ACL,
// dns.tcpMaxConnections, dns.tcpMaxPerClient), framing, pipelined queries, half-close, and the
// idle and frame deadlines; every query through the pipeline.
import { once } from 'node:events';
import net from 'node:net';
import { errorMessage } from '../../core/errors.js';
import type { HostPort } from '../../core/net.js';
import { FrameReader, frameMessage } from '../client/exchange.js';
import type { DnsLog } from '../log.js';
import type { DnsState } from '../state.js';
import type { Binding, DnsTransport, Handler } from './contract.js';
import { dispatch } from './contract.js';

/** A TCP client that does not read its answers is cut off once this much is queued for it. */
const TCP_MAX_QUEUED_BYTES = 256 * 1024;

export function createTcpTransport(handle: Handler, state: () => DnsState, log: DnsLog): DnsTransport {
  const servers = new Set<net.Server>();
  const connections = new Set<net.Socket>();
  const perClient = new Map<string, number>();  // open connections per client address; no entry at 0
  const counts = { tcpRejected: 0, tcpOutsiders: 0, tcpPerClientRejected: 0, tcpFrameTimeouts: 0 };

  function serve(socket: net.Socket): void {
    socket.on('error', () => undefined);  // resets by clients are theirs to have
    const address = socket.remoteAddress;
    if (address === undefined) return void socket.destroy();  // already gone
    const s = state();
    const { dns } = s.config;
    // judged at accept: an outsider's queries would only be REFUSED, so it must not hold a slot
    if (!s.acl.allows(address)) {
      counts.tcpOutsiders++;
      if (s.debug) log.debug(() => `dns: ${address} tcp: connection closed at accept (not in dns.allowClients)`);
      return void socket.destroy();
    }
    const open = perClient.get(address) ?? 0;
    if (open >= dns.tcpMaxPerClient) {
      counts.tcpPerClientRejected++;
      log.warn(`dns: tcp connection from ${address} refused: ${open} open (dns.tcpMaxPerClient)`);
      return void socket.destroy();
    }
    perClient.set(address, open + 1);
    connections.add(socket);
    socket.setNoDelay(true);
    // idle counts from the last complete frame or answer: stray bytes do not keep a connection
    const idle = setTimeout(() => socket.destroy(), dns.tcpIdleTimeoutMs);
    // a frame that has started must be complete by this deadline (no trickling a slot away)
    let frameDeadline: NodeJS.Timeout | undefined;
    const frameTimedOut = (): void => {
      counts.tcpFrameTimeouts++;
      if (state().debug) log.debug(() => `dns: ${address} tcp: connection closed: a query frame not complete within ${dns.tcpFrameTimeoutMs} ms (dns.tcpFrameTimeoutMs)`);
      socket.destroy();
    };
    const frames = new FrameReader();
    let pending = 0;
    let ended = false;
    const writer = {
      client: address,
      transport: 'tcp' as const,
      reply(bytes: Buffer): void {
        if (socket.destroyed || !socket.writable) return;
        if (socket.writableLength > TCP_MAX_QUEUED_BYTES) return void socket.destroy();
        socket.write(frameMessage(bytes));
        idle.refresh();
      },
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
        const forwarded = dispatch(handle, msg, writer);
        if (forwarded === undefined) continue;
        pending++;
        void forwarded.then(() => {
          pending--;
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
      const left = (perClient.get(address) ?? 1) - 1;
      if (left > 0) perClient.set(address, left);
      else perClient.delete(address);
    });
  }

  return {
    async bind(hp: HostPort): Promise<Binding> {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
      const listening = once(server, 'listening');  // rejects with the listen error ('error')
      server.listen({ port: hp.port, host: hp.host, exclusive: true });
      await listening;
      servers.add(server);
      server.maxConnections = state().config.dns.tcpMaxConnections;
      server.on('connection', serve);
      server.on('drop', () => {
        counts.tcpRejected++;
        log.warn(`dns: tcp connection refused: ${state().config.dns.tcpMaxConnections} open (dns.tcpMaxConnections)`);
      });
      server.on('error', (err) => log.warn(`dns: tcp: ${errorMessage(err)}`));
      return {
        port: (server.address() as net.AddressInfo).port,
        release: () => {
          servers.delete(server);
          server.close();
        },
      };
    },
    update(s) {
      for (const server of servers) server.maxConnections = s.config.dns.tcpMaxConnections;
    },
    stats(into) {
      Object.assign(into, counts);
      into.tcpConnections = connections.size;
    },
    async close() {
      for (const c of connections) c.destroy();
      await Promise.all([...servers].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
