// `apns-proxy doctor` for a router of a pair (config ha.enabled; README "Running a pair"): the
// shared source-NAT address, the sysctls a pair needs, conntrackd running and talking to its peer,
// keepalived's state (from the state file contrib/ha/notify.sh writes) and who holds the address.
// Pure: what the system looks like comes through PairProbes (realPairProbes below).
import { readFile } from 'node:fs/promises';
import type { Config } from '../../core/config.js';
import type { Finding, Level } from '../doctor.js';
import { errorMessage } from '../../core/errors.js';
import type { LocalAddress } from '../preflight.js';

export interface PairProbes {
  sysctl(key: string): Promise<string | null>;
  localAddresses(): Promise<LocalAddress[]>;
  /** `conntrackd -C CONFIG -s`: exit code and output */
  conntrackdStats(config: string): Promise<{ exitCode: number; output: string }>;
  /** the state file's text, null when it does not exist */
  readState(file: string): Promise<string | null>;
  /** /proc/PID/comm, null when there is no such process */
  processName(pid: number): Promise<string | null>;
  now(): number;
}

/** "UDP traffic" of `conntrackd -s`: packets sent and received over the sync link, send/recv errors. */
export function parseSyncTraffic(stats: string): { sent: number; recv: number; sendErrors: number; recvErrors: number; device: string } | null {
  const m = /UDP traffic \(active device=([^)]*)\):\s*\n\s*\d+ Bytes sent\s+\d+ Bytes recv\s*\n\s*(\d+) Pckts sent\s+(\d+) Pckts recv\s*\n\s*(\d+) Error send\s+(\d+) Error recv/.exec(stats);
  if (!m) return null;
  return { device: m[1]!, sent: Number(m[2]), recv: Number(m[3]), sendErrors: Number(m[4]), recvErrors: Number(m[5]) };
}

export async function pairFindings(config: Config, p: PairProbes): Promise<Finding[]> {
  const out: Finding[] = [];
  const add = (check: string, level: Level, message: string, fix?: string) => out.push({ check, level, message, ...(fix ? { fix } : {}) });
  const ctConf = config.ha.conntrackdConfig;

  const snat = config.nft.snat;
  if (snat === null) {
    add('pair snat', 'fail', 'ha.enabled but nft.snat is not set: per-router masquerade uses this router\'s own address, and no synced flow survives a failover',
      'set nft.snat to the shared upstream-side address keepalived moves (the same on both routers)');
  } else add('pair snat', 'ok', `our flows are source-NATed to the shared address ${snat}`);

  const loose = await p.sysctl('net.netfilter.nf_conntrack_tcp_loose');
  if (loose === '0') add('pair sysctl', 'ok', 'net.netfilter.nf_conntrack_tcp_loose = 0 (a mid-stream packet without state is dropped, never re-DNATed)');
  else if (loose === null) add('pair sysctl', 'warn', 'nf_conntrack is not loaded yet: cannot read net.netfilter.nf_conntrack_tcp_loose (run doctor again after apns-proxy refresh)');
  else add('pair sysctl', 'fail', `net.netfilter.nf_conntrack_tcp_loose = ${loose}: at a takeover a packet that arrives before its state would start a new flow, DNATed anew, maybe to another courier address`,
    'sysctl -p /etc/sysctl.d/apns-proxy-ha.conf  # scripts/install.sh --ha installs it');
  const nonlocal = await p.sysctl('net.ipv4.ip_nonlocal_bind');
  if (nonlocal === '1') add('pair sysctl', 'ok', 'net.ipv4.ip_nonlocal_bind = 1 (DNS is bound to the shared address whether or not this router holds it)');
  else add('pair sysctl', 'fail', `net.ipv4.ip_nonlocal_bind = ${nonlocal ?? 'unknown'}: the backup cannot bind the shared client-side address, so its DNS does not start (or does not answer after a takeover)`,
    'sysctl -p /etc/sysctl.d/apns-proxy-ha.conf  # scripts/install.sh --ha installs it');

  let stats: { exitCode: number; output: string } | undefined;
  try {
    stats = await p.conntrackdStats(ctConf);
  } catch (err) {
    add('conntrackd', 'fail', `cannot run conntrackd: ${errorMessage(err)}`, 'apt-get install conntrackd');
  }
  if (stats && stats.exitCode !== 0) {
    add('conntrackd', 'fail', `conntrackd (config ${ctConf}) does not answer: ${stats.output.trim().split('\n')[0] ?? ''}: without it the backup knows no connection and a failover loses them all`,
      `systemctl enable --now conntrackd  # with ${ctConf} (scripts/install.sh --ha renders it)`);
  } else if (stats) {
    const t = parseSyncTraffic(stats.output);
    if (!t) add('conntrackd', 'warn', 'conntrackd runs, but its statistics show no UDP sync link (is it in FT-FW mode over UDP?)');
    else if (t.recv === 0) add('conntrackd', 'fail', `conntrackd runs but has never heard its peer over ${t.device} (${t.sent} packets sent, 0 received)`,
      'check the sync link, the peer\'s conntrackd, and IPv4_Destination_Address in both conntrackd.conf');
    else if (t.sendErrors > 0 || t.recvErrors > 0) add('conntrackd', 'warn', `conntrackd syncs over ${t.device} (${t.sent} packets sent, ${t.recv} received) with errors: ${t.sendErrors} send, ${t.recvErrors} receive`);
    else add('conntrackd', 'ok', `conntrackd syncs over ${t.device}: ${t.sent} packets sent, ${t.recv} received, no errors`);
  }

  const text = await p.readState(config.ha.stateFile);
  const m = text === null ? null : /^(MASTER|BACKUP|FAULT) (\d+) (\d+)/.exec(text);
  let state: string | undefined;
  if (!m) {
    add('keepalived', 'fail', `no keepalived state in ${config.ha.stateFile}: keepalived is not running, or its notify script is not contrib/ha/notify.sh with this state file`,
      'systemctl enable --now keepalived  # with the keepalived.conf scripts/install.sh --ha renders');
  } else {
    const comm = await p.processName(Number(m[3]));
    const since = Math.max(0, Math.round(p.now() / 1000 - Number(m[2])));
    if (comm === null || !comm.startsWith('keepalived')) {
      add('keepalived', 'fail', `the state file says ${m[1]} (${since} s ago) but that keepalived (pid ${m[3]}) is gone`, 'systemctl restart keepalived');
    } else {
      state = m[1];
      add('keepalived', state === 'FAULT' ? 'fail' : 'ok', `${state} for ${since} s (keepalived pid ${m[3]})`,
        state === 'FAULT' ? 'a tracked interface is down: ip -br link' : undefined);
    }
  }

  if (snat !== null && state !== undefined) {
    let held: boolean | undefined;
    try {
      held = (await p.localAddresses()).some((a) => a.family === 4 && a.address === snat);
    } catch (err) {
      add('pair address', 'warn', `could not list addresses: ${errorMessage(err)}`);
    }
    if (held === true && state === 'MASTER') add('pair address', 'ok', `this router is primary and holds ${snat}`);
    else if (held === false && state === 'MASTER') add('pair address', 'fail', `this router is primary but does not hold ${snat}: the couriers' answers go nowhere`, 'check virtual_ipaddress in keepalived.conf against nft.snat');
    else if (held === true) add('pair address', 'fail', `this router is ${state} but holds ${snat} (both routers may hold it)`, 'systemctl restart keepalived; check the VRRP link between the routers');
    else if (held === false) add('pair address', 'ok', `this router is ${state}; the peer holds ${snat}`);
  }
  return out;
}

/** The real probes (run in the router's network namespace). */
export function realPairProbes(exec: (file: string, args: string[]) => Promise<{ stdout: string; stderr: string; exitCode: number }>,
  tools: { conntrackd: string }, base: Pick<PairProbes, 'sysctl' | 'localAddresses'>): PairProbes {
  return {
    ...base,
    async conntrackdStats(config) {
      const r = await exec(tools.conntrackd, ['-C', config, '-s']);
      return { exitCode: r.exitCode, output: `${r.stdout}${r.stderr}` };
    },
    async readState(file) {
      try { return await readFile(file, 'utf8'); } catch { return null; }
    },
    async processName(pid) {
      try { return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim(); } catch { return null; }
    },
    now: () => Date.now(),
  };
}
