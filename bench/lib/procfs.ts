// What the benchmarks read from /proc: CPU time and RSS of the router's processes, slab usage,
// conntrack counters.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { Lab } from './lab.js';

export const CLK_TCK = 100;

export interface ProcUsage {
  readonly pid: number;
  readonly comm: string;
  readonly cpuTicks: number;   // utime + stime, all threads
  readonly userTicks: number;  // utime alone: the process's own code (tick-sampled)
  readonly wakeups: number;    // voluntary + involuntary context switches, all threads
  readonly rssKb: number;
  readonly fds: number;
}

function wakeups(pid: number): number {
  let n = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
    } catch { /* thread gone */ }
  }
  return n;
}

export function procUsage(pid: number): ProcUsage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' ');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+) kB/.exec(status);
    let fds = 0;
    try { fds = readdirSync(`/proc/${pid}/fd`).length; } catch { /* gone */ }
    return { pid, comm, cpuTicks: Number(f[11]) + Number(f[12]), userTicks: Number(f[11]), wakeups: wakeups(pid), rssKb: rss ? Number(rss[1]) : 0, fds };
  } catch {
    return undefined;
  }
}

/** Every process inside a namespace. */
export async function nsProcs(lab: Lab, ns: string): Promise<ProcUsage[]> {
  const r = await lab.exec('', ['ip', 'netns', 'pids', ns], { check: false, timeoutMs: 10000 });
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).map(procUsage).filter((p): p is ProcUsage => p !== undefined);
}

export interface RouterUsage {
  readonly cpuTicks: number;
  readonly rssKb: number;
  readonly procs: readonly ProcUsage[];
}

export async function routerUsage(lab: Lab): Promise<RouterUsage> {
  const procs = await nsProcs(lab, lab.ns.r);
  return {
    procs,
    cpuTicks: procs.reduce((s, p) => s + p.cpuTicks, 0),
    rssKb: procs.reduce((s, p) => s + p.rssKb, 0),
  };
}

/**
 * CPU seconds the router's long-running processes (present in both samples: daemon, HAProxy) used
 * between two samples; a short-lived command that happens to run in the namespace while a sample
 * is taken (this benchmark's own `ip netns exec` probes) is not counted.
 */
export function cpuSeconds(a: RouterUsage, b: RouterUsage): number {
  return usageDelta(a, b).cpuS;
}

/**
 * CPU, user-mode CPU and wakeups of the long-running router processes between two samples. With
 * tick-based accounting, softirq work (packet forwarding) that happens while a process is on the
 * CPU is charged to that process's system time, so a process that merely wakes up for its own
 * timers under heavy traffic can show a few system ticks: user time and wakeups tell whether it
 * did any work of its own.
 */
export function usageDelta(a: RouterUsage, b: RouterUsage): { cpuS: number; userS: number; wakeups: number } {
  let ticks = 0;
  let user = 0;
  let wake = 0;
  for (const p of b.procs) {
    const before = a.procs.find((q) => q.pid === p.pid && q.comm === p.comm);
    if (!before) continue;
    ticks += p.cpuTicks - before.cpuTicks;
    user += p.userTicks - before.userTicks;
    wake += p.wakeups - before.wakeups;
  }
  return { cpuS: ticks / CLK_TCK, userS: user / CLK_TCK, wakeups: wake };
}

export interface Slab { readonly active: number; readonly objsize: number }

/** /proc/slabinfo: cache name → allocated objects and object size. */
export function slabinfo(): Map<string, Slab> {
  const out = new Map<string, Slab>();
  for (const line of readFileSync('/proc/slabinfo', 'utf8').split('\n').slice(2)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || !f[0]) continue;
    out.set(f[0], { active: Number(f[1]), objsize: Number(f[3]) });
  }
  return out;
}

export interface SlabDelta {
  readonly bytes: number;                                        // Σ Δobjects × object size, every cache
  readonly netBytes: number;                                     // the same over the caches network state lives in (see NET_CACHES)
  readonly top: readonly { name: string; objects: number; bytes: number }[];
}

/**
 * Where per-connection kernel state lives: conntrack, sockets, files and epoll entries of
 * proxies, and kmalloc (conntrack extensions, socket odds and ends). Filesystem and /proc caches
 * are left out: they swing by tens of MB on a shared machine whenever anything walks /proc or the
 * disk; so are transient objects no idle connection holds (TIME_WAIT and SYN_RECV sockets left by
 * earlier runs, UDP sockets, skbs), which would only add noise. A socket's dentry and LSM inode blob are counted per socket inode (one each) instead of
 * from the dentry cache, which /proc walks flood.
 */
const NET_CACHE = /^(nf_conntrack.*|nf_nat.*|TCP|TCPv6|sock_inode_cache|filp|eventpoll_epi|eventpoll_pwq|ep_head|lsm_file_cache|kmalloc-.*|kmalloc-cg-.*)$/;

export function slabDelta(a: Map<string, Slab>, b: Map<string, Slab>): SlabDelta {
  const rows: { name: string; objects: number; bytes: number }[] = [];
  let bytes = 0;
  let netBytes = 0;
  for (const [name, s] of b) {
    const d = s.active - (a.get(name)?.active ?? 0);
    bytes += d * s.objsize;
    if (NET_CACHE.test(name)) {
      netBytes += d * s.objsize;
      if (d !== 0) rows.push({ name, objects: d, bytes: d * s.objsize });
    }
  }
  const sockInodes = (b.get('sock_inode_cache')?.active ?? 0) - (a.get('sock_inode_cache')?.active ?? 0);
  const perSocket = (b.get('dentry')?.objsize ?? 0) + (b.get('lsm_inode_cache')?.objsize ?? 0);
  if (sockInodes !== 0 && perSocket > 0) {
    netBytes += sockInodes * perSocket;
    rows.push({ name: 'dentry+lsm_inode (per socket inode)', objects: sockInodes, bytes: sockInodes * perSocket });
  }
  rows.sort((x, y) => Math.abs(y.bytes) - Math.abs(x.bytes));
  return { bytes, netBytes, top: rows.slice(0, 8) };
}

export function meminfoKb(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m && m[1] && m[2]) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Conntrack entries in a namespace (0 when conntrack is not active there). */
export async function conntrackCount(lab: Lab, ns: string): Promise<number> {
  const r = await lab.exec(ns, ['cat', '/proc/sys/net/netfilter/nf_conntrack_count'], { check: false });
  return r.code === 0 ? Number(r.stdout.trim()) : 0;
}

export async function conntrackFlush(lab: Lab, ns: string): Promise<void> {
  await lab.exec(ns, ['conntrack', '-F'], { check: false, timeoutMs: 30000 });
}

/**
 * CPU used by everything else on this shared machine: user processes outside the lab's namespaces
 * (kernel threads and this orchestrator excluded). Keyed pid:comm so a pid reused in between does
 * not count; only processes present in both samples are compared.
 */
export function foreignSample(lab: Lab): Map<string, number> {
  const ours = new Set(Object.values(lab.ns).map((n) => {
    try { return statSync(`/var/run/netns/${n}`).ino; } catch { return -1; }
  }));
  const out = new Map<string, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const f = stat.slice(close + 2).split(' ');
      if (Number(f[6]) & 0x00200000) continue;  // PF_KTHREAD
      if (ours.has(statSync(`/proc/${e}/ns/net`).ino)) continue;
      out.set(`${e}:${stat.slice(stat.indexOf('(') + 1, close)}`, Number(f[11]) + Number(f[12]));
    } catch { /* gone */ }
  }
  return out;
}

export function foreignSeconds(a: Map<string, number>, b: Map<string, number>): number {
  let ticks = 0;
  for (const [k, t] of b) {
    const before = a.get(k);
    if (before !== undefined && t > before) ticks += t - before;
  }
  return ticks / CLK_TCK;
}
