// The line logger behind the core's Logger interface: only the entry point builds it. Our own few
// lines rather than winston: one format per line to one stream is all the daemon needs, and winston's
// module graph cost ~3 MB of the daemon's idle RSS (bench/RESULTS.md, Footprint).
import type { LogLevel } from '../core/config.js';
import type { Logger } from '../core/log.js';

// npm levels as winston numbered them: a message is written when its rank ≤ the configured level's
const RANK: Readonly<Record<LogLevel, number>> = { error: 0, warn: 1, info: 2, debug: 3 };

type Meta = Record<string, unknown> | undefined;

/** "level: message key=value" without a timestamp (journald adds its own). */
export function textLine(level: LogLevel, message: string, meta: Meta): string {
  const extra = meta ? Object.entries(meta).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('') : '';
  return `${level}: ${message}${extra}`;
}

/** One JSON object per line, level and message first, an ISO timestamp last (for log shippers). */
export function jsonLine(level: LogLevel, message: string, meta: Meta, now: Date): string {
  return JSON.stringify({ level, message, ...meta, timestamp: now.toISOString() });
}

/**
 * Text is "level: message key=value" without a timestamp (journald adds its own);
 * JSON is one object per line with an ISO timestamp, for log shippers.
 */
export function createLogger(level: LogLevel, format: 'text' | 'json', stream: NodeJS.WritableStream = process.stderr,
  clock: () => Date = () => new Date()): Logger & { setLevel(l: LogLevel): void } {
  if (!(level in RANK)) throw new TypeError(`log level must be one of ${Object.keys(RANK).join(', ')}, got ${JSON.stringify(level)}`);
  let max = RANK[level];
  const write = (lvl: LogLevel) => (message: string, meta?: Record<string, unknown>): void => {
    if (RANK[lvl] > max) return;
    stream.write(`${format === 'json' ? jsonLine(lvl, message, meta, clock()) : textLine(lvl, message, meta)}\n`);
  };
  return {
    error: write('error'),
    warn: write('warn'),
    info: write('info'),
    debug: write('debug'),
    isDebug: () => max >= RANK.debug,
    setLevel: (l) => { max = RANK[l]; },
  };
}
