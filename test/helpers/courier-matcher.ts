// The courier-name grammar written as a regular expression: the reference the DNS answer tests
// check the wire-level matching (answer.ts, the UDP fast path) against.
import type { Config } from '../../src/core/config.js';
import { MAX_COURIER } from '../../src/core/couriers.js';

/**
 * Builds the strict, case-insensitive matcher for courier names from the template:
 * "{n}" matches 1..254 without leading zeros; one optional trailing dot; nothing before or after.
 */
export function courierMatcher(config: Pick<Config, 'couriers'>): (name: string) => number | undefined {
  const [before, after] = config.couriers.template.split('{n}') as [string, string];
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^${escape(before)}([1-9][0-9]{0,2})${escape(after)}\\.?$`, 'i');
  const { first, last } = config.couriers;
  return (name) => {
    const m = re.exec(name);
    if (!m) return undefined;
    const n = Number(m[1]);
    return n >= first && n <= last && n <= MAX_COURIER ? n : undefined;
  };
}
