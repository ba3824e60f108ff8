// Logging: the small interface the core uses, and the winston logger the entry point builds.
import winston from 'winston';
import type { LogLevel } from './config.js';

export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  isDebug(): boolean;
}

/**
 * Text is "level: message key=value" without a timestamp (journald adds its own);
 * JSON is one object per line with an ISO timestamp, for log shippers.
 */
export function createLogger(level: LogLevel, format: 'text' | 'json', stream: NodeJS.WritableStream = process.stderr): Logger & { setLevel(l: LogLevel): void } {
  const text = winston.format.printf(({ level: lvl, message, ...meta }) => {
    const extra = Object.entries(meta).map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join('');
    return `${lvl}: ${String(message)}${extra}`;
  });
  const w = winston.createLogger({
    level,
    format: format === 'json' ? winston.format.combine(winston.format.timestamp(), winston.format.json()) : text,
    transports: [new winston.transports.Stream({ stream })],
  });
  return {
    error: (m, meta) => void w.error(m, meta),
    warn: (m, meta) => void w.warn(m, meta),
    info: (m, meta) => void w.info(m, meta),
    debug: (m, meta) => void w.debug(m, meta),
    isDebug: () => w.isLevelEnabled('debug'),
    setLevel: (l) => { w.level = l; },
  };
}

/** Collects log lines in memory (tests). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (lvl: string) => (m: string, meta?: Record<string, unknown>) =>
    void lines.push(`${lvl}: ${m}${meta ? ` ${JSON.stringify(meta)}` : ''}`);
  return { lines, error: add('error'), warn: add('warn'), info: add('info'), debug: add('debug'), isDebug: () => true };
}
