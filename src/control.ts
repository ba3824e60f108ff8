// Local control socket: the table has one writer, so `apns-proxy refresh` asks a running daemon.
// Protocol: one JSON request line, one JSON reply line, over a unix socket in stateDir.
import { createConnection, createServer, type Server } from 'node:net';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ApnsProxyError, errorMessage } from './errors.js';

export const CONTROL_SOCKET = 'control.sock';

export function controlPath(stateDir: string): string {
  return join(stateDir, CONTROL_SOCKET);
}

export type ControlHandler = (cmd: string) => Promise<unknown>;

/** Serves control requests; a stale socket file from a crashed daemon is replaced. */
export async function serveControl(path: string, handler: ControlHandler): Promise<Server> {
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 4096) return void sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      let cmd = '';
      try {
        cmd = String((JSON.parse(buf.slice(0, nl)) as { cmd?: unknown }).cmd);
      } catch {
        return void sock.end(`${JSON.stringify({ error: 'bad request' })}\n`);
      }
      handler(cmd).then(
        (result) => sock.end(`${JSON.stringify({ result })}\n`),
        (err: unknown) => sock.end(`${JSON.stringify({ error: errorMessage(err) })}\n`),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  server.on('error', () => undefined);
  return server;
}

/** Sends one command; resolves undefined when no daemon is listening (so the caller acts itself). */
export function requestControl(path: string, cmd: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ApnsProxyError('E_CONTROL', `daemon at ${path} did not answer "${cmd}" within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd })}\n`));
    sock.on('data', (chunk: string) => { buf += chunk; });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
      else reject(new ApnsProxyError('E_CONTROL', `cannot reach daemon at ${path}: ${err.message}`));
    });
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        const reply = JSON.parse(buf) as { result?: unknown; error?: string };
        if (reply.error !== undefined) reject(new ApnsProxyError('E_CONTROL', `daemon: ${reply.error}`));
        else resolve(reply.result);
      } catch {
        reject(new ApnsProxyError('E_CONTROL', `daemon at ${path} sent an unreadable reply`));
      }
    });
  });
}
