// Processes for the benchmarks: bounded one-shot commands, and tracked background processes whose
// output goes to a file (so a chatty process never makes this orchestrator busy while it measures).
// Every background process is killed on exit, Ctrl-C or an error (see killAllSync).
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  readonly timedOut: boolean;
  readonly ms: number;
}

export interface RunOptions {
  /** SIGKILL after this long (default 60 s) */
  readonly timeoutMs?: number;
  readonly input?: string;
  /** throw on a non-zero exit or a timeout (default true) */
  readonly check?: boolean;
}

/** Runs argv to completion (bounded), collecting its output. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error('run: empty argv');
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    tracked.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { if (stdout.length < 16 << 20) stdout += d; });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 1 << 20) stderr += d; });
    if (opts.input !== undefined) {
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(opts.input);
    }
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => { clearTimeout(timer); tracked.delete(child); reject(new Error(`cannot run ${argv.join(' ')}: ${err.message}`)); });
    child.on('close', (code) => {
      clearTimeout(timer);
      tracked.delete(child);
      const r: RunResult = { stdout, stderr, code, timedOut, ms: performance.now() - t0 };
      if ((opts.check ?? true) && (code !== 0 || timedOut)) {
        reject(new Error(`\`${argv.join(' ')}\` ${timedOut ? 'timed out' : `exited ${String(code)}`}\n  stdout: ${stdout.slice(-1500)}\n  stderr: ${stderr.slice(-1500)}`));
      } else resolve(r);
    });
  });
}

const tracked = new Set<ChildProcess>();

/** Last resort (exit / signal): SIGKILL every child still running. */
export function killAllSync(): void {
  for (const c of tracked) {
    try { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); } catch { /* gone */ }
  }
  tracked.clear();
}

/** A background process; stdout+stderr go to `log`. */
export class Bg {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private code: number | null | undefined;

  constructor(readonly name: string, argv: readonly string[], readonly log: string, opts: { stdin?: boolean } = {}) {
    const [file, ...args] = argv;
    if (!file) throw new Error('Bg: empty argv');
    const fd = openSync(log, 'a');
    this.child = spawn(file, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', fd, fd] });
    closeSync(fd);
    tracked.add(this.child);
    this.child.stdin?.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      this.child.on('error', () => { this.code = null; tracked.delete(this.child); resolve(null); });
      this.child.on('close', (code) => { this.code = code; tracked.delete(this.child); resolve(code); });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.code === undefined;
  }

  write(text: string): void {
    this.child.stdin?.write(text);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    try { if (this.running) this.child.kill(signal); } catch { /* gone */ }
  }

  /** SIGTERM (or `signal`), then SIGKILL after graceMs; resolves when it is gone. */
  async stop(graceMs = 5000, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.running) return this.code ?? null;
    this.kill(signal);
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  /** Current size of the log: pass it to waitFor to see only what comes later. */
  mark(): number {
    return existsSync(this.log) ? statSync(this.log).size : 0;
  }

  /** The log's lines from byte `from` on. */
  lines(from = 0): string[] {
    return readFrom(this.log, from).split('\n').filter((l) => l.length > 0);
  }

  /** Polls the log (every 50 ms) for a line matching re after byte `from`; rejects on timeout or exit. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let offset = from;
    let partial = '';
    for (;;) {
      const chunk = readFrom(this.log, offset);
      offset += Buffer.byteLength(chunk);
      const text = partial + chunk;
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) if (re.test(line)) return line;
      if (!this.running) {
        if (re.test(partial)) return partial;
        throw new Error(`${this.name} exited (${String(this.code)}) before printing ${re}; log ${this.log}:\n${tail(this.log)}`);
      }
      if (Date.now() > deadline) throw new Error(`${this.name}: no line matching ${re} within ${timeoutMs} ms; log ${this.log}:\n${tail(this.log)}`);
      await sleep(50);
    }
  }
}

function readFrom(path: string, from: number): string {
  if (!existsSync(path)) return '';
  const size = statSync(path).size;
  if (size <= from) return '';
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(Math.min(size - from, 64 << 20));
    const n = readSync(fd, buf, 0, buf.length, from);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export function tail(path: string, bytes = 2000): string {
  const size = existsSync(path) ? statSync(path).size : 0;
  return readFrom(path, Math.max(0, size - bytes));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
