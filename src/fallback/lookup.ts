// At-connect lookups for the fallback: concurrent connections to one name share one query,
// and an answer is reused briefly, so a burst of misses costs one DNS query, not one per client.
import type { Resolution } from '../dns/client/resolver.js';

export const REUSE_MS = 1000;

export function sharedLookup<K extends string | number>(
  resolve: (n: K, timeoutMs: number) => Promise<Resolution>,
  clock: () => number,
  reuseMs = REUSE_MS,
): (n: K, timeoutMs: number) => Promise<Resolution> {
  const recent = new Map<K, { at: number; result: Promise<Resolution> }>();
  return (n, timeoutMs) => {
    const now = clock();
    const hit = recent.get(n);
    if (hit && now - hit.at < reuseMs) return hit.result;
    const result = resolve(n, timeoutMs);
    recent.set(n, { at: now, result });
    // Failures are not reused: the next client asks again (upstream may be back).
    void result.then((r) => { if (r.kind === 'error' && recent.get(n)?.result === result) recent.delete(n); });
    if (recent.size > 256) for (const [k, v] of recent) if (now - v.at >= reuseMs) recent.delete(k);
    return result;
  };
}
