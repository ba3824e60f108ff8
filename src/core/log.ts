// Logging: the small interface every layer logs through (the entry point wires the line logger behind it),
// and the limiter that keeps a flood of similar events from becoming a flood of lines.

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  isDebug(): boolean;
}

/** Lets through at most `perWindow` lines per `windowMs`, and says how many were held back. */
export class LogLimiter {
  private windowStart = -Infinity;
  private used = 0;
  private suppressed = 0;

  constructor(private readonly perWindow: number, private readonly windowMs: number, private readonly clock: () => number) {}

  /** undefined: suppress this line; else the number of lines suppressed since the last one let through. */
  take(): number | undefined {
    const now = this.clock();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    if (this.used >= this.perWindow) {
      this.suppressed += 1;
      return undefined;
    }
    this.used += 1;
    const held = this.suppressed;
    this.suppressed = 0;
    return held;
  }

  /** Lines held back since the last one let through, and forgets them (for a summary line of its own). */
  drain(): number {
    const held = this.suppressed;
    this.suppressed = 0;
    return held;
  }
}
