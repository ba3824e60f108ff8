// Processes and namespaces for the namespace labs (lab/lab.ts, and any other lab built on these
// helpers): commands run inside a namespace, tracked long-running processes whose output lines can
// be awaited, the sweep of namespaces left by dead runs, and the last-resort cleanup on exit and
// signals.
//
// Naming: a lab's namespaces and temp dir are `apx<tag><pid>-<4 hex>-<suffix>` (tag: lower-case
// letters, possibly empty; suffix: lower-case letters and digits). The pid is the process that
// created them: sweepStaleLabs() removes those whose pid is no longer a live node process, so a run
// that was SIGKILLed is cleaned up by the next one.
import { spawn as spawnChild, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { systemTool } from '../src/core/tools.js';

export const IP = systemTool('ip');
export const NFT = systemTool('nft');

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

export interface SpawnOptions {
  env?: Record<string, string>;
  /**
   * Write stdout and stderr straight to this file instead of a pipe: this process then reads
   * nothing while the child runs (a chatty child costs it no CPU). The file is read only while a
   * waitForLine is pending, every 50 ms; `lines` holds what was read so far.
   */
  logFile?: string;
  /** only lines for which this returns true are kept in `lines` (default: all) */
  keepLine?: (line: string) => boolean;
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
  /** stderr so far (the last 1 MB; with logFile: the last 2 KB of the file) */
  stderr(): string;
  /** write to the process's stdin */
  write(text: string): void;
  /** close the process's stdin */
  endInput(): void;
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

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A fresh lab base name: `apx<tag><pid>-<4 hex>`. */
export function labBase(tag = ''): string {
  if (!/^[a-z]*$/.test(tag)) throw new Error(`lab: tag must be lower-case letters, not ${JSON.stringify(tag)}`);
  return `apx${tag}${process.pid}-${randomBytes(2).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------
// last-resort cleanup

/** What a lab owns: deleted by cleanupSync() and by the exit / signal handlers while tracked. */
export interface Doomed {
  namespaces: string[];
  dir: string;
  /** keep dir on cleanup (its logs stay for a closer look) */
  keepDir?: boolean;
  children: Set<ChildProcess>;
}

const liveLabs = new Set<Doomed>();
let handlersInstalled = false;

export function killNamespaceSync(ns: string): void {
  for (let i = 0; i < 10; i++) {
    const r = spawnSync(IP, ['netns', 'pids', ns], { encoding: 'utf8', timeout: 5000 });
    const pids = (r.stdout ?? '').split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0 || r.status !== 0) break;
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    spawnSync('sleep', ['0.05']);
  }
  spawnSync(IP, ['netns', 'del', ns], { timeout: 5000, stdio: 'ignore' });
}

/** Kills d's children and everything in its namespaces, deletes the namespaces and (unless kept) the dir. */
export function cleanupSync(d: Doomed): void {
  for (const c of d.children) {
    try { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); } catch { /* gone */ }
  }
  for (const ns of d.namespaces) killNamespaceSync(ns);
  if (!d.keepDir) {
    try { rmSync(d.dir, { recursive: true, force: true }); } catch { /* ignore */ }
  }
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
  handlersInstalled = false;
  process.off('exit', exitHandler);
}

/**
 * Registers d for the last-resort cleanup: a synchronous process 'exit' handler, and SIGINT /
 * SIGTERM / SIGHUP handlers while any lab is tracked (they clean up, then let the signal terminate
 * the process unless something else handles it). Call untrackLab(d) once d is destroyed.
 */
export function trackLab(d: Doomed): void {
  liveLabs.add(d);
  installHandlers();
}

export function untrackLab(d: Doomed): void {
  liveLabs.delete(d);
  if (liveLabs.size === 0) uninstallHandlers();
}

/** Kills whatever still runs inside ns, then deletes it. Never throws; false when ns did not exist. */
export async function deleteNamespace(ns: string): Promise<boolean> {
  for (let i = 0; i < 20; i++) {
    const r = await execa(IP, ['netns', 'pids', ns], { reject: false, timeout: 5000 });
    const pids = r.stdout.split(/\s+/).filter(Boolean).map(Number);
    if (pids.length === 0 || r.exitCode !== 0) break;
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    await sleep(50);
  }
  const del = await execa(IP, ['netns', 'del', ns], { reject: false, timeout: 10000 });
  if (del.exitCode !== 0 && !/No such file/.test(del.stderr)) {
    process.stderr.write(`[lab] ip netns del ${ns}: ${del.stderr}\n`);
  }
  return del.exitCode === 0;
}

// ---------------------------------------------------------------------------------------------
// stale sweep

const NS_RE = /^apx[a-z]*(\d+)-([0-9a-f]{4})-[a-z0-9]+$/;
const DIR_RE = /^apx[a-z]*(\d+)-([0-9a-f]{4})-/;

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

/** Removes namespaces (and temp dirs) named like a lab's whose owner pid is gone; returns the namespaces. */
export async function sweepStaleLabs(): Promise<string[]> {
  const list = await execa(IP, ['netns', 'list'], { reject: false, timeout: 10000 });
  const removed: string[] = [];
  for (const line of list.stdout.split('\n')) {
    const name = line.trim().split(/\s+/)[0] ?? '';
    const m = NS_RE.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    await deleteNamespace(name);
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
// commands and processes

/** argv running cmd inside ns ('' = the root namespace). Bare tool names resolve to system paths. */
export function nsArgv(ns: string, cmd: string, args: string[]): [string, string[]] {
  // node_modules/.bin has an unrelated `nft` (see src/core/tools.ts)
  const bin = cmd.includes('/') ? cmd : systemTool(cmd);
  return ns === '' ? [bin, args] : [IP, ['netns', 'exec', ns, bin, ...args]];
}

/** Runs cmd inside ns to completion (bounded), in the repository root. */
export async function nsExec(ns: string, cmd: string, args: string[], o: ExecOptions = {}): Promise<ExecResult> {
  const [file, argv] = nsArgv(ns, cmd, args);
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
    throw new Error(`lab: [${ns || 'root'}] \`${cmd} ${args.join(' ')}\` ${result.timedOut ? 'timed out' : `exited ${result.exitCode}`}\n  stdout: ${result.stdout.slice(-2000)}\n  stderr: ${result.stderr.slice(-2000)}`);
  }
  return result;
}

/**
 * Starts cmd inside ns ('' = the root namespace) as a LabProcess. The child is added to `children`
 * (pass a tracked lab's set: the last-resort cleanup kills it) and removed when it exits.
 */
export function nsSpawn(ns: string, cmd: string, args: string[], o: SpawnOptions = {}, children?: Set<ChildProcess>): LabProcess {
  const [file, argv] = nsArgv(ns, cmd, args);
  const fd = o.logFile !== undefined ? openSync(o.logFile, 'a') : undefined;
  let child: ChildProcess;
  try {
    child = spawnChild(file, argv, {
      cwd: repoRoot(),
      env: { ...process.env, ...(o.env ?? {}) },
      stdio: fd !== undefined ? ['pipe', fd, fd] : ['pipe', 'pipe', 'pipe'],
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  children?.add(child);
  const what = `${path.basename(cmd)} ${args.map((a) => path.basename(a)).join(' ')}`.slice(0, 80) + ` [${ns || 'root'}]`;
  const p = wrapProcess(child, what, o);
  void p.exited.then(() => children?.delete(child));
  return p;
}

/** Runs cmd (root namespace) and throws with its output when it fails. */
export async function run(cmd: string, args: string[], input?: string, timeoutMs = 15000): Promise<void> {
  const r = await execa(cmd, args, { reject: false, timeout: timeoutMs, ...(input !== undefined ? { input } : {}) });
  if (r.exitCode !== 0) {
    throw new Error(`lab: \`${cmd} ${args.join(' ')}\` failed (exit ${String(r.exitCode)}): ${r.stderr || r.stdout || r.message}`);
  }
}

const STDERR_MAX = 1024 * 1024;

function readFrom(file: string, from: number): Buffer {
  if (!existsSync(file)) return Buffer.alloc(0);
  const size = statSync(file).size;
  if (size <= from) return Buffer.alloc(0);
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size - from, 64 << 20));
    const n = readSync(fd, buf, 0, buf.length, from);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function wrapProcess(child: ChildProcess, what: string, o: SpawnOptions): LabProcess {
  const lines: string[] = [];
  const keep = o.keepLine ?? (() => true);
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
      let added = false;
      for (const l of parts) {
        const line = l.replace(/\r$/, '');
        if (keep(line)) { lines.push(line); added = true; }
      }
      if (added) notify();
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

  // logFile: read what the child wrote since the last look (only while somebody waits)
  let offset = 0;
  const readLog = (final = false): void => {
    if (o.logFile === undefined) return;
    const chunk = readFrom(o.logFile, offset);
    const end = final ? chunk.length : chunk.lastIndexOf(0x0a) + 1;  // whole lines only
    if (end <= 0) return;
    offset += end;
    outLines(chunk.subarray(0, end).toString('utf8'), final);
  };
  const stderrText = (): string => {
    if (o.logFile === undefined) return err;
    const size = existsSync(o.logFile) ? statSync(o.logFile).size : 0;
    return readFrom(o.logFile, Math.max(0, size - 2000)).toString('utf8');
  };

  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      err += `\n[lab] cannot start ${what}: ${e.message}\n`;
      exitCode = null;
      notify();
      resolve(null);
    });
    child.on('close', (code) => {
      readLog(true);
      exitCode = code;
      notify();
      resolve(code);
    });
  });

  const tail = (): string => `\n  last stdout: ${JSON.stringify(lines.slice(-5))}\n  stderr: ${stderrText().slice(-2000)}`;

  return {
    get pid() { return child.pid ?? -1; },
    lines,
    exited,
    stderr: stderrText,
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
        const poll = o.logFile !== undefined ? setInterval(() => readLog(), 50) : undefined;
        const done = (): void => { clearTimeout(timer); if (poll) clearInterval(poll); waiters.delete(check); };
        waiters.add(check);
        readLog();
        check();
      });
    },
  };
}
