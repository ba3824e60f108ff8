// src/cli/exec.ts: the daemon's way to run nft and ip (execa's non-rejecting call on node:child_process).
import test from 'ava';
import { runTool } from '../../src/cli/exec.js';

test('output without its final newline, the exit code, and input on stdin', async (t) => {
  t.like(await runTool('sh', ['-c', 'echo out; echo err >&2']), { stdout: 'out', stderr: 'err', exitCode: 0, failed: false });
  t.like(await runTool('sh', ['-c', 'exit 3']), { exitCode: 3, failed: true });
  t.like(await runTool('cat', [], { input: 'a\nb\n' }), { stdout: 'a\nb', exitCode: 0 });
});

test('a tool that cannot be started reports ENOENT instead of rejecting', async (t) => {
  const r = await runTool('/nonexistent/apx-tool', ['x']);
  t.like(r, { failed: true, exitCode: undefined, code: 'ENOENT' });
});

test('a tool that exits without reading its input: no EPIPE crash, its exit code', async (t) => {
  t.like(await runTool('sh', ['-c', 'exit 1'], { input: 'x'.repeat(1 << 20) }), { exitCode: 1, failed: true });
});
