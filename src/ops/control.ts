// Local control socket: the table has one writer, so `apns-proxy refresh` asks a running daemon.
// Protocol: one JSON request line, one JSON reply line, over a unix socket in stateDir.
import { once } from 'node:events';
import { createConnection, createServer, type Server } from 'node:net';
import { chmod, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ApnsProxyError, errorMessage } from '../core/errors.js';

export const CONTROL_SOCKET = 'control.sock';
export const LOCK_FILE = 'run.lock';
/** Only root and the daemon's own user may ask it to refresh or reload. */
export const CONTROL_SOCKET_MODE = 0o600;

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
  // The socket is created with the process umask: narrow it for the bind, then set the mode explicitly.
  const umask = process.umask(0o177);
  try {
    const listening = once(server, 'listening');  // rejects with the listen error ('error')
    server.listen(path);
    await listening;
  } finally {
    process.umask(umask);
  }
  await chmod(path, CONTROL_SOCKET_MODE);
  server.on('error', () => undefined);
  return server;
}

/**
 * One `run` per stateDir: the lock file is created exclusively (O_EXCL) and holds the owner's pid.
 * A lock whose pid is gone (a crash, SIGKILL) is taken over. Returns the release function.
 */
export async function acquireLock(path: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o644);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return async () => {
        const owner = await readFile(path, 'utf8').catch(() => '');
        if (owner.trim() === String(process.pid)) await unlink(path).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
      throw new ApnsProxyError('E_CONTROL', `another apns-proxy run is already active (pid ${pid} holds ${path})`);
    }
    await unlink(path).catch(() => undefined);  // stale: its owner is gone
  }
  throw new ApnsProxyError('E_CONTROL', `cannot take ${path}: another apns-proxy run is starting`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
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
