// Kept labs (`npm run lab -- --keep`) and their removal (`npm run lab -- down`).
//
// A kept lab is held by a detached "keeper" process (the demo started with --keeper): it owns the
// namespaces, the fixtures and the daemon exactly like a foreground lab does, so the lab helper's
// own cleanup (signals, exit) applies unchanged. The keeper records itself in REGISTRY/<base>.json;
// `down` sends it SIGTERM (it then deletes everything), and deletes whatever a dead keeper left.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { IP, deleteNamespace as deleteNs, sweepStaleLabs } from './proc.js';

export interface KeptLab {
  readonly base: string;
  readonly keeperPid: number;
  readonly namespaces: readonly string[];
  readonly dir: string;            // the lab's temp dir (config, state, daemon log)
  readonly config: string;
  readonly daemonLog: string;
  readonly keeperLog: string;
  readonly failed: number;         // failed checks of the demo run that built it
  readonly startedAt: string;
}

/** Where kept labs are recorded; APNS_PROXY_LAB_RUN_DIR overrides it (tests use a temp dir). */
export function registryDir(): string {
  return process.env['APNS_PROXY_LAB_RUN_DIR'] ?? '/run/apns-proxy-lab';
}

export function ensureRegistry(): string {
  const dir = registryDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function writeKept(k: KeptLab): void {
  const dir = ensureRegistry();
  const file = path.join(dir, `${k.base}.json`);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(k, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

export function removeKept(base: string): void {
  rmSync(path.join(registryDir(), `${base}.json`), { force: true });
}

export function listKept(): KeptLab[] {
  const dir = registryDir();
  if (!existsSync(dir)) return [];
  const out: KeptLab[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as KeptLab);
    } catch { /* a half-written or foreign file: ignore */ }
  }
  return out;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when pid is a lab keeper (guards against a reused pid). */
export function isKeeper(pid: number): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
    return argv.some((a) => a.endsWith(path.join('lab', 'demo.js'))) && argv.includes('--keeper');
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 100) {
    if (!alive(pid)) return true;
    await sleep(100);
  }
  return !alive(pid);
}

async function deleteNamespace(ns: string): Promise<boolean> {
  const list = await execa(IP, ['netns', 'list'], { reject: false, timeout: 10_000 });
  if (!list.stdout.split('\n').some((l) => l.trim().split(/\s+/)[0] === ns)) return false;
  return deleteNs(ns);
}

/** Removes every kept lab (and labs whose owner died). Returns how many it removed. */
export async function labDown(say: (line: string) => void): Promise<number> {
  let removed = 0;
  for (const k of listKept()) {
    if (alive(k.keeperPid) && isKeeper(k.keeperPid)) {
      process.kill(k.keeperPid, 'SIGTERM');
      if (!(await waitGone(k.keeperPid, 15_000))) {
        process.kill(k.keeperPid, 'SIGKILL');
        await waitGone(k.keeperPid, 3000);
      }
    }
    // whatever the keeper did not get to (it was killed, or its cleanup failed)
    for (const ns of k.namespaces) await deleteNamespace(ns);
    rmSync(k.dir, { recursive: true, force: true });
    rmSync(k.keeperLog, { force: true });
    removeKept(k.base);
    say(`removed lab ${k.base} (namespaces ${k.namespaces.join(', ')}; keeper pid ${k.keeperPid})`);
    removed++;
  }
  const swept = await sweepStaleLabs();
  if (swept.length > 0) say(`removed namespaces left by dead lab runs: ${swept.join(', ')}`);
  if (removed === 0 && swept.length === 0) say('no kept lab found');
  return removed + swept.length;
}
