// The DNS server's log sink: debug lines (every query at log.level debug) and warnings, each
// throttled so that a flood of queries never becomes a flood of lines.
import { type Logger, LogLimiter } from '../core/log.js';

/** Debug lines per second at most (every query is logged at debug, but never as a flood). */
const DEBUG_LINES_PER_SECOND = 50;

export interface DnsLog {
  /** Whether log.level is debug now (asked live: the forwarder's lines follow a reload at once). */
  isDebug(): boolean;
  /** A debug line, at most 50 a second with the count held back; a thunk, formatted only when let through. */
  debug(line: () => string): void;
  /** A warning, at most 5 per 10 s with the count held back. */
  warn(message: string): void;
  /** An info line about a rewritten push.apple.com TXT count: at most one per 10 minutes. */
  countRewritten(line: () => string): void;
}

export function createDnsLog(logger: Logger, clock: () => number): DnsLog {
  const debugLines = new LogLimiter(DEBUG_LINES_PER_SECOND, 1000, clock);
  const warnLines = new LogLimiter(5, 10_000, clock);
  const countLines = new LogLimiter(1, 600_000, clock);
  return {
    isDebug: () => logger.isDebug(),
    debug(line) {
      const held = debugLines.take();
      if (held !== undefined) logger.debug(`${line()}${held ? ` (${held} lines suppressed)` : ''}`);
    },
    warn(message) {
      const held = warnLines.take();
      if (held !== undefined) logger.warn(held > 0 ? `${message} (${held} similar lines suppressed)` : message);
    },
    countRewritten(line) {
      if (countLines.take() !== undefined) logger.info(line());
    },
  };
}
