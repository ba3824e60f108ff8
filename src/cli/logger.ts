// The winston logger behind the core's Logger interface: only the entry point builds it.
import winston from 'winston';
import type { LogLevel } from '../core/config.js';
import type { Logger } from '../core/log.js';

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
