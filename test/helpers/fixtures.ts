// Shared unit-test fixtures: a config in the test address plan, a fake clock, canned resolutions.
import { readFileSync } from 'node:fs';
import { type Config, parseConfig } from '../../src/core/config.js';
import type { Resolution, Resolver } from '../../src/dns/client/resolver.js';

export const REPO = new URL('../../../', import.meta.url);

export function readRepoFile(path: string): string {
  return readFileSync(new URL(path, REPO), 'utf8');
}

export const TEMPLATE = readRepoFile('nft/apns-proxy.nft');

/** The test address plan: VIPs 198.18.100.0/24, couriers 1..60, upstream 203.0.113.0/24. */
export function testConfig(overrides: Record<string, unknown> = {}): Config {
  return parseConfig({
    vipPrefix: '198.18.100.0/24',
    couriers: { first: 1, last: 60 },
    upstreamDns: ['203.0.113.53'],
    allowedUpstreamNets: ['203.0.113.0/24'],
    stateDir: '/nonexistent/apns-proxy-test',
    ...overrides,
  });
}

export class FakeClock {
  constructor(public t = Date.UTC(2026, 10, 25, 9, 0, 0)) {}
  now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

export const ok = (addresses: string[], ttl = 60): Resolution => ({ kind: 'ok', addresses, ttl, chain: [] });
export const fail = (code: 'E_TIMEOUT' | 'E_SERVFAIL' = 'E_TIMEOUT'): Resolution => ({ kind: 'error', code, message: 'scripted failure' });
export const nx: Resolution = { kind: 'nxdomain', chain: [] };

/** A resolver whose answers the test sets per courier number (by name from the default template). */
export class ScriptedResolver implements Resolver {
  answers = new Map<number, Resolution>();
  calls = 0;
  fallbackAnswer: Resolution = nx;
  async resolveA(name: string): Promise<Resolution> {
    this.calls++;
    const n = Number(/^(\d+)-/.exec(name)?.[1]);
    return this.answers.get(n) ?? this.fallbackAnswer;
  }
  async resolveMany(names: readonly string[]): Promise<Map<string, Resolution>> {
    const out = new Map<string, Resolution>();
    for (const name of names) out.set(name, await this.resolveA(name));
    return out;
  }
}
