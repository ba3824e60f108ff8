// The one place that talks to nft: scripts go in on stdin (`nft -f -`, one atomic transaction).
import { ApnsProxyError } from '../core/errors.js';
import { type DirectElement, type ElementMap, type MapElement, type PortElement, elementMap } from './elements.js';
import { DIRECT_SET, MAP_NAME, PORTS_SET, STAMP_PREFIX } from './render.js';

/** What is in the kernel for our table: null when the table or map does not exist. */
export interface LiveMap {
  readonly stamp: string | null;                  // the map comment written by renderRuleset
  readonly elements: ElementMap;
}

export interface NftRunner {
  /** Applies a script as one transaction; throws ApnsProxyError E_NFT and changes nothing on failure. */
  apply(script: string): Promise<void>;
  /** Reads our map back from the kernel. */
  readMap(table: string): Promise<LiveMap | null>;
  /** Reads the vipports set back (null when absent). */
  readPorts(table: string): Promise<PortElement[] | null>;
  /** Reads the direct set back (null when absent). */
  readDirect(table: string): Promise<DirectElement[] | null>;
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
  return {
    async apply(script) {
      const r = await run(['-f', '-'], script);
      if (r.failed) {
        const why = (r.stderr || r.stdout).trim() || `exit code ${r.exitCode}`;
        throw new ApnsProxyError('E_NFT', `nft rejected the transaction (kernel unchanged): ${why}`);
      }
    },
    async readMap(table) {
      const r = await run(['-j', 'list', 'map', 'inet', table, MAP_NAME]);
      if (r.failed) {
        if (/No such file or directory/.test(r.stderr)) return null;
        throw new ApnsProxyError('E_NFT', `nft list map inet ${table} ${MAP_NAME} failed: ${r.stderr.trim()}`);
      }
      return parseMapJson(r.stdout);
    },
    async readPorts(table) {
      const r = await run(['-j', 'list', 'set', 'inet', table, PORTS_SET]);
      if (r.failed) {
        if (/No such file or directory/.test(r.stderr)) return null;
        throw new ApnsProxyError('E_NFT', `nft list set inet ${table} ${PORTS_SET} failed: ${r.stderr.trim()}`);
      }
      return parsePortsJson(r.stdout);
    },
    async readDirect(table) {
      const r = await run(['-j', 'list', 'set', 'inet', table, DIRECT_SET]);
      if (r.failed) {
        if (/No such file or directory/.test(r.stderr)) return null;
        throw new ApnsProxyError('E_NFT', `nft list set inet ${table} ${DIRECT_SET} failed: ${r.stderr.trim()}`);
      }
      return parsePortsJson(r.stdout).map((p) => ({ address: p.vip, proto: p.proto, port: p.port }));
    },
    async tableOwner(table) {
      const r = await run(['-j', 'list', 'table', 'inet', table]);
      if (r.failed) {
        if (/No such file or directory/.test(r.stderr)) return 'absent';
        throw new ApnsProxyError('E_NFT', `nft list table inet ${table} failed: ${r.stderr.trim()}`);
      }
      return parseTableOwner(r.stdout, table);
    },
    async tableHandle(table) {
      const r = await run(['-j', 'list', 'tables', 'inet']);
      if (r.failed) throw new ApnsProxyError('E_NFT', `nft list tables failed: ${r.stderr.trim()}`);
      return parseTableHandle(r.stdout, table);
    },
  };
}

/** Finds our table's handle in `nft -j list tables` output. */
export function parseTableHandle(text: string, table: string): number | null {
  let doc: { nftables?: { table?: { family?: string; name?: string; handle?: number } }[] };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw new ApnsProxyError('E_NFT', `nft printed JSON we cannot parse: ${text.slice(0, 80)}`);
  }
  const t = doc.nftables?.find((o) => o.table?.family === 'inet' && o.table.name === table)?.table;
  return typeof t?.handle === 'number' ? t.handle : null;
}

/** 'ours' when `nft -j list table` shows our map with our stamp comment, else 'foreign'. */
export function parseTableOwner(text: string, table: string): TableOwner {
  let doc: { nftables?: { map?: { table?: string; name?: string; comment?: string } }[] };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw new ApnsProxyError('E_NFT', `nft printed JSON we cannot parse: ${text.slice(0, 80)}`);
  }
  const map = doc.nftables?.find((o) => o.map?.table === table && o.map.name === MAP_NAME)?.map;
  return map?.comment?.startsWith(STAMP_PREFIX) ? 'ours' : 'foreign';
}

interface JsonMap { map?: { comment?: string; elem?: unknown[] } }
interface JsonKey {
  concat?: [string, number];
  elem?: { val?: { concat?: [string, number] }; comment?: string; counter?: { packets?: number; bytes?: number } };
}

/** Parses `nft -j list map` output (libnftables JSON schema 1). */
export function parseMapJson(text: string): LiveMap {
  let doc: { nftables?: JsonMap[] };
  try {
    doc = JSON.parse(text) as { nftables?: JsonMap[] };
  } catch {
    throw new ApnsProxyError('E_NFT', `nft printed JSON we cannot parse: ${text.slice(0, 80)}`);
  }
  const map = doc.nftables?.find((o) => o.map)?.map;
  if (!map) throw new ApnsProxyError('E_NFT', 'nft JSON output has no map object');
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

/** Parses `nft -j list set … vipports`: elements {concat: [vip, "tcp"|"udp", port]}. */
export function parsePortsJson(text: string): PortElement[] {
  let doc: { nftables?: { set?: { elem?: unknown[] } }[] };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    throw new ApnsProxyError('E_NFT', `nft printed JSON we cannot parse: ${text.slice(0, 80)}`);
  }
  const set = doc.nftables?.find((o) => o.set)?.set;
  if (!set) throw new ApnsProxyError('E_NFT', 'nft JSON output has no set object');
  return (set.elem ?? []).map((e) => {
    const concat = ((e as { elem?: { val?: { concat?: unknown[] } } }).elem?.val?.concat ?? (e as { concat?: unknown[] }).concat);
    if (!Array.isArray(concat) || concat.length !== 3 || (concat[1] !== 'tcp' && concat[1] !== 'udp')) {
      throw new ApnsProxyError('E_NFT', `unexpected set element in nft JSON: ${JSON.stringify(e).slice(0, 80)}`);
    }
    return { vip: String(concat[0]), proto: concat[1], port: Number(concat[2]) };
  });
}
