// The one place that talks to nft: scripts go in on stdin (`nft -f -`, one atomic transaction).
import { ApnsProxyError } from '../core/errors.js';
import { type DirectElement, type ElementMap, type MapElement, type PortElement, elementMap } from './elements.js';
import { DIRECT_SET, MAP_NAME, PORTS_SET, STAMP_PREFIX, UPSTREAM_SET, VIPS_SET } from './render.js';

/** What is in the kernel for our table: null when the table or map does not exist. */
export interface LiveMap {
  readonly stamp: string | null;                  // the map comment written by renderRuleset
  readonly elements: ElementMap;
}

/**
 * Our whole table as one `nft -j list table` shows it: its handle, the map and every set whose
 * elements we write. A part is null when the table has no such map or set.
 */
export interface LiveTable {
  readonly handle: number | null;
  readonly map: LiveMap | null;
  readonly ports: readonly PortElement[] | null;     // vipports
  readonly vips: readonly string[] | null;
  readonly direct: readonly DirectElement[] | null;
  readonly upstream: readonly string[] | null;       // as nft spells them: "a.b.c.d", "a.b.c.d/len" or "a-b"
}

export interface NftRunner {
  /** Applies a script as one transaction; throws ApnsProxyError E_NFT and changes nothing on failure. */
  apply(script: string): Promise<void>;
  /** Reads our map back from the kernel (`nft -j list map`: the map alone, for status and counters). */
  readMap(table: string): Promise<LiveMap | null>;
  /** Reads our whole table back in one listing (null when the table does not exist): the drift check. */
  readTable(table: string): Promise<LiveTable | null>;
  /** The kernel's handle for our table (new on every re-creation), null when it does not exist. */
  tableHandle(table: string): Promise<number | null>;
  /**
   * Whose table this is: 'absent', 'ours' (its map carries our stamp comment, "apns-proxy …"), or
   * 'foreign' (a table of that name that we did not write: never to be replaced or deleted).
   */
  tableOwner(table: string): Promise<TableOwner>;
}

export type TableOwner = 'absent' | 'ours' | 'foreign';


export type Exec = (file: string, args: string[], opts: { input?: string }) =>
  Promise<{ stdout: string; stderr: string; exitCode: number | undefined; failed: boolean; code?: string | undefined }>;

/** Real runner over an execa-like function (injected so the entry point alone imports execa). */
export function createNftRunner(exec: Exec, nftPath = 'nft'): NftRunner {
  const run = async (args: string[], input?: string) => {
    const r = await exec(nftPath, args, input === undefined ? {} : { input });
    if (r.code === 'ENOENT') throw new ApnsProxyError('E_NFT', `cannot run ${nftPath}: not installed (apt-get install nftables)`);
    return r;
  };
  /** `nft -j list ARGS`: the JSON text, or null when the object does not exist. */
  const list = async (args: string[]): Promise<string | null> => {
    const r = await run(['-j', 'list', ...args]);
    if (!r.failed) return r.stdout;
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new ApnsProxyError('E_NFT', `nft list ${args.join(' ')} failed: ${r.stderr.trim()}`);
  };
  return {
    async apply(script) {
      const r = await run(['-f', '-'], script);
      if (r.failed) {
        const why = (r.stderr || r.stdout).trim() || `exit code ${r.exitCode}`;
        throw new ApnsProxyError('E_NFT', `nft rejected the transaction (kernel unchanged): ${why}`);
      }
    },
    async readMap(table) {
      const text = await list(['map', 'inet', table, MAP_NAME]);
      return text === null ? null : parseMapJson(text);
    },
    async readTable(table) {
      const text = await list(['table', 'inet', table]);
      return text === null ? null : parseTableJson(text, table);
    },
    async tableOwner(table) {
      const text = await list(['table', 'inet', table]);
      return text === null ? 'absent' : parseTableOwner(text, table);
    },
    async tableHandle(table) {
      const text = await list(['tables', 'inet']);
      return text === null ? null : parseTableHandle(text, table);
    },
  };
}

interface JsonMap { table?: string; name?: string; comment?: string; elem?: unknown[] }
interface JsonSet { table?: string; name?: string; elem?: unknown[] }
interface JsonDoc { nftables?: { table?: { family?: string; name?: string; handle?: number }; map?: JsonMap; set?: JsonSet }[] }
interface JsonKey {
  concat?: [string, number];
  elem?: { val?: { concat?: [string, number] }; comment?: string; counter?: { packets?: number; bytes?: number } };
}

function parseJson(text: string): JsonDoc {
  try {
    return JSON.parse(text) as JsonDoc;
  } catch {
    throw new ApnsProxyError('E_NFT', `nft printed JSON we cannot parse: ${text.slice(0, 80)}`);
  }
}

/** Finds our table's handle in `nft -j list tables` output. */
export function parseTableHandle(text: string, table: string): number | null {
  const t = parseJson(text).nftables?.find((o) => o.table?.family === 'inet' && o.table.name === table)?.table;
  return typeof t?.handle === 'number' ? t.handle : null;
}

/** 'ours' when `nft -j list table` shows our map with our stamp comment, else 'foreign'. */
export function parseTableOwner(text: string, table: string): TableOwner {
  const map = parseJson(text).nftables?.find((o) => o.map?.table === table && o.map.name === MAP_NAME)?.map;
  return map?.comment?.startsWith(STAMP_PREFIX) ? 'ours' : 'foreign';
}

/** The same answer from a table already listed with readTable (null: absent). */
export function tableOwnerOf(live: LiveTable | null): TableOwner {
  if (live === null) return 'absent';
  return live.map?.stamp?.startsWith(STAMP_PREFIX) ? 'ours' : 'foreign';
}

/** Parses `nft -j list map` output (libnftables JSON schema 1). */
export function parseMapJson(text: string): LiveMap {
  const map = parseJson(text).nftables?.find((o) => o.map)?.map;
  if (!map) throw new ApnsProxyError('E_NFT', 'nft JSON output has no map object');
  return liveMap(map);
}

/** Parses `nft -j list table inet TABLE`: the handle, our map and our sets (each null when absent). */
export function parseTableJson(text: string, table: string): LiveTable {
  const objects = parseJson(text).nftables ?? [];
  const handle = objects.find((o) => o.table?.family === 'inet' && o.table.name === table)?.table?.handle;
  const map = objects.find((o) => o.map?.table === table && o.map.name === MAP_NAME)?.map;
  const set = (name: string) => objects.find((o) => o.set?.table === table && o.set.name === name)?.set;
  const ports = set(PORTS_SET);
  const vips = set(VIPS_SET);
  const direct = set(DIRECT_SET);
  const upstream = set(UPSTREAM_SET);
  return {
    handle: typeof handle === 'number' ? handle : null,
    map: map ? liveMap(map) : null,
    ports: ports ? triples(ports).map(([vip, proto, port]) => ({ vip, proto, port })) : null,
    vips: vips ? (vips.elem ?? []).map((e) => single(e, VIPS_SET)) : null,
    direct: direct ? triples(direct).map(([address, proto, port]) => ({ address, proto, port })) : null,
    upstream: upstream ? (upstream.elem ?? []).map((e) => single(e, UPSTREAM_SET)) : null,
  };
}

function liveMap(map: JsonMap): LiveMap {
  const elements: MapElement[] = [];
  for (const e of map.elem ?? []) {
    // Each element is [key, address]; the key is {concat: [vip, slot]}, or, with a comment or a
    // counter, {elem: {val: {concat: [vip, slot]}, comment?: name, counter?: {packets, bytes}}}.
    const pair = e as [JsonKey, string];
    const key = pair?.[0];
    const inner = key?.elem;
    const concat = (inner ? inner.val?.concat : key?.concat);
    if (!Array.isArray(concat) || concat.length !== 2 || typeof pair[1] !== 'string') {
      throw new ApnsProxyError('E_NFT', `unexpected element in nft JSON: ${JSON.stringify(e).slice(0, 80)}`);
    }
    const name = typeof inner?.comment === 'string' ? inner.comment : undefined;
    const packets = typeof inner?.counter?.packets === 'number' ? inner.counter.packets : undefined;
    elements.push({
      vip: String(concat[0]), slot: Number(concat[1]), address: pair[1],
      ...(name !== undefined ? { name } : {}), ...(packets !== undefined ? { packets } : {}),
    });
  }
  return { stamp: map.comment ?? null, elements: elementMap(elements) };
}

/** A set's elements {concat: [address, "tcp"|"udp", port]} (bare, or wrapped in {elem: {val}}). */
function triples(set: JsonSet): [string, 'tcp' | 'udp', number][] {
  return (set.elem ?? []).map((e) => {
    const concat = ((e as { elem?: { val?: { concat?: unknown[] } } }).elem?.val?.concat ?? (e as { concat?: unknown[] }).concat);
    if (!Array.isArray(concat) || concat.length !== 3 || (concat[1] !== 'tcp' && concat[1] !== 'udp')) {
      throw new ApnsProxyError('E_NFT', `unexpected set element in nft JSON: ${JSON.stringify(e).slice(0, 80)}`);
    }
    return [String(concat[0]), concat[1], Number(concat[2])];
  });
}

/** An element of a one-address set in nft's spelling: "a.b.c.d", {prefix: {addr, len}} → "a/len", {range: [a, b]} → "a-b". */
function single(e: unknown, name: string): string {
  const v = (e as { elem?: { val?: unknown } })?.elem?.val ?? e;
  if (typeof v === 'string') return v;
  const prefix = (v as { prefix?: { addr?: unknown; len?: unknown } })?.prefix;
  if (typeof prefix?.addr === 'string' && typeof prefix.len === 'number') return `${prefix.addr}/${prefix.len}`;
  const range = (v as { range?: unknown[] })?.range;
  if (Array.isArray(range) && range.length === 2 && typeof range[0] === 'string' && typeof range[1] === 'string') return `${range[0]}-${range[1]}`;
  throw new ApnsProxyError('E_NFT', `unexpected ${name} element in nft JSON: ${JSON.stringify(e).slice(0, 80)}`);
}
