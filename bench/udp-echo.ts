// Baseline for bench/dns, not a DNS server: the cheapest possible Node UDP responder (copies each
// datagram back with QR set). Its qps is the ceiling of any server built on node:dgram on this box.
//   node dist/bench/udp-echo.js ADDRESS PORT
import dgram from 'node:dgram';

const [address, port] = process.argv.slice(2);
if (!address || !port) {
  process.stderr.write('usage: udp-echo ADDRESS PORT\n');
  process.exit(2);
}
const socket = dgram.createSocket({ type: 'udp4', lookup: (a, _o, cb) => cb(null, a, 4) });
socket.on('message', (msg, rinfo) => {
  const out = Buffer.allocUnsafe(msg.length);
  out.set(msg);
  out[2] = msg[2]! | 0x80;
  socket.send(out, rinfo.port, rinfo.address);
});
socket.bind(Number(port), address);
process.on('SIGTERM', () => socket.close());
