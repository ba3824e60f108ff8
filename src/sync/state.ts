// The state file: last-known-good per courier, so a restart can program the kernel before
// the first resolution. Written atomically (temp file, fsync, rename) so a crash never leaves half a file.
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ApnsProxyError, errorMessage } from '../core/errors.js';
import type { CourierView, Snapshot } from './mapping.js';
import { sortUniqueIPv4 } from '../core/net.js';

export const STATE_FILE = 'state.json';
const VERSION = 1;
/** 254 couriers take ~60 KB; anything near this is not ours, and is never read whole. */
export const MAX_STATE_BYTES = 16 * 1024 * 1024;

export interface StateFile {
  readonly version: 1;
  readonly savedAt: number;
  readonly couriers: readonly CourierView[];
}

export interface StateStore {
  load(): Promise<StateFile | null>;  // null when there is no state yet
  save(snapshot: Snapshot): Promise<void>;
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
    async save(snapshot) {
      const body: StateFile = { version: VERSION, savedAt: snapshot.at, couriers: [...snapshot.couriers.values()] };
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

/** Validates a state file; anything surprising is E_STATE (the daemon then starts without it). */
export function parseState(text: string, path: string): StateFile {
  const bad = (why: string) => new ApnsProxyError('E_STATE', `${path}: ${why}; delete it to start without last-known-good`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`not valid JSON (${errorMessage(err)})`);
  }
  const d = doc as Partial<StateFile>;
  if (typeof d !== 'object' || d === null || d.version !== VERSION || !Array.isArray(d.couriers)) {
    throw bad(`not an apns-proxy state file version ${VERSION}`);
  }
  const couriers = d.couriers.map((c, i) => {
    const ok = typeof c === 'object' && c !== null && Number.isInteger(c.n) && c.n >= 1 && c.n <= 254 &&
      Array.isArray(c.addresses) && c.addresses.every((a: unknown) => typeof a === 'string') &&
      nullableNumber(c.resolvedAt) && nullableNumber(c.checkedAt) && nullableNumber(c.ttl) &&
      (c.exists === null || typeof c.exists === 'boolean') && (c.error === null || typeof c.error === 'string');
    if (!ok) throw bad(`courier entry ${i} is malformed`);
    return { ...c, addresses: sortUniqueIPv4(c.addresses) };
  });
  return { version: VERSION, savedAt: typeof d.savedAt === 'number' ? d.savedAt : 0, couriers };
}
