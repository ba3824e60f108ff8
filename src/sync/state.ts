// The state file: last-known-good per name, the exact names' pool VIPs and the connection-counter
// offsets, so a restart can program the kernel before the first resolution and every exact name
// keeps its VIP. Written atomically (temp file, fsync, rename) so a crash never leaves half a file.
// Version 2 (names); a version 1 file (production couriers by N) is read and migrated.
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import type { NameView, Snapshot } from './mapping.js';
import { sortUniqueIPv4 } from '../core/net.js';
import { PRODUCTION_SET } from '../core/namesets.js';

export const STATE_FILE = 'state.json';
const VERSION = 2;
/** 400 couriers and a few hosts take ~100 KB; anything near this is not ours, and is never read whole. */
export const MAX_STATE_BYTES = 16 * 1024 * 1024;

/** A version 1 entry: a production courier by N (its name comes from couriers.template on load). */
export interface LegacyCourier {
  readonly n: number;
  readonly addresses: readonly string[];
  readonly resolvedAt: number | null;
  readonly ttl: number | null;
  readonly exists: boolean | null;
  readonly checkedAt: number | null;
  readonly error: string | null;
}

export interface StateFile {
  readonly version: 2;
  readonly savedAt: number;
  readonly names: readonly NameView[];
  readonly pool: Readonly<Record<string, string>>;         // exact name → VIP
  readonly connections?: Readonly<Record<string, number>>;  // name → counter offset: new connections = kernel counters + offset
  readonly legacyCouriers?: readonly LegacyCourier[];       // read from a version 1 file: to migrate
}

export interface StateStore {
  load(): Promise<StateFile | null>;  // null when there is no state yet
  save(snapshot: Snapshot, connections?: ReadonlyMap<string, number>): Promise<void>;
  /** Moves an unusable state file out of the way (kept for the operator); returns where, or null. */
  setAside?(): Promise<string | null>;
}

export function createStateStore(dir: string): StateStore {
  const path = join(dir, STATE_FILE);
  return {
    async load() {
      let text: string;
      try {
        const fh = await open(path, 'r');
        try {
          const { size, isFile } = await fh.stat().then((st) => ({ size: st.size, isFile: st.isFile() }));
          if (!isFile) throw new ApnsProxyError('E_STATE', `${path} is not a regular file`);
          if (size > MAX_STATE_BYTES) throw new ApnsProxyError('E_STATE', `${path} is ${size} bytes, more than a state file can be (${MAX_STATE_BYTES})`);
          text = await fh.readFile('utf8');
        } finally {
          await fh.close();
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        if (err instanceof ApnsProxyError) throw err;
        throw new ApnsProxyError('E_STATE', `cannot read ${path}: ${errorMessage(err)}`);
      }
      return parseState(text, path);
    },
    async setAside() {
      const aside = `${path}.bad`;
      try {
        await rename(path, aside);
        return aside;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async save(snapshot, connections) {
      const body: StateFile = {
        version: VERSION, savedAt: snapshot.at, names: [...snapshot.names.values()], pool: Object.fromEntries(snapshot.pool),
        ...(connections && connections.size > 0 ? { connections: Object.fromEntries(connections) } : {}),
      };
      const tmp = `${path}.${process.pid}.tmp`;
      try {
        await mkdir(dir, { recursive: true, mode: 0o755 });
        const fh = await open(tmp, 'w', 0o644);
        try {
          await fh.writeFile(`${JSON.stringify(body, null, 1)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, path);
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw new ApnsProxyError('E_STATE', `cannot write ${path}: ${errorMessage(err)}`);
      }
    },
  };
}

const nullableNumber = (v: unknown) => v === null || (typeof v === 'number' && Number.isFinite(v));

const recordOk = (c: Record<string, unknown>) => Array.isArray(c.addresses) && c.addresses.every((a: unknown) => typeof a === 'string') &&
  nullableNumber(c.resolvedAt) && nullableNumber(c.checkedAt) && nullableNumber(c.ttl) &&
  (c.exists === null || typeof c.exists === 'boolean') && (c.error === null || typeof c.error === 'string');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const NAME = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

/** Validates a state file; anything surprising is E_STATE (the daemon then starts without it). */
export function parseState(text: string, path: string): StateFile {
  const bad = (why: string) => new ApnsProxyError('E_STATE', `${path}: ${why}; delete it to start without last-known-good`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON (${errorMessage(err)})`);
  }
  if (!isObject(doc)) throw bad(`not an apns-proxy state file version 1 or ${VERSION}`);
  const savedAt = typeof doc.savedAt === 'number' ? doc.savedAt : 0;
  if (doc.version === 1 && Array.isArray(doc.couriers)) {
    const legacyCouriers = doc.couriers.map((c: unknown, i) => {
      if (!isObject(c) || !Number.isInteger(c.n) || (c.n as number) < 0 || (c.n as number) > 65534 || !recordOk(c)) throw bad(`courier entry ${i} is malformed`);
      return { ...(c as unknown as LegacyCourier), addresses: sortUniqueIPv4(c.addresses as string[]) };
    });
    return { version: VERSION, savedAt, names: [], pool: {}, legacyCouriers };
  }
  if (doc.version !== VERSION || !Array.isArray(doc.names) || !isObject(doc.pool)) throw bad(`not an apns-proxy state file version 1 or ${VERSION}`);
  const names = doc.names.map((c: unknown, i) => {
    const ok = isObject(c) && typeof c.name === 'string' && NAME.test(c.name) && typeof c.set === 'string' &&
      (c.n === null || (Number.isInteger(c.n) && (c.n as number) >= 0)) && recordOk(c);
    if (!ok) throw bad(`name entry ${i} is malformed`);
    return { ...(c as unknown as NameView), addresses: sortUniqueIPv4(c.addresses as string[]) };
  });
  const pool: Record<string, string> = {};
  for (const [name, vip] of Object.entries(doc.pool)) {
    if (!NAME.test(name) || typeof vip !== 'string' || !IPV4.test(vip)) throw bad(`pool entry ${JSON.stringify(name)} is malformed`);
    pool[name] = vip;
  }
  const connections: Record<string, number> = {};
  if (isObject(doc.connections)) {
    for (const [name, v] of Object.entries(doc.connections)) if (typeof v === 'number' && Number.isFinite(v)) connections[name] = v;
  }
  return { version: VERSION, savedAt, names, pool, ...(Object.keys(connections).length > 0 ? { connections } : {}) };
}

/**
 * The records a state file holds, by name. A version 1 file's couriers take their names from the
 * production template (couriers.template) they were saved under.
 */
export function recordsOf(state: StateFile | null, template: string): Map<string, NameView> {
  const out = new Map<string, NameView>();
  for (const c of state?.legacyCouriers ?? []) {
    const name = template.replace('{n}', String(c.n));
    const legacy = c as LegacyCourier & Partial<NameView>;
    out.set(name, { vip: '', state: 'absent', programmed: [], ...legacy, name, set: PRODUCTION_SET, n: c.n });
  }
  for (const c of state?.names ?? []) out.set(c.name, c);
  return out;
}
