import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CONTROL_SOCKET_MODE, acquireLock, requestControl, serveControl } from '../../src/ops/control.js';

async function tempDir(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'apx-control-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('the lock admits one run per stateDir; a lock left by a dead process is taken over', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'run.lock');
  const release = await acquireLock(path);
  const err = await t.throwsAsync(acquireLock(path));
  t.is((err as { code?: string }).code, 'E_CONTROL');
  t.regex(err!.message, new RegExp(`another apns-proxy run is already active \\(pid ${process.pid} holds`));
  await release();
  const again = await acquireLock(path);
  await again();
  await writeFile(path, '2147483646\n');  // no such pid: a crashed daemon's lock
  const taken = await acquireLock(path);
  await taken();
});

test('two runs starting at once: exactly one gets the lock', async (t) => {
  const dir = await tempDir(t);
  const results = await Promise.allSettled(Array.from({ length: 8 }, () => acquireLock(join(dir, 'run.lock'))));
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test('the control socket is 0600 whatever the umask', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'control.sock');
  const old = process.umask(0);
  try {
    const server = await serveControl(path, async (cmd) => (cmd === 'ping' ? 'pong' : undefined));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    t.is((await stat(path)).mode & 0o777, CONTROL_SOCKET_MODE);
    t.is(await requestControl(path, 'ping', 2000), 'pong');
  } finally {
    process.umask(old);
  }
});
