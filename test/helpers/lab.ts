// The integration-test lab: three network namespaces wired as in DESIGN §5.
//
//   <base>-c  client    c0 192.0.2.2/24, default via 192.0.2.1
//   <base>-r  router    r0 192.0.2.1/24 (client side); r1 203.0.113.1/24 + 198.51.100.1/24 (upstream side);
//                       net.ipv4.ip_forward=1; no NAT, no firewall (the program under test adds its own table)
//   <base>-u  upstream  u0 203.0.113.53/24 (fake Apple DNS), 203.0.113.10–49/24 (couriers),
//                       198.51.100.10/24 ("outside allowedUpstreamNets"), default via 203.0.113.1
//
// base = `apx<pid>-<4 hex>`; createLab() first removes namespaces (and temp dirs) of earlier runs
// whose pid is no longer alive. The lab never skips: without root / netns / nft it throws, so the
// integration tests FAIL (also, deliberately, when CI is set).
//
// Usage (ava, --serial):
//   let lab: Lab;
//   test.before(async () => { lab = await createLab(); });
//   test.after.always(async () => { await lab?.destroy(); });   // ALWAYS: runs even when tests fail
// As a last resort a synchronous process 'exit' handler (and SIGINT/SIGTERM/SIGHUP handlers while a
// lab is alive) kills the lab's processes and deletes its namespaces and dir.
import { spawn as spawnChild, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Scenario } from '../fixtures/fake-apple.js';
import { systemTool } from '../../src/core/tools.js';

const IP = systemTool('ip');
const NFT = systemTool('nft');

export type { Scenario, GlobalMode, CourierMode } from '../fixtures/fake-apple.js';
export { courierChain, courierAddresses, defaultCourierAddresses, regionFor } from '../fixtures/fake-apple.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** the exit code; -1 when killed (timeout or signal) */
  exitCode: number;
  timedOut: boolean;
}

export interface ExecOptions {
  input?: string;
  /** default 30000; the command is SIGKILLed after it */
  timeoutMs?: number;
  /** default true: a non-zero exit (or timeout) throws an Error carrying the output */
  reject?: boolean;
}

export interface LabProcess {
  readonly pid: number;
  /** stdout and stderr lines so far, interleaved as they arrived (without the newline) */
  readonly lines: string[];
  /** resolves with the first line at index >= fromIndex (default 0) matching re; rejects on timeout or exit */
  waitForLine(re: RegExp, timeoutMs: number, fromIndex?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
  /** exit code, null when killed by a signal; never rejects */
  exited: Promise<number | null>;
  /** stderr so far (the last 1 MB) */
  stderr(): string;
  /** write to the process's stdin */
  write(text: string): void;
  /** close the process's stdin */
  endInput(): void;
}

export interface Lab {
  readonly base: string;
  readonly ns: { client: string; router: string; upstream: string };
  /** per-lab temp dir (scenario file, configs, state dirs), removed on destroy */
  readonly dir: string;
  /** runs cmd inside ns (`ip netns exec`); ns '' runs it in the root namespace */
  exec(ns: string, cmd: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** a tracked long-running process inside ns ('' = root namespace); killed on destroy */
  spawn(ns: string, cmd: string, args: string[], opts?: { env?: Record<string, string> }): LabProcess;
  /** replaces the whole scenario: writes the file, SIGHUPs fake-apple, resolves on its `ready <gen>` */
  setScenario(s: Scenario): Promise<void>;
  /** accepted connections logged by courier-server so far */
  courierConnections(): { conn: string; peer: string }[];
  /** queries logged by fake-apple so far (q lower case, no trailing dot; asked = as sent) */
  appleQueries(): { q: string; type: string; transport: string; asked?: string; from?: string }[];
  /** runs probe.js in the client ns and returns its JSON (last stdout line) */
  probe(args: string[], timeoutMs?: number): Promise<any>;
  /** the fixture processes, for tests that need more (e.g. SIGUSR2 to the courier server) */
  readonly fakeApple: LabProcess;
  readonly courierServer: LabProcess;
  /** kills every process, deletes namespaces and dir; idempotent; never throws */
  destroy(): Promise<void>;
}

export interface LabOptions {
  scenario?: Scenario;
  courierPorts?: number[];
}

/** The node binary running this process (use it to start dist/src/cli.js in a namespace). */
export function nodeBin(): string {
  return process.execPath;
}

let rootCache: string | undefined;
/** The repository root (the directory holding package.json), found from this file's location. */
export function repoRoot(): string {
  if (rootCache) return rootCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(path.join(dir, 'package.json'))) return (rootCache = dir);
    dir = path.dirname(dir);
  }
  throw new Error('lab: cannot find the repository root (package.json) above ' + fileURLToPath(import.meta.url));
}

/** Absolute path of a compiled file, e.g. distPath('src/cli.js'). */
export function distPath(rel: string): string {
  return path.join(repoRoot(), 'dist', rel);
}

/** Absolute path of a compiled fixture, e.g. fixturePath('probe.js'). */
export function fixturePath(name: string): string {
  return distPath(path.join('test', 'fixtures', name));
}

// ---------------------------------------------------------------------------------------------
// last-resort cleanup

interface Doomed { namespaces: string[]; dir: string; children: Set<ChildProcess> }
const liveLabs = new Set<Doomed>();
let handlersInstalled = false;

function killNamespaceSync(ns: string): void {
  const r = spawnSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
  for (const pid of (r.stdout ?? '').split(/\s+/).filter(Boolean)) {
    try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
  }
  spawnSync(IP, ['netns', 'del', ns], { timeout: 5000, stdio: 'ignore' });
}

function cleanupSync(d: Doomed): void {
  for (const c of d.children) {
    try { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); } catch { /* gone */ }
  }
  for (const ns of d.namespaces) killNamespaceSync(ns);
  try { rmSync(d.dir, { recursive: true, force: true }); } catch { /* ignore */ }
}

function onSignal(signal: NodeJS.Signals): void {
  for (const d of liveLabs) cleanupSync(d);
  liveLabs.clear();
  uninstallHandlers();
  // keep the default behaviour (terminate) unless somebody else handles the signal
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

const signalHandlers: Partial<Record<NodeJS.Signals, () => void>> = {};
function exitHandler(): void {
  for (const d of liveLabs) cleanupSync(d);
  liveLabs.clear();
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', exitHandler);
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const h = (): void => onSignal(s);
    signalHandlers[s] = h;
    process.on(s, h);
  }
}

function uninstallHandlers(): void {
  for (const [s, h] of Object.entries(signalHandlers)) {
    if (h) process.off(s, h);
    delete signalHandlers[s as NodeJS.Signals];
  }
  // the 'exit' handler stays: it is harmless and cheap
  handlersInstalled = false;
  process.off('exit', exitHandler);
}

// ---------------------------------------------------------------------------------------------
// stale sweep

const NS_RE = /^apx(\d+)-([0-9a-f]{4})-[cru]$/;
const DIR_RE = /^apx(\d+)-([0-9a-f]{4})-/;

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a reused pid that is not node is not one of ours
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('node');
  } catch {
    return true;
  }
}

/** Namespaces named like a lab's whose owner pid is gone. Exported for tests. */
export async function sweepStaleLabs(): Promise<string[]> {
  const list = await execa(IP, ['netns', 'list'], { reject: false, timeout: 10000 });
  const removed: string[] = [];
  for (const line of list.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = NS_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    const pids = await execa(IP, ['netns', 'pids', name], { reject: false, timeout: 5000 });
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
    await execa(IP, ['netns', 'del', name], { reject: false, timeout: 10000 });
    removed.push(name);
  }
  try {
    for (const entry of readdirSync(tmpdir())) {
      const m = DIR_RE.exec(entry);
      if (m && !pidAlive(Number(m[1]))) rmSync(path.join(tmpdir(), entry), { recursive: true, force: true });
    }
  } catch { /* best effort */ }
  return removed;
}

// ---------------------------------------------------------------------------------------------
// processes

const STDERR_MAX = 1024 * 1024;

function wrapProcess(child: ChildProcess, what: string): LabProcess {
  const lines: string[] = [];
  let err = '';
  let exitCode: number | null | undefined;
  const waiters = new Set<() => void>();
  const notify = (): void => { for (const w of [...waiters]) w(); };

  // Both streams feed `lines`: fixtures print on stdout, daemons log on stderr, tests wait for either.
  const splitter = () => {
    let rest = '';
    return (d: string, final = false): void => {
      const parts = (rest + d).split('\n');
      rest = parts.pop()!;
      if (final && rest) parts.push(rest);  // a last line without a newline
      for (const l of parts) lines.push(l.replace(/\r$/, ''));
      if (parts.length) notify();
    };
  };
  const outLines = splitter();
  const errLines = splitter();
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => outLines(d));
  child.stdout?.on('end', () => outLines('', true));
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    err += d;
    if (err.length > STDERR_MAX) err = err.slice(-STDERR_MAX);
    errLines(d);
  });
  child.stdin?.on('error', () => undefined); // EPIPE when the process is gone

  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      err += `\n[lab] cannot start ${what}: ${e.message}\n`;
      exitCode = null;
      notify();
      resolve(null);
    });
    child.on('close', (code) => {
      exitCode = code;
      notify();
      resolve(code);
    });
  });

  const tail = (): string => `\n  last stdout: ${JSON.stringify(lines.slice(-5))}\n  stderr: ${err.slice(-2000)}`;

  return {
    get pid() { return child.pid ?? -1; },
    lines,
    exited,
    stderr: () => err,
    kill: (signal: NodeJS.Signals = 'SIGTERM') => {
      try { if (child.exitCode === null && child.signalCode === null) child.kill(signal); } catch { /* gone */ }
    },
    write: (text: string) => { child.stdin?.write(text); },
    endInput: () => { child.stdin?.end(); },
    waitForLine(re: RegExp, timeoutMs: number, fromIndex = 0): Promise<string> {
      return new Promise((resolve, reject) => {
        let i = fromIndex;
        const check = (): void => {
          for (; i < lines.length; i++) {
            const line = lines[i]!;
            if (re.test(line)) { done(); resolve(line); return; }
          }
          if (exitCode !== undefined) {
            done();
            reject(new Error(`${what} exited (${String(exitCode)}) before printing a line matching ${re}${tail()}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${what}: no line matching ${re} within ${timeoutMs} ms${tail()}`));
        }, timeoutMs);
        const done = (): void => { clearTimeout(timer); waiters.delete(check); };
        waiters.add(check);
        check();
      });
    },
  };
}

/** Bare tool names resolve to system paths: node_modules/.bin has an unrelated `nft` (see src/tools.ts). */
function nsArgv(ns: string, cmd: string, args: string[]): [string, string[]] {
  const bin = cmd.includes('/') ? cmd : systemTool(cmd);
  return ns === '' ? [bin, args] : [IP, ['netns', 'exec', ns, bin, ...args]];
}

// ---------------------------------------------------------------------------------------------
// the lab

async function run(cmd: string, args: string[], input?: string, timeoutMs = 15000): Promise<void> {
  const r = await execa(cmd, args, { reject: false, timeout: timeoutMs, ...(input !== undefined ? { input } : {}) });
  if (r.exitCode !== 0) {
    throw new Error(`lab: \`${cmd} ${args.join(' ')}\` failed (exit ${String(r.exitCode)}): ${r.stderr || r.stdout || r.message}`);
  }
}

function batch(lines: string[]): string {
  return lines.join('\n') + '\n';
}

async function preflight(): Promise<void> {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new Error(`lab: integration tests need root (they create network namespaces and nftables tables); running as uid ${String(uid)}. They are never skipped: run them as root${process.env['CI'] ? ' (CI is set)' : ''}.`);
  }
  for (const tool of [[IP, '-V'], [NFT, '--version']] as const) {
    const r = await execa(tool[0], [tool[1]], { reject: false, timeout: 10000 });
    if (r.exitCode !== 0) throw new Error(`lab: \`${tool[0]}\` is not usable (${r.stderr || r.message}); install iproute2 and nftables`);
  }
}

export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  await preflight();
  await sweepStaleLabs();

  const base = `apx${process.pid}-${randomBytes(2).toString('hex')}`;
  const ns = { client: `${base}-c`, router: `${base}-r`, upstream: `${base}-u` };
  const dir = mkdtempSync(path.join(tmpdir(), `${base}-`));
  const children = new Set<ChildProcess>();
  const doomed: Doomed = { namespaces: [ns.client, ns.router, ns.upstream], dir, children };
  liveLabs.add(doomed);
  installHandlers();

  const processes: LabProcess[] = [];
  let destroying: Promise<void> | undefined;

  const spawnIn = (nsName: string, cmd: string, args: string[], o: { env?: Record<string, string> } = {}): LabProcess => {
    if (destroying) throw new Error('lab: spawn after destroy');
    const [file, argv] = nsArgv(nsName, cmd, args);
    const child = spawnChild(file, argv, {
      cwd: repoRoot(),
      env: { ...process.env, ...(o.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.add(child);
    const p = wrapProcess(child, `${path.basename(cmd)} ${args.map((a) => path.basename(a)).join(' ')}`.slice(0, 80) + ` [${nsName || 'root'}]`);
    void p.exited.then(() => children.delete(child));
    processes.push(p);
    return p;
  };

  const exec = async (nsName: string, cmd: string, args: string[], o: ExecOptions = {}): Promise<ExecResult> => {
    const [file, argv] = nsArgv(nsName, cmd, args);
    const r = await execa(file, argv, {
      reject: false,
      timeout: o.timeoutMs ?? 30000,
      killSignal: 'SIGKILL',
      cwd: repoRoot(),
      ...(o.input !== undefined ? { input: o.input } : { stdin: 'ignore' as const }),
    });
    const result: ExecResult = {
      stdout: typeof r.stdout === 'string' ? r.stdout : '',
      stderr: typeof r.stderr === 'string' ? r.stderr : '',
      exitCode: typeof r.exitCode === 'number' ? r.exitCode : -1,
      timedOut: Boolean(r.timedOut),
    };
    if ((o.reject ?? true) && (result.exitCode !== 0 || result.timedOut)) {
      throw new Error(`lab: [${nsName || 'root'}] \`${cmd} ${args.join(' ')}\` ${result.timedOut ? 'timed out' : `exited ${result.exitCode}`}\n  stdout: ${result.stdout.slice(-2000)}\n  stderr: ${result.stderr.slice(-2000)}`);
    }
    return result;
  };

  const destroy = (): Promise<void> => {
    destroying ??= (async () => {
      try {
        for (const p of processes) p.kill('SIGTERM');
        const all = Promise.all(processes.map((p) => p.exited));
        const gentle = await Promise.race([all.then(() => true), sleep(2000).then(() => false)]);
        if (!gentle) {
          for (const p of processes) p.kill('SIGKILL');
          await Promise.race([all, sleep(2000)]);
        }
        for (const n of doomed.namespaces) {
          // whatever else still runs inside (processes started by hand, grandchildren)
          for (let i = 0; i < 20; i++) {
            const r = await execa(IP, ['netns', 'pids', n], { reject: false, timeout: 5000 });
            const pids = r.stdout.split(/\s+/).filter(Boolean).map(Number);
            if (pids.length === 0 || r.exitCode !== 0) break;
            for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
            await sleep(50);
          }
          const del = await execa(IP, ['netns', 'del', n], { reject: false, timeout: 10000 });
          if (del.exitCode !== 0 && !/No such file/.test(del.stderr)) {
            process.stderr.write(`[lab] ip netns del ${n}: ${del.stderr}\n`);
          }
        }
        await rm(dir, { recursive: true, force: true });
      } catch (err) {
        process.stderr.write(`[lab] destroy: ${(err as Error).message}; falling back to synchronous cleanup\n`);
        try { cleanupSync(doomed); } catch { /* never throw */ }
      } finally {
        liveLabs.delete(doomed);
        if (liveLabs.size === 0) uninstallHandlers();
      }
    })();
    return destroying;
  };

  try {
    // namespaces
    for (const n of doomed.namespaces) await run(IP, ['netns', 'add', n]);
    await run(IP, ['-n', ns.router, 'link', 'add', 'r0', 'type', 'veth', 'peer', 'name', 'c0', 'netns', ns.client]);
    await run(IP, ['-n', ns.router, 'link', 'add', 'r1', 'type', 'veth', 'peer', 'name', 'u0', 'netns', ns.upstream]);
    await run(IP, ['-n', ns.client, '-batch', '-'], batch([
      'link set lo up',
      'link set c0 up',
      'addr add 192.0.2.2/24 dev c0',
      'route add default via 192.0.2.1',
    ]));
    await run(IP, ['-n', ns.router, '-batch', '-'], batch([
      'link set lo up',
      'link set r0 up',
      'link set r1 up',
      'addr add 192.0.2.1/24 dev r0',
      'addr add 203.0.113.1/24 dev r1',
      'addr add 198.51.100.1/24 dev r1',
    ]));
    const upstream = ['link set lo up', 'link set u0 up', 'addr add 203.0.113.53/24 dev u0'];
    for (let i = 10; i <= 49; i++) upstream.push(`addr add 203.0.113.${i}/24 dev u0`);
    upstream.push('addr add 198.51.100.10/24 dev u0', 'route add default via 203.0.113.1');
    await run(IP, ['-n', ns.upstream, '-batch', '-'], batch(upstream));
    await run(IP, ['netns', 'exec', ns.router, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);

    // the program under test needs nftables in the router namespace: fail loudly if it cannot work
    const nft = await execa(IP, ['netns', 'exec', ns.router, NFT, 'list', 'ruleset'], { reject: false, timeout: 10000 });
    if (nft.exitCode !== 0) {
      throw new Error(`lab: \`nft list ruleset\` does not work inside the router namespace (exit ${String(nft.exitCode)}): ${nft.stderr || nft.message}. The kernel needs nf_tables; the tests cannot run without it.`);
    }

    // fixtures
    const scenarioFile = path.join(dir, 'scenario.json');
    writeFileSync(scenarioFile, JSON.stringify(opts.scenario ?? {}, null, 2) + '\n');
    const ports = opts.courierPorts ?? [5223, 443];
    const fakeApple = spawnIn(ns.upstream, nodeBin(), [fixturePath('fake-apple.js'), '--scenario', scenarioFile, '--parent-watch']);
    const courierServer = spawnIn(ns.upstream, nodeBin(), [fixturePath('courier-server.js'), ...ports.map(String), '--parent-watch']);
    await Promise.all([
      fakeApple.waitForLine(/^ready 1$/, 15000),
      courierServer.waitForLine(/^\{"listening":/, 15000),
    ]);

    let scenarioChain: Promise<void> = Promise.resolve();
    const setScenario = (s: Scenario): Promise<void> => {
      const step = scenarioChain.then(async () => {
        const from = fakeApple.lines.length;
        const tmp = `${scenarioFile}.tmp`;
        writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
        renameSync(tmp, scenarioFile);
        fakeApple.kill('SIGHUP');
        const line = await fakeApple.waitForLine(/^(ready \d+|reload-error .*)$/, 5000, from);
        if (line.startsWith('reload-error')) throw new Error(`lab: fake-apple rejected the scenario: ${line.slice('reload-error '.length)}`);
      });
      scenarioChain = step.catch(() => undefined);
      return step;
    };

    const jsonLines = (p: LabProcess): Record<string, unknown>[] => {
      const outList: Record<string, unknown>[] = [];
      for (const l of p.lines) {
        if (!l.startsWith('{')) continue;
        try { outList.push(JSON.parse(l) as Record<string, unknown>); } catch { /* not ours */ }
      }
      return outList;
    };

    const lab: Lab = {
      base,
      ns,
      dir,
      fakeApple,
      courierServer,
      exec,
      spawn: spawnIn,
      setScenario,
      courierConnections: () => jsonLines(courierServer)
        .filter((o) => typeof o['conn'] === 'string')
        .map((o) => ({ conn: o['conn'] as string, peer: String(o['peer']) })),
      appleQueries: () => jsonLines(fakeApple)
        .filter((o) => typeof o['q'] === 'string')
        .map((o) => ({ q: o['q'] as string, type: String(o['type']), transport: String(o['transport']), asked: String(o['asked']), from: String(o['from']) })),
      probe: async (args: string[], timeoutMs = 30000) => {
        const r = await exec(ns.client, nodeBin(), [fixturePath('probe.js'), ...args], { timeoutMs, reject: false });
        const last = r.stdout.trim().split('\n').pop() ?? '';
        try {
          return JSON.parse(last) as unknown;
        } catch {
          throw new Error(`lab: probe ${args.join(' ')} printed no JSON (exit ${r.exitCode}${r.timedOut ? ', timed out' : ''})\n  stdout: ${r.stdout.slice(-2000)}\n  stderr: ${r.stderr.slice(-2000)}`);
        }
      },
      destroy,
    };
    return lab;
  } catch (err) {
    await destroy();
    throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Writes a daemon config on the DESIGN §5 address plan (VIPs 198.18.100.0/24, couriers 1..60,
 * upstream DNS 203.0.113.53, couriers in 203.0.113.0/24, state in the lab's dir), with the given
 * top-level keys replaced; returns its path.
 */
export async function writeLabConfig(lab: Lab, overrides: Record<string, unknown> = {}, name = 'config.json'): Promise<string> {
  const file = path.join(lab.dir, name);
  await writeFile(file, JSON.stringify({
    vipPrefix: '198.18.100.0/24',
    couriers: { first: 1, last: 60 },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    stateDir: path.join(lab.dir, 'state'),
    ...overrides,
  }, null, 1));
  return file;
}
