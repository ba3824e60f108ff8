// A router pair (README "Running a pair"): the pair description (pair.json) and the
// pure renderers of what ships in contrib/ha/ — keepalived.conf and conntrackd.conf for one of
// the two routers. The lab, the tests and scripts/install.sh --ha all go through these, so what
// is tested is exactly what is installed.
import { ConfigError } from '../../core/errors.js';
import { parseCidr4, parseIPv4 } from '../../core/net.js';

export type RouterName = 'a' | 'b';

export interface PairRouter {
  readonly client: { readonly interface: string; readonly address: string };    // own client-side address
  readonly upstream: { readonly interface: string; readonly address: string };  // own upstream-side address
  readonly sync: { readonly interface: string; readonly address: string };      // the dedicated sync link
  readonly priority: number;
}

export interface Pair {
  readonly routers: { readonly a: PairRouter; readonly b: PairRouter };
  /** the shared addresses keepalived moves, with their prefix length: "192.0.2.1/24" */
  readonly shared: { readonly client: string; readonly upstream: string };
  readonly vrid: { readonly client: number; readonly upstream: number };
  readonly advertInt: number;
  /** true: the higher priority router takes the addresses back when it returns (after failbackDelay s) */
  readonly failback: boolean;
  readonly failbackDelay: number;
  /** the sync link's network (conntrackd ignores its own traffic), e.g. "198.51.100.0/30" */
  readonly syncNet: string;
  readonly syncPort: number;
}

/** Where this router's files live (install defaults; the lab uses its own dir). */
export interface PairPaths {
  readonly notify: string;
  readonly conntrackdConfig: string;
  readonly conntrackdSocket: string;
  readonly conntrackdLock: string;
  readonly conntrackdLog: string;
  readonly stateFile: string;
}

export const DEFAULT_PATHS: PairPaths = {
  notify: '/etc/apns-proxy/ha/notify.sh',
  conntrackdConfig: '/etc/conntrackd/conntrackd.conf',
  conntrackdSocket: '/var/run/conntrackd.ctl',
  conntrackdLock: '/var/lock/conntrack.lock',
  conntrackdLog: '/var/log/conntrackd.log',
  stateFile: '/run/apns-proxy/ha-state',
};

/** The test address plan (README, Running a pair); also the example pair.json install.sh --ha writes. */
export const EXAMPLE_PAIR: Pair = {
  routers: {
    a: { client: { interface: 'eth0', address: '192.0.2.251' }, upstream: { interface: 'eth1', address: '203.0.113.251' }, sync: { interface: 'eth2', address: '198.51.100.1' }, priority: 250 },
    b: { client: { interface: 'eth0', address: '192.0.2.252' }, upstream: { interface: 'eth1', address: '203.0.113.252' }, sync: { interface: 'eth2', address: '198.51.100.2' }, priority: 240 },
  },
  shared: { client: '192.0.2.1/24', upstream: '203.0.113.1/24' },
  vrid: { client: 51, upstream: 52 },
  advertInt: 1,
  failback: true,
  failbackDelay: 10,
  syncNet: '198.51.100.0/30',
  syncPort: 3780,
};

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function obj(v: unknown, key: string, known: readonly string[]): Obj {
  if (!isObj(v)) throw new ConfigError(key, v, 'must be an object');
  for (const k of Object.keys(v)) if (!known.includes(k)) throw new ConfigError(`${key}.${k}`, v[k], `unknown key (known here: ${known.join(', ')})`);
  for (const k of known) if (v[k] === undefined) throw new ConfigError(`${key}.${k}`, undefined, 'is required');
  return v;
}
function ipv4(v: unknown, key: string): string {
  if (typeof v !== 'string' || parseIPv4(v) === undefined) throw new ConfigError(key, v, 'must be an IPv4 address');
  return v;
}
function ifname(v: unknown, key: string): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_.@-]{1,15}$/.test(v)) throw new ConfigError(key, v, 'must be an interface name');
  return v;
}
function int(v: unknown, key: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ConfigError(key, v, `must be an integer in ${min}..${max}`);
  return v;
}
function hostCidr(v: unknown, key: string): string {
  const m = typeof v === 'string' ? /^([0-9.]+)\/(\d{1,2})$/.exec(v) : null;
  if (!m || parseIPv4(m[1]!) === undefined || Number(m[2]) > 32) throw new ConfigError(key, v, 'must be an address with its prefix length, like 192.0.2.1/24');
  return v as string;
}

/** Validates pair.json (every key required; the example above shows them all). Throws ConfigError. */
export function parsePair(raw: unknown): Pair {
  const top = obj(raw, 'pair', ['routers', 'shared', 'vrid', 'advertInt', 'failback', 'failbackDelay', 'syncNet', 'syncPort']);
  const rs = obj(top['routers'], 'pair.routers', ['a', 'b']);
  const router = (name: RouterName): PairRouter => {
    const key = `pair.routers.${name}`;
    const r = obj(rs[name], key, ['client', 'upstream', 'sync', 'priority']);
    const side = (s: 'client' | 'upstream' | 'sync') => {
      const o = obj(r[s], `${key}.${s}`, ['interface', 'address']);
      return { interface: ifname(o['interface'], `${key}.${s}.interface`), address: ipv4(o['address'], `${key}.${s}.address`) };
    };
    return { client: side('client'), upstream: side('upstream'), sync: side('sync'), priority: int(r['priority'], `${key}.priority`, 1, 254) };
  };
  const a = router('a');
  const b = router('b');
  if (a.priority === b.priority) throw new ConfigError('pair.routers.b.priority', b.priority, 'must differ from router a\'s: the priorities decide which router is primary');
  const sh = obj(top['shared'], 'pair.shared', ['client', 'upstream']);
  const vr = obj(top['vrid'], 'pair.vrid', ['client', 'upstream']);
  const vrid = { client: int(vr['client'], 'pair.vrid.client', 1, 255), upstream: int(vr['upstream'], 'pair.vrid.upstream', 1, 255) };
  if (vrid.client === vrid.upstream) throw new ConfigError('pair.vrid.upstream', vrid.upstream, 'must differ from pair.vrid.client');
  if (typeof top['failback'] !== 'boolean') throw new ConfigError('pair.failback', top['failback'], 'must be true or false');
  const syncNet = top['syncNet'];
  if (typeof syncNet !== 'string' || typeof parseCidr4(syncNet) === 'string') throw new ConfigError('pair.syncNet', syncNet, 'must be an IPv4 network like 198.51.100.0/30');
  return {
    routers: { a, b },
    shared: { client: hostCidr(sh['client'], 'pair.shared.client'), upstream: hostCidr(sh['upstream'], 'pair.shared.upstream') },
    vrid,
    advertInt: int(top['advertInt'], 'pair.advertInt', 1, 255),
    failback: top['failback'],
    failbackDelay: int(top['failbackDelay'], 'pair.failbackDelay', 0, 1000),
    syncNet,
    syncPort: int(top['syncPort'], 'pair.syncPort', 1, 65535),
  };
}

/** The shared upstream-side address without its prefix: what nft.snat must be. */
export function sharedAddress(cidr: string): string {
  return cidr.split('/')[0]!;
}

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`ha template: unknown placeholder {{${name}}}`);
    return v;
  });
}

const peerOf = (r: RouterName): RouterName => (r === 'a' ? 'b' : 'a');

/** keepalived.conf for router `self` from contrib/ha/keepalived.conf.in. */
export function renderKeepalived(template: string, pair: Pair, self: RouterName, paths: PairPaths = DEFAULT_PATHS): string {
  const me = pair.routers[self];
  const peer = pair.routers[peerOf(self)];
  // preempt_delay: a returning primary first gets the connection table back (notify backup:
  // conntrackd -n), then takes the addresses. nopreempt: the addresses stay where they are.
  const preempt = pair.failback ? `preempt_delay ${pair.failbackDelay}` : 'nopreempt';
  return fill(template, {
    routerId: `apns_proxy_${self}`,
    notify: paths.notify, conntrackdConfig: paths.conntrackdConfig, stateFile: paths.stateFile,
    clientInterface: me.client.interface, upstreamInterface: me.upstream.interface,
    clientAddress: me.client.address, upstreamAddress: me.upstream.address,
    peerClientAddress: peer.client.address, peerUpstreamAddress: peer.upstream.address,
    vridClient: String(pair.vrid.client), vridUpstream: String(pair.vrid.upstream),
    priority: String(me.priority), advertInt: String(pair.advertInt), preempt,
    sharedClient: pair.shared.client, sharedUpstream: pair.shared.upstream,
  });
}

/** conntrackd.conf for router `self` from contrib/ha/conntrackd.conf.in. */
export function renderConntrackd(template: string, pair: Pair, self: RouterName, paths: PairPaths = DEFAULT_PATHS): string {
  const me = pair.routers[self];
  const peer = pair.routers[peerOf(self)];
  // The routers' own and shared addresses: their own connections are not synced. Proxied flows
  // never have one of these as a source (device -> courier, courier -> device).
  const ignore = [pair.syncNet, me.client.address, me.upstream.address, peer.client.address, peer.upstream.address,
    sharedAddress(pair.shared.client), sharedAddress(pair.shared.upstream)];
  return fill(template, {
    syncAddress: me.sync.address, peerSyncAddress: peer.sync.address, syncInterface: me.sync.interface,
    syncPort: String(pair.syncPort),
    logFile: paths.conntrackdLog, lockFile: paths.conntrackdLock, socketPath: paths.conntrackdSocket,
    ignoreAddresses: [...new Set(ignore)].map((a) => `\t\t\tIPv4_address ${a}`).join('\n'),
  });
}

/**
 * The apns-proxy config keys a pair needs on both routers (merged into config.json): source NAT to
 * the shared upstream-side address, DNS on the shared client-side address and on both routers' own
 * addresses (ip_nonlocal_bind lets each router bind all three; each answers on those it holds).
 */
export function pairConfigKeys(pair: Pair, paths: PairPaths = DEFAULT_PATHS, dnsPort = 53): { nft: { snat: string }; dns: { listen: string[] }; ha: { enabled: true; conntrackdConfig: string; stateFile: string } } {
  return {
    nft: { snat: sharedAddress(pair.shared.upstream) },
    dns: { listen: [sharedAddress(pair.shared.client), pair.routers.a.client.address, pair.routers.b.client.address].map((a) => `${a}:${dnsPort}`) },
    ha: { enabled: true, conntrackdConfig: paths.conntrackdConfig, stateFile: paths.stateFile },
  };
}
