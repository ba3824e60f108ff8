// Courier naming (pure): N ⇄ "N-courier.push.apple.com" ⇄ VIP of the production prefix
// (network + N for N ≥ 1, broadcast − 1 for N = 0: see namesets.ts).
import type { Config } from './config.js';
import { numberForVip, numberedName, vipForNumber } from './namesets.js';
import { formatIPv4, parseIPv4 } from './net.js';

/** Largest N a /24 can give a VIP to (PREFIX.255 is the broadcast address). */
export const MAX_COURIER = 254;

export function courierName(template: string, n: number): string {
  return numberedName(template, n);
}

export function courierNumbers(config: Pick<Config, 'couriers'>): number[] {
  const out: number[] = [];
  for (let n = config.couriers.first; n <= config.couriers.last; n++) out.push(n);
  return out;
}

export function vipFor(config: Pick<Config, 'vipPrefix'>, n: number): string {
  const vip = vipForNumber(config.vipPrefix, n);
  if (vip === undefined) throw new RangeError(`courier ${n} has no VIP in ${config.vipPrefix.text}`);
  return formatIPv4(vip);
}

/** The courier a VIP stands for, or undefined when the address is not one of ours. */
export function courierForVip(config: Pick<Config, 'vipPrefix' | 'couriers'>, address: string): number | undefined {
  const a = parseIPv4(address.startsWith('::ffff:') ? address.slice(7) : address);
  if (a === undefined) return undefined;
  return numberForVip({ prefix: config.vipPrefix, first: config.couriers.first, last: config.couriers.last }, a);
}
