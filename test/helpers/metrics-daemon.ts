// A daemon in the lab's router namespace with DNS on 192.0.2.1 and metrics on 127.0.0.1:9523,
// refreshing only at start (the metrics and status-page tests read it).
import { type Lab, type LabProcess, distPath, nodeBin, writeLabConfig } from '../../lab/lab.js';

export async function startMetricsDaemon(lab: Lab): Promise<{ config: string; daemon: LabProcess }> {
  const config = await writeLabConfig(lab, {
    resolver: { timeoutMs: 300 }, dns: { listen: ['192.0.2.1:53'], allowClients: ['192.0.2.0/24'] },
    metrics: { listen: ['127.0.0.1:9523'] }, refresh: { schedule: '0 0 1 1 *' },
  });
  const daemon = lab.spawn(lab.ns.router, nodeBin(), [distPath('src/cli.js'), 'run', '--config', config]);
  await daemon.waitForLine(/refresh: 50 fresh, 0 stale, 10 absent/, 15_000);
  return { config, daemon };
}
