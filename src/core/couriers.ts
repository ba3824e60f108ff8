// Courier naming (pure): N ⇄ "N-courier.push.apple.com" ⇄ VIP "PREFIX.N".
import type { Config } from './config.js';
import { formatIPv4, parseIPv4 } from './net.js';

/** Largest N a /24 can give a VIP to (PREFIX.255 is the broadcast address). */
export const MAX_COURIER = 254;

export function courierName(template: string, n: number): string {
  return template.replace('{n}', String(n));
}

export function courierNumbers(config: Pick<Config, 'couriers'>): number[] {
  const out: number[] = [];
  for (let n = config.couriers.first; n <= config.couriers.last; n++) out.push(n);
  return out;
}

export function vipFor(config: Pick<Config, 'vipPrefix'>, n: number): string {
  return formatIPv4(config.vipPrefix.network + n);
}

/** The courier a VIP stands for, or undefined when the address is not one of ours. */
export function courierForVip(config: Pick<Config, 'vipPrefix' | 'couriers'>, address: string): number | undefined {
  const a = parseIPv4(address.startsWith('::ffff:') ? address.slice(7) : address);
  if (a === undefined || ((a & config.vipPrefix.mask) >>> 0) !== config.vipPrefix.network) return undefined;
  const n = a - config.vipPrefix.network;
  return n >= config.couriers.first && n <= config.couriers.last ? n : undefined;
}
