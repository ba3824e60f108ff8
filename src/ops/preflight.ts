// Checks made before anything touches the kernel (`run`, `refresh`, `flush`, and the daemon's
// reload) and reported by `doctor`: state that is not ours is never replaced or deleted, and a
// config that clashes with this machine (VIP prefix on a local network, DNS loop) is refused.
// Pure: what the system looks like comes through PreflightProbes (real ones in doctor-probes.ts).
import { type Config, vipPrefixes } from '../core/config.js';
import type { ErrorCode } from '../core/errors.js';
import { type RoutingSpec, ownershipProblems, routingOwnership } from '../fallback/routing.js';
import { type Cidr4, cidrContains, formatHostPort, parseIPv4 } from '../core/net.js';
import type { TableOwner } from '../nft/runner.js';

export interface LocalAddress {
  readonly ifname: string;
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefixlen: number;
}

export interface PreflightProbes {
  /** NftRunner.tableOwner: is `table inet NAME` absent, ours (stamped map) or someone else's? */
  tableOwner(table: string): Promise<TableOwner>;
  /** `ip -N -j -4 rule show`. */
  ipRules(): Promise<string>;
  /** `ip -j -4 route show table N`; '[]' when the table does not exist. */
  ipRoutes(table: number): Promise<string>;
  /** Every address of every interface, up or down (`ip -j addr show`). */
  localAddresses(): Promise<LocalAddress[]>;
}

export type Check = 'nft table' | 'policy routing' | 'vip prefix' | 'dns loop';

export interface Problem {
  readonly check: Check;
  readonly code: ErrorCode;  // E_NOT_OURS: not ours to replace; E_UNSAFE: clashes with this machine
  readonly key: string;      // the config key to change
  readonly message: string;
  readonly fix: string;
}

/** One line for stderr or a log. */
export function formatProblem(p: Problem): string {
  return `${p.key}: ${p.message} [${p.code}]; fix: ${p.fix}`;
}

/** A full sync replaces `table inet NAME` wholesale and flush deletes it: only ours may be. */
export function nftTableProblems(table: string, owner: TableOwner): Problem[] {
  if (owner !== 'foreign') return [];
  return [{
    check: 'nft table', code: 'E_NOT_OURS', key: 'nft.table',
    message: `table inet ${table} exists and is not ours (it has no map couriers4 stamped "apns-proxy …"): a sync would replace it and flush would delete it, with every rule in it`,
    fix: `set nft.table to a name no other table uses (the default is "apns_proxy"; nft list tables shows the names taken)`,
  }];
}

/** Our fallback table and fwmark must be free or already ours (see fallback/routing.ts). */
export function routingProblems(spec: RoutingSpec, rulesJson: string, routesJson: string, alsoOurs: readonly RoutingSpec[] = []): Problem[] {
  return ownershipProblems(spec, routingOwnership(rulesJson, routesJson, spec, alsoOurs))
    .map((p) => ({ check: 'policy routing' as const, code: 'E_NOT_OURS' as const, ...p }));
}

/** Parses `ip -j addr show` into one entry per address. */
export function parseAddresses(json: string): LocalAddress[] {
  const links = JSON.parse(json.trim() || '[]') as { ifname?: string; addr_info?: { family?: string; local?: string; prefixlen?: number }[] }[];
  const out: LocalAddress[] = [];
  for (const link of links) {
    for (const a of link.addr_info ?? []) {
      if ((a.family !== 'inet' && a.family !== 'inet6') || typeof a.local !== 'string' || typeof a.prefixlen !== 'number') continue;
      out.push({ ifname: link.ifname ?? '?', family: a.family === 'inet' ? 4 : 6, address: a.local, prefixlen: a.prefixlen });
    }
  }
  return out;
}

const maskOf = (len: number) => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);

/** Two IPv4 networks overlap when the shorter one contains the other's first address. */
function overlaps(a: Cidr4, network: number, length: number): boolean {
  const shorter = Math.min(a.length, length);
  const m = maskOf(shorter);
  return ((a.network & m) >>> 0) === ((network & m) >>> 0);
}

/** The VIP prefix must not overlap a network of this router: its own addresses would be DNATed. */
export function vipPrefixProblems(vipPrefix: Cidr4, addresses: readonly LocalAddress[], key = 'vipPrefix'): Problem[] {
  const hits = addresses.filter((a) => {
    const addr = a.family === 4 ? parseIPv4(a.address) : undefined;
    return addr !== undefined && overlaps(vipPrefix, (addr & maskOf(a.prefixlen)) >>> 0, a.prefixlen);
  });
  if (hits.length === 0) return [];
  return [{
    check: 'vip prefix', code: 'E_UNSAFE', key,
    message: `${vipPrefix.text} overlaps ${hits.map((a) => `${a.address}/${a.prefixlen} on ${a.ifname}`).join(', ')}, a network of this router: connections to addresses there (the router's own, its neighbours') would be forwarded to couriers`,
    fix: `set ${key} to a prefix no interface uses (ip -br addr lists the networks in use), e.g. one inside 10.0.0.0/8 that is free`,
  }];
}

const WILDCARD = new Set(['0.0.0.0', '::']);

/** Is host an address this router answers on (an interface address, or anywhere in 127.0.0.0/8)? */
function isLocal(host: string, addresses: readonly LocalAddress[]): boolean {
  const v4 = parseIPv4(host);
  if (v4 !== undefined && cidrContains({ text: '127.0.0.0/8', network: 0x7f000000, length: 8, mask: 0xff000000 }, v4)) return true;
  return host === '::1' || addresses.some((a) => a.address.toLowerCase() === host.toLowerCase());
}

/** upstreamDns must not be our own DNS listener: every forwarded query would come back to us. */
export function dnsLoopProblems(config: Pick<Config, 'upstreamDns' | 'dns'>, addresses: readonly LocalAddress[]): Problem[] {
  const out: Problem[] = [];
  config.upstreamDns.forEach((up, i) => {
    const j = config.dns.listen.findIndex((l) => l.port === up.port && (
      l.host.toLowerCase() === up.host.toLowerCase() ||
      // 0.0.0.0 listens on every IPv4 address; :: on every address (dual stack)
      (WILDCARD.has(l.host) && (l.host === '::' || up.family === 4) && isLocal(up.host, addresses))));
    if (j === -1) return;
    const l = config.dns.listen[j]!;
    out.push({
      check: 'dns loop', code: 'E_UNSAFE', key: `upstreamDns[${i}]`,
      message: `${formatHostPort(up)} is our own DNS listener (dns.listen[${j}] ${formatHostPort(l)}${WILDCARD.has(l.host) ? ', every local address' : ''}): forwarded queries would loop back to us`,
      fix: 'set upstreamDns to the resolver the router itself uses (another server, or a local one on another port), not apns-proxy',
    });
  });
  return out;
}

export interface PreflightOptions {
  /** 'flush' only deletes our table (its routing removal deletes nothing but our exact rule and route). */
  readonly for: 'run' | 'flush';
  /** Routing we own already (the running configuration, during a reload). */
  readonly alsoOurs?: readonly RoutingSpec[];
}

/** Every problem that makes touching the kernel with this config unsafe; [] when none. */
export async function preflight(config: Config, p: PreflightProbes, opts: PreflightOptions): Promise<Problem[]> {
  const out = nftTableProblems(config.nft.table, await p.tableOwner(config.nft.table));
  if (opts.for === 'flush') return out;
  if (config.fallback.enabled) {
    const { mark, table } = config.fallback;
    out.push(...routingProblems({ mark, table }, await p.ipRules(), await p.ipRoutes(table), opts.alsoOurs));
  }
  const addresses = await p.localAddresses();
  // every prefix our VIPs come from: the couriers', each numbered set's, the exact-name pool
  for (const [key, prefix] of vipPrefixes(config)) out.push(...vipPrefixProblems(prefix, addresses, key));
  out.push(...dnsLoopProblems(config, addresses));
  return out;
}
