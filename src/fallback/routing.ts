// Policy routing for TPROXY: packets marked by the fallback chain are routed to the local stack
// (ip rule fwmark MARK lookup TABLE; ip route local 0.0.0.0/0 dev lo table TABLE). Idempotent, and
// never takes over what is not ours: a table with other routes, or our fwmark sent to another
// table, is refused (E_NOT_OURS) instead of replaced; remove() deletes only our exact rule and route.
import { ApnsProxyError } from '../core/errors.js';
import type { PolicyRouting, RoutingSpec } from '../sync/controller.js';

export type IpExec = (args: string[]) => Promise<{ stdout: string; stderr: string; exitCode: number }>;

export type { PolicyRouting, RoutingSpec };

type Json = Record<string, unknown>;

const hex = (mark: number) => `0x${mark.toString(16)}`;

/** `ip -N -j -4 rule show`: -N prints table ids as numbers even when rt_tables names them. */
export const RULES_ARGS = ['-N', '-j', '-4', 'rule', 'show'];

export const routesArgs = (table: number) => ['-j', '-4', 'route', 'show', 'table', String(table)];

/** The kernel creates a table with its first route: a table that does not exist is empty. */
export function routesOutput(r: { stdout: string; stderr: string; exitCode: number }, table: number): string {
  if (r.exitCode === 0) return r.stdout;
  if (/table does not exist/i.test(r.stderr)) return '[]';
  throw new ApnsProxyError('E_ROUTING', `ip ${routesArgs(table).join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
}

function parseList(json: string, what: string): Json[] {
  let v: unknown;
  try {
    v = JSON.parse(json.trim() || '[]');
  } catch {
    throw new ApnsProxyError('E_ROUTING', `ip printed ${what} JSON we cannot parse: ${json.slice(0, 80)}`);
  }
  if (!Array.isArray(v)) throw new ApnsProxyError('E_ROUTING', `ip printed ${what} JSON that is not a list: ${json.slice(0, 80)}`);
  return v.filter((x): x is Json => typeof x === 'object' && x !== null);
}

/**
 * Exactly our route: `local default dev lo`, in whatever spelling ip prints (dst "default" or
 * "0.0.0.0/0", scope host or none, protocol boot or none). Any other attribute makes it foreign.
 */
export function isOurRoute(r: Json): boolean {
  for (const [key, v] of Object.entries(r)) {
    const fine =
      key === 'type' ? v === 'local' :
      key === 'dst' ? v === 'default' || v === '0.0.0.0/0' :
      key === 'dev' ? v === 'lo' :
      key === 'scope' ? v === 'host' :
      key === 'protocol' ? v === 'boot' :
      key === 'flags' ? Array.isArray(v) && v.length === 0 :
      false;
    if (!fine) return false;
  }
  return r.type === 'local' && r.dst !== undefined && r.dev === 'lo';
}

/** A route as `ip route` would print it, for messages. */
export function formatRoute(r: Json): string {
  const parts: string[] = [];
  if (r.type !== undefined && r.type !== 'unicast') parts.push(String(r.type));
  parts.push(String(r.dst ?? '?'));
  for (const [key, v] of Object.entries(r)) {
    if (key === 'type' || key === 'dst' || key === 'flags' || v === undefined || typeof v === 'object') continue;
    parts.push(key === 'gateway' ? `via ${String(v)}` : key === 'protocol' ? `proto ${String(v)}` : `${key} ${String(v)}`);
  }
  return parts.join(' ');
}

const MASK_ALL = 0xffffffff;

/** Exactly our rule: fwmark MARK (full mask) lookup TABLE, with no other selector or action. */
export function isOurRule(r: Json, spec: RoutingSpec): boolean {
  for (const [key, v] of Object.entries(r)) {
    const fine =
      key === 'priority' ? true :
      key === 'src' ? v === 'all' :
      key === 'fwmark' ? Number(v) === spec.mark :
      key === 'fwmask' ? Number(v) === MASK_ALL :
      key === 'table' ? v === String(spec.table) :
      key === 'protocol' ? v === 'boot' :
      false;
    if (!fine) return false;
  }
  return r.fwmark !== undefined && r.table === String(spec.table);
}

/** Does this rule match packets carrying our mark (fwmark M/mask with MARK & mask == M)? */
export function takesMark(r: Json, mark: number): boolean {
  if (r.fwmark === undefined) return false;
  const mask = r.fwmask === undefined ? MASK_ALL : Number(r.fwmask);
  return ((mark & mask) >>> 0) === ((Number(r.fwmark) & mask) >>> 0);
}

/** A rule as `ip rule` would print it, for messages. */
export function formatRule(r: Json): string {
  const parts: string[] = [];
  if (r.priority !== undefined) parts.push(`priority ${String(r.priority)}`);
  if (r.not !== undefined) parts.push('not');
  if (r.src !== undefined && r.src !== 'all') parts.push(`from ${String(r.src)}${r.srclen !== undefined ? `/${String(r.srclen)}` : ''}`);
  if (r.dst !== undefined && r.dst !== 'all') parts.push(`to ${String(r.dst)}${r.dstlen !== undefined ? `/${String(r.dstlen)}` : ''}`);
  for (const [key, v] of Object.entries(r)) {
    if (['priority', 'src', 'srclen', 'dst', 'dstlen', 'not', 'table', 'action', 'fwmask'].includes(key) || typeof v === 'object') continue;
    parts.push(key === 'fwmark' && r.fwmask !== undefined ? `fwmark ${String(v)}/${String(r.fwmask)}` : `${key} ${String(v)}`);
  }
  if (r.table !== undefined) parts.push(`lookup ${String(r.table)}`);
  else if (r.action !== undefined) parts.push(String(r.action));
  return parts.join(' ');
}

export interface RoutingOwnership {
  readonly hasRule: boolean;                                        // our exact rule is there
  readonly hasRoute: boolean;                                       // our exact route is there
  readonly foreignRoutes: readonly string[];                        // other routes in our table
  readonly foreignRules: readonly { text: string; del: string }[];  // other rules taking our mark
}

/**
 * What of the fallback's routing is ours and what is someone else's. `alsoOurs` are specs we own
 * too (the running configuration during a reload, whose rule the controller removes first).
 */
export function routingOwnership(rulesJson: string, routesJson: string, spec: RoutingSpec, alsoOurs: readonly RoutingSpec[] = []): RoutingOwnership {
  const rules = parseList(rulesJson, 'rule');
  const routes = parseList(routesJson, 'route');
  const foreignRules = rules
    .filter((r) => takesMark(r, spec.mark) && !isOurRule(r, spec) && !alsoOurs.some((s) => isOurRule(r, s)))
    .map((r) => ({ text: formatRule(r), del: `ip rule del ${formatRule(r)}` }));
  return {
    hasRule: rules.some((r) => isOurRule(r, spec)),
    hasRoute: routes.some(isOurRoute),
    foreignRoutes: routes.filter((r) => !isOurRoute(r)).map(formatRoute),
    foreignRules,
  };
}

export interface OwnershipProblem { readonly key: string; readonly message: string; readonly fix: string }

/** One problem per config key whose kernel state belongs to someone else; [] when all is ours. */
export function ownershipProblems(spec: RoutingSpec, own: RoutingOwnership): OwnershipProblem[] {
  const out: OwnershipProblem[] = [];
  if (own.foreignRoutes.length > 0) {
    out.push({
      key: 'fallback.table',
      message: `routing table ${spec.table} is in use by routes that are not ours (${own.foreignRoutes.join('; ')}): apns-proxy would put its own default route (local default dev lo) in it, so it refuses to touch it`,
      fix: `set fallback.table to a table no route uses (1..252; ip route show table N prints nothing for a free one)`,
    });
  }
  if (own.foreignRules.length > 0) {
    out.push({
      key: 'fallback.mark',
      message: `ip rule ${own.foreignRules.map((r) => `"${r.text}"`).join(', ')} already matches our fwmark ${hex(spec.mark)} and is not ours (we add only "fwmark ${hex(spec.mark)} lookup ${spec.table}")`,
      fix: `set fallback.mark to a mark no ip rule uses (ip rule show), or, if it is left over from an earlier apns-proxy configuration: ${own.foreignRules.map((r) => r.del).join('; ')}`,
    });
  }
  return out;
}

export function createPolicyRouting(ip: IpExec): PolicyRouting {
  const must = async (args: string[]) => {
    const r = await ip(args);
    if (r.exitCode !== 0) throw new ApnsProxyError('E_ROUTING', `ip ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.exitCode}`}`);
    return r;
  };
  const look = async (spec: RoutingSpec) => {
    const rules = (await must(RULES_ARGS)).stdout;
    const routes = routesOutput(await ip(routesArgs(spec.table)), spec.table);
    return { rules: parseList(rules, 'rule'), own: routingOwnership(rules, routes, spec) };
  };
  return {
    async ensure(spec) {
      const { own } = await look(spec);
      const problems = ownershipProblems(spec, own);
      if (problems.length > 0) {
        throw new ApnsProxyError('E_NOT_OURS', problems.map((p) => `${p.key}: ${p.message}; fix: ${p.fix}`).join('\n'));
      }
      if (!own.hasRule) await must(['-4', 'rule', 'add', 'fwmark', hex(spec.mark), 'lookup', String(spec.table)]);
      // add, not replace: should a route appear meanwhile, the kernel refuses instead of overwriting it.
      if (!own.hasRoute) await must(['-4', 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(spec.table)]);
    },
    async remove(spec) {
      const { rules, own } = await look(spec);
      // Each copy of our exact rule by its priority (an operator may have added it twice); a bare
      // `ip rule del fwmark M lookup T` would also delete a rule with more selectors (iif, from …).
      for (const r of rules.filter((x) => isOurRule(x, spec))) {
        const at = r.priority === undefined ? [] : ['priority', String(r.priority)];
        await must(['-4', 'rule', 'del', ...at, 'fwmark', hex(spec.mark), 'lookup', String(spec.table)]);
      }
      if (own.hasRoute) await must(['-4', 'route', 'del', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(spec.table)]);
    },
  };
}
