// A Logger that collects its lines in memory, for tests.
import type { Logger } from '../../src/core/log.js';

export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (lvl: string) => (m: string, meta?: Record<string, unknown>) =>
    void lines.push(`${lvl}: ${m}${meta ? ` ${JSON.stringify(meta)}` : ''}`);
  return { lines, error: add('error'), warn: add('warn'), info: add('info'), debug: add('debug'), isDebug: () => true };
}
