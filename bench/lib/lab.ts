// The benchmark lab: the namespace lab of lab/lab.ts (the one the tests and `npm run lab` use),
// named apxb<pid>-<hex>-{c,r,u}, with what the benchmarks add:
//
//   client   192.0.2.10-29 on c0 as extra device source addresses
//   router   lo 198.18.101.1/32 (the HAProxy "VIP")
//   all      load-generator sysctls (wide local port range, TIME_WAIT reuse)
//   upstream the simulated Apple DNS logs to a file (a query per line, never read by this process)
//
// Loads run as Bg processes (lib/proc.ts: output to files), compiled helpers come from
// bench/out/bin. Only documentation and benchmark addresses are used (192.0.2.0/24, 203.0.113.0/24,
// 198.51.100.0/24, 198.18.0.0/15 for VIPs); nothing leaves the namespaces. The lab is deleted on
// destroy(), on exit, on Ctrl-C/SIGTERM, and namespaces left by an earlier run that was SIGKILLed
// are swept at the next start (lab/proc.ts).
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { type LabProcess, type Scenario, createNetLab, deviceAddress, repoRoot, startFakeApple } from '../../lab/lab.js';
import { Bg, type RunOptions, type RunResult, killAllSync, run } from './proc.js';

export type { Scenario } from '../../lab/lab.js';
export { repoRoot } from '../../lab/lab.js';

export const DEVICE_SOURCES = 20;
export const ADDR = {
  client: '192.0.2.2',
  router: '192.0.2.1',
  routerUp: '203.0.113.1',
  dns: '203.0.113.53',
  haproxyVip: '198.18.101.1',
  vipPrefix: '198.18.100.0/24',
  vip: (n: number) => `198.18.100.${n}`,
  courier: (i: number) => `203.0.113.${10 + (i % 40)}`,   // the pool 203.0.113.10-49
  device: (i: number) => deviceAddress(i),                // extra client source addresses, i in 0..19
} as const;

export interface Lab {
  readonly base: string;
  readonly ns: { readonly c: string; readonly r: string; readonly u: string };
  readonly dir: string;
  readonly root: string;
  /** a compiled helper from bench/out/bin */
  bin(name: string): string;
  exec(ns: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  bg(ns: string, name: string, argv: readonly string[], opts?: { stdin?: boolean }): Bg;
  readonly fakeApple: LabProcess;
  setScenario(s: Scenario): Promise<void>;
  destroy(): Promise<void>;
}

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * A bare tool name resolved in the system directories: under `npm run`, node_modules/.bin comes
 * first in PATH and holds an unrelated `nft` (@vercel/nft).
 */
export function sysTool(cmd: string): string {
  if (cmd.includes('/')) return cmd;
  for (const d of SYSTEM_DIRS) if (existsSync(path.join(d, cmd))) return path.join(d, cmd);
  return cmd;
}

let handlers = false;
function installHandlers(): void {
  if (handlers) return;
  handlers = true;
  // the load processes (Bg); the lab library deletes the namespaces (and what still runs in them)
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: cleaning up namespaces and processes\n`);
      killAllSync();
      process.exit(130);  // the lab library's 'exit' handler deletes the namespaces
    });
  }
}

export async function createLab(opts: { keepDir?: boolean } = {}): Promise<Lab> {
  installHandlers();
  const root = repoRoot();
  const net = await createNetLab({
    tag: 'b',
    deviceSources: DEVICE_SOURCES,
    routerLoopback: [`${ADDR.haproxyVip}/32`],
    loadGenerator: true,
    keepDir: opts.keepDir ?? false,
  });
  const ns = { c: net.ns.client, r: net.ns.router, u: net.ns.upstream };
  const destroy = async (): Promise<void> => {
    killAllSync();
    await net.destroy();
  };
  try {
    mkdirSync(path.join(net.dir, 'logs'));
    const logSeq = new Map<string, number>();
    const inNs = (n: string, argv: readonly string[]): string[] => {
      const [cmd = '', ...rest] = argv;
      const abs = [sysTool(cmd), ...rest];
      return n === '' ? abs : [sysTool('ip'), 'netns', 'exec', n, ...abs];
    };
    const logFile = (name: string): string => {
      const k = (logSeq.get(name) ?? 0) + 1;
      logSeq.set(name, k);
      return path.join(net.dir, 'logs', `${name}-${k}.log`);
    };
    const apple = await startFakeApple(net, {}, { logFile: logFile('fake-apple') });
    return {
      base: net.base, ns, dir: net.dir, root,
      bin: (name) => {
        const p = path.join(root, 'bench/out/bin', name);
        if (!existsSync(p)) throw new Error(`${p} is missing: run bench/run (it compiles bench/c/*.c)`);
        return p;
      },
      exec: (n, argv, o) => run(inNs(n, argv), o),
      bg: (n, name, argv, o) => new Bg(name, inNs(n, argv), logFile(name), o),
      fakeApple: apple.process,
      setScenario: apple.setScenario,
      destroy,
    };
  } catch (err) {
    await destroy();
    throw err;
  }
}
