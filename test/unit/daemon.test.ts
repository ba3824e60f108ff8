// startDaemon wired from the fakes: no kernel, no sockets but the control socket in a temp dir.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startDaemon, type DaemonDeps } from '../../src/ops/daemon.js';
import { memoryLogger } from '../helpers/memory-logger.js';
import { FakeNft } from '../helpers/fake-nft.js';
import { createStateStore } from '../../src/sync/state.js';
import { FakeClock, ScriptedResolver, ok, testConfig } from '../helpers/fixtures.js';

async function deps(t: { teardown(fn: () => Promise<void>): void }, over: Partial<DaemonDeps> = {}): Promise<DaemonDeps> {
  const dir = await mkdtemp(join(tmpdir(), 'apx-daemon-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const config = testConfig({
    couriers: { first: 1, last: 3 }, stateDir: dir,
    dns: { listen: [] }, metrics: { listen: [] }, fallback: { enabled: false },
  });
  const resolver = new ScriptedResolver();
  resolver.answers.set(1, ok(['203.0.113.10']));
  return {
    config, nft: new FakeNft(), makeResolver: () => resolver, store: createStateStore(dir),
    clock: new FakeClock().now, logger: memoryLogger(), schedule: () => ({ stop: () => undefined }),
    loadConfig: async () => config, loadNative: () => { throw new Error('not needed with the fallback off'); },
    ...over,
  };
}

test('/metrics works with the fallback off (its source is absent, not a crash)', async (t) => {
  const daemon = await startDaemon(await deps(t));
  t.teardown(() => daemon.stop());
  await daemon.controller.idle();
  const text = await daemon.metrics.registry.metrics();
  t.regex(text, /^apns_proxy_fallback_connections_total 0$/m);
  t.regex(text, /^apns_proxy_couriers\{state="fresh"\} 1$/m);
});

test('one daemon per stateDir: a second start fails before touching the kernel; stop releases the lock', async (t) => {
  const d = await deps(t);
  const daemon = await startDaemon(d);
  const nft2 = new FakeNft();
  const err = await t.throwsAsync(startDaemon({ ...d, nft: nft2 }));
  t.is((err as { code?: string }).code, 'E_CONTROL');
  t.is(nft2.scripts.length, 0);
  t.is((await stat(join(d.config.stateDir, 'control.sock'))).mode & 0o777, 0o600);
  await daemon.stop();
  const again = await startDaemon(d);
  await again.stop();
});
