// `apns-proxy doctor` (pure): turns what the probes saw into findings, each problem with the
// command that fixes it. The probes (real ones in doctor-probes.ts) are injected.
import type { Config } from '../core/config.js';
import { courierName } from '../core/couriers.js';
import { vipPrefixes } from '../core/config.js';
import { errorMessage } from '../core/errors.js';
import { routingOwnership } from '../fallback/routing.js';
import { formatHostPort, type HostPort } from '../core/net.js';
import { type LocalAddress, type PreflightProbes, dnsLoopProblems, nftTableProblems, routingProblems, vipPrefixProblems } from './preflight.js';
import type { Resolution } from '../dns/client/resolver.js';
import { type PairProbes, pairFindings } from './ha/doctor.js';

export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  readonly check: string;
  readonly level: Level;
  readonly message: string;
  readonly fix?: string;
}

/** The preflight's probes (nft table owner, ip rules and routes, local addresses), and more. */
export interface DoctorProbes extends PreflightProbes {
  /** `nft -c -f -` of a script: null when the kernel would accept it, else nft's error. */
  nftCheck(script: string): Promise<string | null>;
  /** A sysctl's value, null when it does not exist (module not loaded). */
  sysctl(key: string): Promise<string | null>;
  /** `nft -j list ruleset`. */
  nftRuleset(): Promise<string>;
  /** Can we bind this address for UDP and TCP right now? */
  bindable(hp: HostPort): Promise<'free' | 'in-use' | 'denied' | 'not-local'>;
  /** Does a daemon answer on the control socket? */
  daemonRunning(): Promise<boolean>;
  resolve(server: HostPort, name: string): Promise<Resolution>;
  /** null when the native helper loads, else why not. */
  native(): string | null;
  /** a router pair's probes (config ha.enabled), src/ops/ha/doctor.ts */
  pair?: PairProbes;
}

export interface DoctorOptions { readonly devices: number }

/** Each kernel feature the ruleset uses, checked alone so a failure names the missing piece. */
export const FEATURES: readonly { name: string; modules: string; chain: string; elements?: boolean }[] = [
  { name: 'nat + numgen map (the DNAT hot path)', modules: 'nft_nat nft_numgen', chain: 'type nat hook prerouting priority dstnat; policy accept; ip daddr 198.18.100.0/24 tcp dport 5223 dnat ip to ip daddr . numgen random mod 8 map @m' },
  {
    name: 'vipports set lookup, map counters and element comments', modules: 'nft_nat nft_numgen nft_counter', elements: true,
    chain: 'type nat hook prerouting priority dstnat; policy accept; ip daddr . meta l4proto . th dport @vipports dnat ip to ip daddr . numgen random mod 8 map @m',
  },
  { name: 'masquerade', modules: 'nft_masq', chain: 'type nat hook postrouting priority srcnat; policy accept; ct status dnat ct original ip daddr @vips masquerade' },
  { name: 'tproxy (the fallback)', modules: 'nft_tproxy', chain: 'type filter hook prerouting priority dstnat + 10; policy accept; meta l4proto tcp ip daddr . meta l4proto . th dport @vipports tproxy ip to 127.0.0.1:15223 accept' },
  {
    name: 'direct connections (ct mark, reject with tcp reset, interval set)', modules: 'nft_ct nft_reject_inet',
    chain: 'type filter hook forward priority filter - 5; policy accept; ct status dnat accept; ct state established,related accept; ct state new ip daddr . meta l4proto . th dport @vipports ct mark set ct mark | 0x20000000 accept; ct state new ip daddr @upstream tcp dport 5223 reject with tcp reset',
  },
  { name: 'socket transparent (the fallback)', modules: 'nft_socket', chain: 'type filter hook prerouting priority dstnat + 10; policy accept; ct status dnat accept; ip daddr != @vips accept; meta l4proto tcp socket transparent 1 meta mark set 0x2a accept' },
];

/** The feature's chain in a table shaped like ours (the map with counters, the vipports and vips sets); `elements`: with commented elements too. */
export function featureScript(chain: string, elements = false): string {
  const body = chain.split('; ').join('\n\t\t');
  const table = 'table inet apns_proxy_doctor {\n\tmap m {\n\t\ttypeof ip daddr . numgen random mod 8 : ip daddr\n\t\tcounter\n\t}\n' +
    '\tset vipports {\n\t\ttypeof ip daddr . meta l4proto . th dport\n\t}\n\tset vips {\n\t\ttypeof ip daddr\n\t}\n' +
    '\tset upstream {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 198.18.0.0/15 }\n\t}\n' +
    `\tchain c {\n\t\t${body}\n\t}\n}\n`;
  if (!elements) return table;
  return `${table}add element inet apns_proxy_doctor vipports { 198.18.100.5 . tcp . 5223, 198.18.102.1 . udp . 123 }\n` +
    'add element inet apns_proxy_doctor vips { 198.18.100.5 }\n' +
    'add element inet apns_proxy_doctor m { 198.18.100.5 . 0 comment "5-courier.push.apple.com" : 203.0.113.10 }\n';
}

interface NftChainJson { chain?: { family: string; table: string; name: string; hook?: string; policy?: string } }
interface NftRuleJson { rule?: { family: string; table: string; chain: string; expr?: unknown[] } }

/** Chains hooked at forward with policy drop, in tables other than ours, with no rule `accepts` approves. */
function droppingForwardChainsWithout(rulesetJson: string, ourTable: string, accepts: (exprJson: string) => boolean): string[] {
  const items = (JSON.parse(rulesetJson || '{"nftables":[]}') as { nftables?: (NftChainJson & NftRuleJson)[] }).nftables ?? [];
  const out: string[] = [];
  for (const { chain } of items) {
    if (!chain || chain.hook !== 'forward' || chain.policy !== 'drop' || chain.table === ourTable) continue;
    const accepted = items.some(({ rule }) => rule !== undefined && rule.family === chain.family && rule.table === chain.table &&
      rule.chain === chain.name && accepts(JSON.stringify(rule.expr ?? [])));
    if (!accepted) out.push(`${chain.family} ${chain.table} ${chain.name}`);
  }
  return out;
}

/** Chains hooked at forward with policy drop, in tables other than ours, lacking a `ct status dnat` accept. */
export function droppingForwardChains(rulesetJson: string, ourTable: string): string[] {
  return droppingForwardChainsWithout(rulesetJson, ourTable,
    (text) => /"ct":\{"key":"status"\}/.test(text) && /"dnat"/.test(text) && /"accept":null/.test(text));
}

/**
 * Chains hooked at forward with policy drop, in tables other than ours, with no rule that accepts
 * conntrack entries carrying the direct mark bits (`ct mark & MARK == MARK accept`): they would drop
 * the direct connections our forward chain accepted and marked.
 */
export function droppingDirectChains(rulesetJson: string, ourTable: string, mark: number): string[] {
  return droppingForwardChainsWithout(rulesetJson, ourTable,
    (text) => /"ct":\{"key":"mark"\}/.test(text) && new RegExp(`[\\[,:]${mark}[\\],}]`).test(text) && /"accept":null/.test(text));
}

export async function runDoctor(config: Config, p: DoctorProbes, opts: DoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const add = (check: string, level: Level, message: string, fix?: string) => out.push({ check, level, message, ...(fix ? { fix } : {}) });

  // Kernel features, one by one so the message names what is missing.
  const missing: { name: string; modules: string; error: string }[] = [];
  for (const f of FEATURES) {
    if (!config.fallback.enabled && f.modules.match(/tproxy|socket/)) continue;
    if ((!config.nft.masquerade || config.nft.snat !== null) && f.modules === 'nft_masq') continue;
    const err = await p.nftCheck(featureScript(f.chain, f.elements));
    if (err !== null) missing.push({ ...f, error: err.split('\n')[0] ?? err });
  }
  if (missing.length === 0) add('nftables', 'ok', 'nf_tables accepts every expression the ruleset uses');
  else {
    add('nftables', 'fail', `the kernel refuses: ${missing.map((m) => `${m.name} (${m.error})`).join('; ')}`,
      `modprobe -a ${missing.map((m) => m.modules).join(' ')}  # or install a kernel with these nftables modules`);
  }

  // What `run` refuses (preflight.ts), so an operator sees it before starting the service.
  const probe = async <T>(check: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (err) {
      add(check, 'warn', `could not check: ${errorMessage(err)}`);
      return undefined;
    }
  };
  const owner = await probe('nft table', () => p.tableOwner(config.nft.table));
  if (owner !== undefined) {
    const problems = nftTableProblems(config.nft.table, owner);
    for (const x of problems) add('nft table', 'fail', `${x.key}: ${x.message}`, x.fix);
    if (problems.length === 0) add('nft table', 'ok', `table inet ${config.nft.table} is ${owner === 'ours' ? 'ours' : 'not there yet (the first sync creates it)'}`);
  }
  const addresses = await probe<LocalAddress[]>('vip prefix', () => p.localAddresses());
  if (addresses !== undefined) {
    const prefixes = vipPrefixes(config);
    const vip = prefixes.flatMap(([key, prefix]) => vipPrefixProblems(prefix, addresses, key));
    for (const x of vip) add('vip prefix', 'fail', `${x.key}: ${x.message}`, x.fix);
    if (vip.length === 0) add('vip prefix', 'ok', `${prefixes.map(([, p]) => p.text).join(', ')} overlap no network of this router`);
    const loops = dnsLoopProblems(config, addresses);
    for (const x of loops) add('dns loop', 'fail', `${x.key}: ${x.message}`, x.fix);
    if (loops.length === 0) add('dns loop', 'ok', 'no upstreamDns server is our own DNS listener');
  }

  const fwd = await p.sysctl('net.ipv4.ip_forward');
  if (fwd === '1') add('ip_forward', 'ok', 'net.ipv4.ip_forward = 1');
  else add('ip_forward', 'fail', `net.ipv4.ip_forward = ${fwd ?? 'unknown'}: this router does not forward, no courier is reachable`,
    'sysctl -w net.ipv4.ip_forward=1 && echo net.ipv4.ip_forward=1 > /etc/sysctl.d/90-apns-proxy-forward.conf');

  const max = await p.sysctl('net.netfilter.nf_conntrack_max');
  const want = opts.devices * 2;  // one long-lived APNs connection per device, plus everything else the router tracks
  if (max === null) add('conntrack', 'warn', 'nf_conntrack is not loaded yet (it loads with the first NAT rule): run doctor again after apns-proxy refresh');
  else if (Number(max) < want) {
    add('conntrack', 'warn', `nf_conntrack_max = ${max}, below ${want} for ${opts.devices} devices (one idle connection each, plus other traffic)`,
      `sysctl -w net.netfilter.nf_conntrack_max=${opts.devices * 4}  # and persist it in /etc/sysctl.d/`);
  } else add('conntrack', 'ok', `nf_conntrack_max = ${max} (enough for ${opts.devices} devices)`);

  if (config.fallback.enabled) {
    const { mark, table } = config.fallback;
    const hex = `0x${mark.toString(16)}`;
    const seen = await probe('policy routing', async () => ({ rules: await p.ipRules(), routes: await p.ipRoutes(table) }));
    if (seen !== undefined) {
      const foreign = routingProblems({ mark, table }, seen.rules, seen.routes);
      const { hasRule: rule, hasRoute: route } = routingOwnership(seen.rules, seen.routes, { mark, table });
      for (const x of foreign) add('policy routing', 'fail', `${x.key}: ${x.message}`, x.fix);
      if (foreign.length === 0 && rule && route) add('policy routing', 'ok', `fwmark ${hex} → table ${table} → local via lo (the fallback's TPROXY path)`);
      else if (foreign.length === 0) {
        add('policy routing', 'warn', `missing ${[rule ? '' : `ip rule fwmark ${hex} lookup ${table}`, route ? '' : `local route in table ${table}`].filter(Boolean).join(' and ')}: the fallback cannot receive connections (apns-proxy refresh or run installs them)`,
          [rule ? '' : `ip rule add fwmark ${hex} lookup ${table}`, route ? '' : `ip route add local 0.0.0.0/0 dev lo table ${table}`].filter(Boolean).join('; '));
      }
    }
    const native = p.native();
    if (native === null) add('fallback helper', 'ok', 'the native helper (transparent listener, relay) loads');
    else add('fallback helper', 'fail', native, 'npm run build:native  # needs python3, make, g++');
  }

  const ruleset = await p.nftRuleset();
  const dropping = droppingForwardChains(ruleset, config.nft.table);
  if (dropping.length === 0) add('forward chain', 'ok', 'no forward chain drops DNATed flows');
  else {
    add('forward chain', 'fail', `forward chain(s) with policy drop and no "ct status dnat accept": ${dropping.join(', ')}; forwarded courier connections will be dropped`,
      dropping.map((c) => `nft insert rule ${c} ct status dnat accept`).join('; '));
  }
  const { direct } = config;
  const hexMark = `0x${direct.mark.toString(16)}`;
  const resets = [direct.reset5223 ? '5223' : '', direct.reset443 ? '443' : ''].filter(Boolean).join(' and ');
  const resetText = resets ? `; other new connections to allowedUpstreamNets on ${resets} are reset` : '; nothing is reset (direct.reset5223 and direct.reset443 off)';
  if (!direct.forward) {
    add('direct', 'ok', `direct.forward off: direct connections to mapped addresses are left to this router's own forwarding${resetText}`);
  } else {
    const droppingDirect = droppingDirectChains(ruleset, config.nft.table, direct.mark);
    if (droppingDirect.length === 0) add('direct', 'ok', `direct connections to mapped addresses are forwarded (ct mark ${hexMark}) and no forward chain drops them${resetText}`);
    else {
      add('direct', 'fail', `forward chain(s) with policy drop and no "ct mark & ${hexMark} == ${hexMark} accept": ${droppingDirect.join(', ')}; devices that connect to a courier address directly will be dropped`,
        droppingDirect.map((c) => `nft insert rule ${c} ct mark and ${hexMark} == ${hexMark} accept`).join('; '));
    }
  }

  for (const hp of config.dns.listen) {
    const where = formatHostPort(hp);
    const state = await p.bindable(hp);
    if (state === 'free') add('dns port', 'ok', `${where} is free for the DNS server`);
    else if (state === 'in-use' && await p.daemonRunning()) add('dns port', 'ok', `${where} is in use by the running apns-proxy`);
    else if (state === 'in-use') {
      add('dns port', 'fail', `${where} is taken by another program (systemd-resolved's stub listener, dnsmasq, unbound?)`,
        `ss -lntup 'sport = :${hp.port}'  # find it; for systemd-resolved set DNSStubListener=no in /etc/systemd/resolved.conf`);
    } else if (state === 'not-local') {
      add('dns port', 'fail', `${hp.host} is not an address of this router`, `ip -br addr  # pick one of these for dns.listen, or 0.0.0.0`);
    } else add('dns port', 'fail', `cannot bind ${where}: permission denied`, 'run as root or with CAP_NET_BIND_SERVICE (the systemd unit grants it)');
  }

  const name = courierName(config.couriers.template, config.couriers.first);
  for (const server of config.upstreamDns) {
    const r = await p.resolve(server, name);
    const where = formatHostPort(server);
    if (r.kind === 'error') {
      add('upstream dns', 'fail', `${where} gave no usable answer for ${name}: ${r.code}: ${r.message}`,
        `check that this router reaches ${server.host} on port ${server.port} (UDP and TCP): dig @${server.host} -p ${server.port} ${name}`);
    } else {
      add('upstream dns', 'ok', `${where} answers ${name}: ${r.kind === 'ok' ? r.addresses.join(',') : r.kind.toUpperCase()}`);
    }
  }
  if (config.ha.enabled) {
    if (p.pair) out.push(...await pairFindings(config, p.pair));
    else add('pair', 'warn', 'ha.enabled, but the pair could not be checked here');
  }
  return out;
}

export function formatFindings(findings: readonly Finding[]): string {
  const label: Record<Level, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  const lines = findings.flatMap((f) => [`${label[f.level]}  ${f.check}: ${f.message}`, ...(f.fix ? [`      fix: ${f.fix}`] : [])]);
  const fails = findings.filter((f) => f.level === 'fail').length;
  const warns = findings.filter((f) => f.level === 'warn').length;
  lines.push(fails ? `${fails} problem(s), ${warns} warning(s)` : warns ? `no problems, ${warns} warning(s)` : 'no problems');
  return `${lines.join('\n')}\n`;
}
