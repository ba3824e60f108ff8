// Gives V8's heap back to the system after a refresh cycle that grew it. A cycle against a silent
// upstream keeps hundreds of timed-out queries in flight for seconds; V8 keeps the pages they
// needed committed long after they are garbage (bench/RESULTS.md, Footprint: 5-6 MB of an idle
// daemon). One full collection then returns them; it runs only when the heap has grown by `slackBytes`
// since the last one, and at most once per `minIntervalMs`, so a steady daemon never pays for it.

export interface HeapSize { readonly heapTotal: number }

export interface CompactorOptions {
  /** A full, compacting collection (`globalThis.gc` under node --expose-gc); without it nothing happens. */
  readonly gc: (() => void) | undefined;
  readonly heap: () => HeapSize;
  readonly clock: () => number;
  /** Growth of the committed heap since the last compaction that calls for one (default 4 MiB). */
  readonly slackBytes?: number;
  /** Compactions at most this often (default 5 minutes). */
  readonly minIntervalMs?: number;
}

export interface Compaction { readonly beforeBytes: number; readonly afterBytes: number }

/** Returns the check to run after each refresh cycle: a Compaction when it collected, else undefined. */
export function heapCompactor(options: CompactorOptions): () => Compaction | undefined {
  const slack = options.slackBytes ?? 4 * 1024 * 1024;
  const interval = options.minIntervalMs ?? 5 * 60_000;
  if (!Number.isFinite(slack) || slack < 0) throw new RangeError(`heapCompactor: slackBytes must be a non-negative number, got ${String(slack)}`);
  if (!Number.isFinite(interval) || interval < 0) throw new RangeError(`heapCompactor: minIntervalMs must be a non-negative number, got ${String(interval)}`);
  let baseline: number | undefined;  // committed heap right after the last compaction (none yet: the first cycle compacts)
  let lastAt = -Infinity;
  return () => {
    const gc = options.gc;
    if (!gc) return undefined;
    const before = options.heap().heapTotal;
    const now = options.clock();
    if (baseline !== undefined && (before - baseline < slack || now - lastAt < interval)) return undefined;
    gc();
    lastAt = now;
    baseline = options.heap().heapTotal;
    return { beforeBytes: before, afterBytes: baseline };
  };
}
