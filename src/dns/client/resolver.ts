// Resolves courier names to IPv4 addresses with our own DNS client: CNAME chains, TTLs,
// and a clear line between "does not exist" (final) and "could not find out" (try the next server).
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ApnsProxyError, errorMessage, show, type ErrorCode } from '../../core/errors.js';
import { formatHostPort, parseIPv4, sortUniqueIPv4, type HostPort } from '../../core/net.js';
import { canonicalName, dnsNameProblem, exchange, type DecodedReply } from './exchange.js';

export type Resolution =
  | { kind: 'ok'; addresses: string[]; ttl: number; chain: string[] }
  | { kind: 'nxdomain'; chain: string[] }
  | { kind: 'nodata'; chain: string[] }
  | { kind: 'error'; code: ErrorCode; message: string };

export interface QueryEvent {
  name: string;
  server: string;
  transport: 'udp' | 'tcp' | undefined;  // undefined when no reply was accepted
  outcome: string;                        // the reply's rcode, or the error code
  ms: number;                             // whole milliseconds
}

export interface ResolverOptions {
  servers: readonly HostPort[];  // tried in order: next server on any 'error'; nxdomain/nodata/ok are final
  timeoutMs: number;             // per server attempt (per query of a chain)
  maxChain?: number;             // CNAME hops, default 8
  exchange?: typeof exchange;
  onQuery?: (event: QueryEvent) => void;
}

export interface Resolver {
  resolveA(name: string): Promise<Resolution>;
  resolveMany(names: readonly string[], concurrency: number): Promise<Map<string, Resolution>>;
}

export const DEFAULT_MAX_CHAIN = 8;
const MAX_MAX_CHAIN = 64;
const MAX_TIMEOUT_MS = 2_147_483_647;

type Found = Exclude<Resolution, { kind: 'error' }>;

export function createResolver(opts: ResolverOptions): Resolver {
  const { servers, timeoutMs, maxChain, query, onQuery } = checkOptions(opts);
  const serverList = servers.map(formatHostPort).join(', ');

  function report(event: QueryEvent): void {
    try {
      onQuery?.(event);
    } catch {
      // a failing debug hook must not fail a resolution
    }
  }

  async function ask(server: HostPort, name: string): Promise<DecodedReply> {
    const started = performance.now();
    const event = { name, server: formatHostPort(server) };
    try {
      const result = await query(server, { name, type: 'A' }, { timeoutMs });
      const rcode = result.response.rcode;
      report({ ...event, transport: result.transport, outcome: rcode, ms: Math.round(performance.now() - started) });
      return result.response;
    } catch (err) {
      const e = asProxyError(err);
      report({ ...event, transport: undefined, outcome: e.code, ms: Math.round(performance.now() - started) });
      throw e;
    }
  }

  /** The whole chain against one server; throws ApnsProxyError on anything that is not an answer. */
  async function resolveVia(server: HostPort, name: string): Promise<Found> {
    const chain = [canonicalName(name)];
    let ttl = Number.MAX_SAFE_INTEGER;
    for (;;) {
      const asked = chain[chain.length - 1]!;
      const reply = await ask(server, asked);
      const where = `${formatHostPort(server)} for ${asked}`;
      switch (reply.rcode) {
        case 'NOERROR': case 'NXDOMAIN': break;
        case 'SERVFAIL': throw new ApnsProxyError('E_SERVFAIL', `${where}: SERVFAIL`);
        case 'REFUSED': throw new ApnsProxyError('E_REFUSED', `${where}: REFUSED`);
        default: throw new ApnsProxyError('E_RCODE', `${where}: rcode ${reply.rcode}`);
      }
      const { aliases, addresses } = indexAnswers(reply, where);
      // follow CNAMEs in whatever order the records came
      for (let alias = aliases.get(asked); alias; alias = aliases.get(alias.target)) {
        if (chain.includes(alias.target)) {
          throw new ApnsProxyError('E_CNAME_LOOP', `${where}: CNAME loop ${[...chain, alias.target].join(' -> ')}`);
        }
        if (chain.length > maxChain) throw chainTooLong(where, chain, aliases, addresses, maxChain);
        chain.push(alias.target);
        ttl = Math.min(ttl, alias.ttl);
      }
      const end = chain[chain.length - 1]!;
      // RFC 6604: with CNAMEs, NXDOMAIN speaks about the last name of the chain
      if (reply.rcode === 'NXDOMAIN') return { kind: 'nxdomain', chain };
      // only A records owned by the chain's end count: anything else in the answer is ignored
      const found = addresses.get(end);
      if (found) {
        for (const a of found) ttl = Math.min(ttl, a.ttl);
        return { kind: 'ok', addresses: sortUniqueIPv4(found.map((a) => a.address)), ttl, chain };
      }
      if (end === asked) return { kind: 'nodata', chain };
      // the chain stops mid-way in this answer: ask for its end (not every resolver sends the whole chain)
      const problem = dnsNameProblem(end);
      if (problem) throw new ApnsProxyError('E_MALFORMED', `${where}: CNAME target ${show(end)} is invalid: ${problem}`);
    }
  }

  async function resolveA(name: string): Promise<Resolution> {
    const problem = dnsNameProblem(name);
    if (problem) return { kind: 'error', code: 'E_MALFORMED', message: `resolve ${show(name)}: invalid name: ${problem}` };
    let last: ApnsProxyError | undefined;
    for (const server of servers) {
      try {
        return await resolveVia(server, name);
      } catch (err) {
        last = asProxyError(err);
      }
    }
    const code = last?.code ?? 'E_NETWORK';
    return { kind: 'error', code, message: `resolve ${name} A: no usable answer from ${serverList}; last: ${last?.message}` };
  }

  async function resolveMany(names: readonly string[], concurrency: number): Promise<Map<string, Resolution>> {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`resolveMany: concurrency must be a positive integer, got ${show(concurrency)}`);
    }
    const unique = [...new Set(names)];
    const results = new Map<string, Resolution>();
    let next = 0;
    // a small worker pool: at most `concurrency` resolutions in flight
    const worker = async (): Promise<void> => {
      while (next < unique.length) {
        const name = unique[next++]!;
        results.set(name, await resolveA(name));
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, unique.length) }, worker));
    return new Map(unique.map((name) => [name, results.get(name)!]));
  }

  return { resolveA, resolveMany };
}

interface Alias { target: string; ttl: number }
interface Address { address: string; ttl: number }

/** CNAMEs by owner and A records by owner, names canonical; conflicting CNAMEs make no sense. */
function indexAnswers(reply: DecodedReply, where: string): { aliases: Map<string, Alias>; addresses: Map<string, Address[]> } {
  const aliases = new Map<string, Alias>();
  const addresses = new Map<string, Address[]>();
  for (const record of reply.answers ?? []) {
    if (record.type === 'OPT' || (record.class ?? 'IN') !== 'IN') continue;
    const owner = canonicalName(record.name);
    const ttl = rfc2181Ttl(record.ttl);
    if (record.type === 'CNAME' && typeof record.data === 'string') {
      const target = canonicalName(record.data);
      const seen = aliases.get(owner);
      if (seen && seen.target !== target) {
        throw new ApnsProxyError('E_MALFORMED', `${where}: ${owner} has two CNAMEs (${seen.target}, ${target})`);
      }
      aliases.set(owner, { target, ttl: Math.min(ttl, seen?.ttl ?? ttl) });
    } else if (record.type === 'A' && typeof record.data === 'string' && parseIPv4(record.data) !== undefined) {
      const list = addresses.get(owner) ?? [];
      list.push({ address: record.data, ttl });
      addresses.set(owner, list);
    }
  }
  return { aliases, addresses };
}

/**
 * The error for a chain at the hop limit: E_CNAME_LONG with the hops this answer shows (exact when
 * it ends in A records here, else a lower bound), or E_CNAME_LOOP if it loops further on.
 */
function chainTooLong(where: string, chain: readonly string[], aliases: Map<string, Alias>, addresses: Map<string, Address[]>, maxChain: number): ApnsProxyError {
  const seen = [...chain];
  // each step adds a name not seen yet, taken from `aliases`: at most aliases.size steps
  for (let alias = aliases.get(seen[seen.length - 1]!); alias; alias = aliases.get(alias.target)) {
    if (seen.includes(alias.target)) return new ApnsProxyError('E_CNAME_LOOP', `${where}: CNAME loop ${[...seen, alias.target].join(' -> ')}`);
    seen.push(alias.target);
  }
  const hops = seen.length - 1;
  const exact = addresses.has(seen[seen.length - 1]!);
  return new ApnsProxyError('E_CNAME_LONG', `${where}: CNAME chain too long: ${exact ? '' : 'at least '}${hops} hops from ${chain[0]}, the limit is ${maxChain}`);
}

/** RFC 2181 8: a TTL with the top bit set is treated as zero. */
function rfc2181Ttl(ttl: number | undefined): number {
  return ttl === undefined || ttl > 0x7fffffff ? 0 : ttl;
}

function asProxyError(err: unknown): ApnsProxyError {
  if (err instanceof ApnsProxyError) return err;
  return new ApnsProxyError('E_NETWORK', errorMessage(err), { cause: err });
}

function checkOptions(opts: ResolverOptions): {
  servers: readonly HostPort[]; timeoutMs: number; maxChain: number; query: typeof exchange; onQuery: ResolverOptions['onQuery'];
} {
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`resolver: options must be an object, got ${show(opts)}`);
  const { servers, timeoutMs, maxChain = DEFAULT_MAX_CHAIN, exchange: query = exchange, onQuery } = opts;
  if (!Array.isArray(servers) || servers.length === 0) {
    throw new TypeError(`resolver: servers must be a non-empty array, got ${show(servers)}`);
  }
  servers.forEach((s: HostPort, i: number) => {
    const ok = typeof s === 'object' && s !== null && (s.family === 4 || s.family === 6) && isIP(s.host) === s.family && Number.isInteger(s.port) && s.port >= 1 && s.port <= 65535;
    if (!ok) throw new TypeError(`resolver: servers[${i}] must be {host, port, family}, got ${show(s)}`);
  });
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw new RangeError(`resolver: timeoutMs must be a positive integer of milliseconds, got ${show(timeoutMs)}`);
  }
  if (!Number.isInteger(maxChain) || maxChain < 1 || maxChain > MAX_MAX_CHAIN) {
    throw new RangeError(`resolver: maxChain must be an integer from 1 to ${MAX_MAX_CHAIN}, got ${show(maxChain)}`);
  }
  if (typeof query !== 'function') throw new TypeError(`resolver: exchange must be a function, got ${show(query)}`);
  if (onQuery !== undefined && typeof onQuery !== 'function') {
    throw new TypeError(`resolver: onQuery must be a function, got ${show(onQuery)}`);
  }
  return { servers: [...servers], timeoutMs, maxChain, query, onQuery };
}
