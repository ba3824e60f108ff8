// DNS over UDP with node:dgram: one socket per listen address, each datagram through the pipeline
// and its reply sent from the same socket to the sender.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { errorMessage } from '../../core/errors.js';
import type { HostPort } from '../../core/net.js';
import type { DnsLog } from '../log.js';
import type { Binding, DnsTransport, Handler } from './contract.js';
import { dispatch } from './contract.js';

const UDP_BUFFER_BYTES = 4 * 1024 * 1024;

export function createUdpTransport(handle: Handler, log: DnsLog): DnsTransport {
  const sockets = new Set<dgram.Socket>();
  let closed = false;

  function serve(socket: dgram.Socket): void {
    socket.on('message', (msg, rinfo) => {
      void dispatch(handle, msg, {
        client: rinfo.address,
        transport: 'udp',
        reply: (bytes) => { if (!closed) socket.send(bytes, rinfo.port, rinfo.address); },
      });
    });
    // e.g. a reply the kernel would not send (EPERM from a firewall): log, keep serving
    socket.on('error', (err) => log.warn(`dns: udp: ${errorMessage(err)}`));
  }

  return {
    async bind(hp: HostPort): Promise<Binding> {
      const socket = await bindUdp(hp);
      sockets.add(socket);
      serve(socket);
      return {
        port: socket.address().port,
        release: () => {
          sockets.delete(socket);
          socket.close();
        },
      };
    },
    stats: () => undefined,  // the pipeline counts every datagram it is given
    async close() {
      closed = true;
      await Promise.all([...sockets].map((s) => new Promise<void>((resolve) => {
        try {
          s.close(() => resolve());
        } catch {
          resolve();  // already closed
        }
      })));
    },
  };
}

/** A bound node:dgram socket (exclusive: another process cannot share the port). */
export async function bindUdp(hp: HostPort): Promise<dgram.Socket> {
  const socket = dgram.createSocket({
    type: hp.family === 6 ? 'udp6' : 'udp4',
    recvBufferSize: UDP_BUFFER_BYTES,
    sendBufferSize: UDP_BUFFER_BYTES,
    // replies go to the literal address a query came from: no resolver lookup per send
    lookup: (address, _options, callback) => callback(null, address, hp.family),
  });
  // subscribed before bind(): with a literal address 'listening' can be emitted during the call
  const listening = once(socket, 'listening');  // rejects with the bind error ('error')
  socket.bind({ port: hp.port, address: hp.host, exclusive: true });
  await listening;
  return socket;
}
