// The benchmark lab: three network namespaces wired as in DESIGN §5, named apxb<pid>-<hex>-{c,r,u}.
//
//   client   c0  192.0.2.2/24 (+ 192.0.2.10-29 as extra device source addresses), default via 192.0.2.1
//   router   r0  192.0.2.1/24; r1 203.0.113.1/24; lo 198.18.101.1/32 (the HAProxy "VIP"); ip_forward=1
//   upstream u0  203.0.113.53 (simulated Apple DNS), 203.0.113.10-49 (couriers), default via 203.0.113.1
//
// Only the addresses of DESIGN §5 (and 198.18.0.0/15 for VIPs) are used; nothing leaves the
// namespaces. The lab is deleted on destroy(), on exit, on Ctrl-C/SIGTERM, and namespaces left
// by an earlier run that was SIGKILLed are swept at the next start.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bg, type RunOptions, type RunResult, killAllSync, run } from './proc.js';

export const ADDR = {
  client: '192.0.2.2',
  router: '192.0.2.1',
  routerUp: '203.0.113.1',
  dns: '203.0.113.53',
  haproxyVip: '198.18.101.1',
  vipPrefix: '198.18.100.0/24',
  vip: (n: number) => `198.18.100.${n}`,
  courier: (i: number) => `203.0.113.${10 + (i % 40)}`,   // the pool 203.0.113.10-49
  device: (i: number) => `192.0.2.${10 + i}`,             // extra client source addresses, i in 0..19
} as const;
export const DEVICE_SOURCES = 20;

export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  throw new Error('bench: cannot find the repository root');
}

export interface Scenario {
  live?: number;
  addresses?: Record<string, string[]>;
  perCourier?: Record<string, string>;
  ttl?: number;
}

export interface Lab {
  readonly base: string;
  readonly ns: { readonly c: string; readonly r: string; readonly u: string };
  readonly dir: string;
  readonly root: string;
  /** a compiled helper from bench/out/bin */
  bin(name: string): string;
  exec(ns: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  bg(ns: string, name: string, argv: readonly string[], opts?: { stdin?: boolean }): Bg;
  readonly fakeApple: Bg;
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

const NS_RE = /^apxb(\d+)-([0-9a-f]{4})-[cru]$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function nsDeleteSync(ns: string): void {
  for (let i = 0; i < 10; i++) {
    const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
    const pids = (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0) break;
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    spawnSync('sleep', ['0.1']);
  }
  spawnSync('ip', ['netns', 'del', ns], { timeout: 10000, stdio: 'ignore' });
}

/** Namespaces of earlier benchmark runs whose process is gone (e.g. SIGKILLed). */
export function sweepStale(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10000 });
  const removed: string[] = [];
  for (const line of (r.stdout ?? '').split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = NS_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    nsDeleteSync(name);
    removed.push(name);
  }
  for (const entry of readdirSync(tmpdir())) {
    const m = /^apxb(\d+)-/.exec(entry);
    if (m && !pidAlive(Number(m[1]))) rmSync(path.join(tmpdir(), entry), { recursive: true, force: true });
  }
  return removed;
}

let live: { namespaces: string[]; dir: string; keep: boolean } | undefined;

function cleanupSync(): void {
  killAllSync();
  if (!live) return;
  for (const ns of live.namespaces) nsDeleteSync(ns);
  if (!live.keep) rmSync(live.dir, { recursive: true, force: true });
  live = undefined;
}

let handlers = false;
function installHandlers(): void {
  if (handlers) return;
  handlers = true;
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}: cleaning up namespaces and processes\n`);
      cleanupSync();
      process.exit(130);
    });
  }
}

const batch = (lines: string[]) => lines.join('\n') + '\n';

export async function createLab(opts: { keepDir?: boolean } = {}): Promise<Lab> {
  sweepStale();
  installHandlers();
  const root = repoRoot();
  const base = `apxb${process.pid}-${randomBytes(2).toString('hex')}`;
  const ns = { c: `${base}-c`, r: `${base}-r`, u: `${base}-u` };
  const dir = mkdtempSync(path.join(tmpdir(), `${base}-`));
  mkdirSync(path.join(dir, 'logs'));
  live = { namespaces: [ns.c, ns.r, ns.u], dir, keep: opts.keepDir ?? false };
  const logSeq = new Map<string, number>();

  const inNs = (n: string, argv: readonly string[]): string[] => {
    const [cmd = '', ...rest] = argv;
    const abs = [sysTool(cmd), ...rest];
    return n === '' ? abs : [sysTool('ip'), 'netns', 'exec', n, ...abs];
  };
  const exec = (n: string, argv: readonly string[], o?: RunOptions) => run(inNs(n, argv), o);
  const bg = (n: string, name: string, argv: readonly string[], o?: { stdin?: boolean }): Bg => {
    const k = (logSeq.get(name) ?? 0) + 1;
    logSeq.set(name, k);
    return new Bg(name, inNs(n, argv), path.join(dir, 'logs', `${name}-${k}.log`), o);
  };

  try {
    for (const n of [ns.c, ns.r, ns.u]) await run(['ip', 'netns', 'add', n]);
    await run(['ip', '-n', ns.r, 'link', 'add', 'r0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', ns.c]);
    await run(['ip', '-n', ns.r, 'link', 'add', 'r1', 'type', 'veth', 'peer', 'name', 'u0', 'netns', ns.u]);
    const client = ['link set lo up', 'link set c0 up', `addr add ${ADDR.client}/24 dev c0`];
    for (let i = 0; i < DEVICE_SOURCES; i++) client.push(`addr add ${ADDR.device(i)}/24 dev c0`);
    client.push(`route add default via ${ADDR.router}`);
    await run(['ip', '-n', ns.c, '-batch', '-'], { input: batch(client) });
    await run(['ip', '-n', ns.r, '-batch', '-'], { input: batch([
      'link set lo up', 'link set r0 up', 'link set r1 up',
      `addr add ${ADDR.router}/24 dev r0`, `addr add ${ADDR.routerUp}/24 dev r1`, `addr add ${ADDR.haproxyVip}/32 dev lo`,
    ]) });
    const up = ['link set lo up', 'link set u0 up', `addr add ${ADDR.dns}/24 dev u0`];
    for (let i = 0; i < 40; i++) up.push(`addr add ${ADDR.courier(i)}/24 dev u0`);
    up.push(`route add default via ${ADDR.routerUp}`);
    await run(['ip', '-n', ns.u, '-batch', '-'], { input: batch(up) });
    // Load-generator side: a wide port range and TIME_WAIT reuse, as any load generator is set up.
    await exec(ns.c, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']);
    await exec(ns.r, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.ip_local_port_range=1024 65535', 'net.ipv4.tcp_tw_reuse=1']);
    await exec(ns.u, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);

    const scenarioFile = path.join(dir, 'scenario.json');
    writeFileSync(scenarioFile, '{}\n');
    const fakeApple = bg(ns.u, 'fake-apple', [process.execPath, path.join(root, 'dist/test/fixtures/fake-apple.js'), '--scenario', scenarioFile]);
    await fakeApple.waitFor(/^ready 1$/, 15000);

    const setScenario = async (s: Scenario): Promise<void> => {
      const from = fakeApple.mark();
      writeFileSync(`${scenarioFile}.tmp`, JSON.stringify(s));
      renameSync(`${scenarioFile}.tmp`, scenarioFile);
      fakeApple.kill('SIGHUP');
      const line = await fakeApple.waitFor(/^(ready \d+|reload-error .*)$/, 10000, from);
      if (line.startsWith('reload-error')) throw new Error(`fake-apple rejected the scenario: ${line}`);
    };

    return {
      base, ns, dir, root,
      bin: (name) => {
        const p = path.join(root, 'bench/out/bin', name);
        if (!existsSync(p)) throw new Error(`${p} is missing: run bench/run (it compiles bench/c/*.c)`);
        return p;
      },
      exec, bg, fakeApple, setScenario,
      destroy: async () => { cleanupSync(); },
    };
  } catch (err) {
    cleanupSync();
    throw err;
  }
}
