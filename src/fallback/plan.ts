// Where a fallback connection should go (pure): the courier's fresh addresses when resolution
// worked now, else its last-known-good; only addresses inside allowedUpstreamNets, ever.
import type { Cidr4 } from '../core/net.js';
import { inAnyCidr, sortUniqueIPv4 } from '../core/net.js';
import type { CourierView } from '../sync/mapping.js';
import type { Resolution } from '../dns/client/resolver.js';

export type Plan =
  | { readonly ok: true; readonly addresses: readonly string[]; readonly source: 'resolved' | 'last-known-good' }
  | { readonly ok: false; readonly reason: string };

/**
 * `start` rotates the order (the caller passes a random number) so clients spread over a
 * courier's addresses; the rest follow as failover in sorted order.
 */
export function planTargets(resolution: Resolution, known: CourierView | undefined, allowed: readonly Cidr4[], start: number): Plan {
  if (resolution.kind === 'nxdomain') return { ok: false, reason: 'courier does not exist (NXDOMAIN)' };
  let addresses: string[] = [];
  let source: 'resolved' | 'last-known-good' = 'resolved';
  if (resolution.kind === 'ok') addresses = sortUniqueIPv4(resolution.addresses).filter((a) => inAnyCidr(allowed, a));
  if (addresses.length === 0 && resolution.kind !== 'nodata') {
    // resolution failed (or gave only foreign addresses): last-known-good, however old
    addresses = (known?.addresses ?? []).filter((a) => inAnyCidr(allowed, a));
    source = 'last-known-good';
  }
  if (addresses.length === 0) {
    const why = resolution.kind === 'ok' ? 'no address inside allowedUpstreamNets'
      : resolution.kind === 'nodata' ? 'courier has no A record'
      : `resolution failed (${resolution.code}) and no last-known-good`;
    return { ok: false, reason: why };
  }
  const k = ((start % addresses.length) + addresses.length) % addresses.length;
  return { ok: true, addresses: [...addresses.slice(k), ...addresses.slice(0, k)], source };
}
