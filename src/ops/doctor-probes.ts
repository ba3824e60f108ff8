// The real probes behind `apns-proxy doctor` and the preflight: nft/ip via an injected exec,
// /proc/sys reads, trial binds, the control socket and our own resolver.
import { once } from 'node:events';
import dgram from 'node:dgram';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import type { Config } from '../core/config.js';
import { controlPath, requestControl } from './control.js';
import type { DoctorProbes } from './doctor.js';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import { RULES_ARGS, routesArgs, routesOutput } from '../fallback/routing.js';
import type { HostPort } from '../core/net.js';
import type { NftRunner } from '../nft/runner.js';
import { type PreflightProbes, parseAddresses } from './preflight.js';
import { createResolver } from '../dns/client/resolver.js';

export type Exec = (file: string, args: string[], input?: string) => Promise<{ stdout: string; stderr: string; exitCode: number }>;

/** What the preflight looks at: our nft table's owner, ip rules and routes, interface addresses. */
export function realPreflightProbes(exec: Exec, ip: string, nft: Pick<NftRunner, 'tableOwner'>): PreflightProbes {
  const must = async (args: string[]) => {
    const r = await exec(ip, args);
    if (r.exitCode !== 0) throw new ApnsProxyError('E_ROUTING', `ip ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
    return r.stdout;
  };
  return {
    tableOwner: (table) => nft.tableOwner(table),
    ipRules: () => must(RULES_ARGS),
    ipRoutes: async (table) => routesOutput(await exec(ip, routesArgs(table)), table),
    localAddresses: async () => parseAddresses(await must(['-j', 'addr', 'show'])),
  };
}

export function realProbes(config: Config, exec: Exec, tools: { nft: string; ip: string }, native: () => string | null, nft: Pick<NftRunner, 'tableOwner'>): DoctorProbes {
  return {
    ...realPreflightProbes(exec, tools.ip, nft),
    async nftCheck(script) {
      const r = await exec(tools.nft, ['-c', '-f', '-'], script);
      return r.exitCode === 0 ? null : (r.stderr.trim() || `exit code ${r.exitCode}`);
    },
    async sysctl(key) {
      try {
        return (await readFile(`/proc/sys/${key.replace(/\./g, '/')}`, 'utf8')).trim();
      } catch {
        return null;
      }
    },
    nftRuleset: async () => (await exec(tools.nft, ['-j', 'list', 'ruleset'])).stdout,
    bindable,
    async daemonRunning() {
      try {
        return (await requestControl(controlPath(config.stateDir), 'ping', 2000)) !== undefined;
      } catch {
        return true;  // something answered on the control socket, if not with "pong"
      }
    },
    resolve: (server, name) => createResolver({ servers: [server], timeoutMs: config.resolver.timeoutMs }).resolveA(name),
    native,
  };
}

/** Binds UDP then TCP on the address for a moment; tells free from in use from not permitted. */
async function bindable(hp: HostPort): Promise<'free' | 'in-use' | 'denied' | 'not-local'> {
  const classify = (err: unknown): 'in-use' | 'denied' | 'not-local' => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') return 'in-use';
    if (code === 'EACCES') return 'denied';
    if (code === 'EADDRNOTAVAIL') return 'not-local';
    throw new Error(`cannot bind ${hp.host}:${hp.port}: ${errorMessage(err)}`);
  };
  const udp = dgram.createSocket(hp.family === 6 ? 'udp6' : 'udp4');
  try {
    const listening = once(udp, 'listening');  // rejects with the bind error ('error')
    udp.bind(hp.port, hp.host);
    await listening;
  } catch (err) {
    return classify(err);
  } finally {
    try {
      udp.close();
    } catch {
      // never bound: nothing to close
    }
  }
  const tcp = net.createServer();
  try {
    const listening = once(tcp, 'listening');  // rejects with the listen error ('error')
    tcp.listen(hp.port, hp.host);
    await listening;
    return 'free';
  } catch (err) {
    return classify(err);
  } finally {
    tcp.close();
  }
}
