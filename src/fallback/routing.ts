// Policy routing for TPROXY: packets marked by the fallback chain are routed to the local stack
// (ip rule fwmark MARK lookup TABLE; ip route local 0.0.0.0/0 dev lo table TABLE). Idempotent.
import { ApnsProxyError } from '../errors.js';

export type IpExec = (args: string[]) => Promise<{ stdout: string; stderr: string; exitCode: number }>;

export interface RoutingSpec { readonly mark: number; readonly table: number }

export interface PolicyRouting {
  ensure(spec: RoutingSpec): Promise<void>;
  remove(spec: RoutingSpec): Promise<void>;
}

const hex = (mark: number) => `0x${mark.toString(16)}`;

/** Does `ip -j rule show` list our rule? (fwmark is printed in hex, table by number or name.) */
export function hasRule(json: string, spec: RoutingSpec): boolean {
  const rules = JSON.parse(json || '[]') as { fwmark?: string; fwmask?: string; table?: string; action?: string }[];
  return rules.some((r) => r.fwmark !== undefined && Number(r.fwmark) === spec.mark &&
    (r.fwmask === undefined || Number(r.fwmask) === 0xffffffff) && r.table === String(spec.table));
}

export function createPolicyRouting(ip: IpExec): PolicyRouting {
  const must = async (args: string[]) => {
    const r = await ip(args);
    if (r.exitCode !== 0) throw new ApnsProxyError('E_NFT', `ip ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
    return r;
  };
  return {
    async ensure(spec) {
      const rules = await must(['-4', '-j', 'rule', 'show']);
      if (!hasRule(rules.stdout, spec)) await must(['-4', 'rule', 'add', 'fwmark', hex(spec.mark), 'lookup', String(spec.table)]);
      await must(['-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(spec.table)]);
    },
    async remove(spec) {
      // Delete every copy of our rule (an operator may have added it twice), then our route.
      for (let i = 0; i < 16; i++) {
        const r = await ip(['-4', 'rule', 'del', 'fwmark', hex(spec.mark), 'lookup', String(spec.table)]);
        if (r.exitCode !== 0) break;
      }
      await ip(['-4', 'route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(spec.table)]);
    },
  };
}
