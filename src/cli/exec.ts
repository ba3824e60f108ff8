// Runs a system tool (nft, ip) and collects its output: the little of execa the daemon uses, on
// node:child_process. execa's module graph costs the long-running daemon ~5 MB of RSS (bench/footprint.ts).
// Never rejects: a tool that cannot be started reports failed with its errno code (ENOENT).
import { spawn } from 'node:child_process';

export interface ToolResult {
  readonly stdout: string;   // without one final newline, as execa returns it
  readonly stderr: string;
  readonly exitCode: number | undefined;  // undefined: not started, or killed by a signal
  readonly failed: boolean;
  readonly code?: string;    // errno code when the tool could not be started
}

const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');

export function runTool(file: string, args: readonly string[], opts: { readonly input?: string } = {}): Promise<ToolResult> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: ToolResult) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const child = spawn(file, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) => done({ stdout: text(out), stderr: text(err) || e.message, exitCode: undefined, failed: true, ...(e.code ? { code: e.code } : {}) }));
    child.on('close', (code) => done({ stdout: text(out), stderr: text(err), exitCode: code ?? undefined, failed: code !== 0 }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined);  // EPIPE: the tool exited without reading; its exit code says why
      child.stdin.end(opts.input);
    }
  });
}
