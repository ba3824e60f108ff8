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
  /** Answers for any other name (the other name sets), by name. */
  byName = new Map<string, Resolution>();
  calls = 0;      // production courier names asked
  otherCalls = 0; // every other name asked
  fallbackAnswer: Resolution = nx;
  async resolveA(name: string): Promise<Resolution> {
    const m = /^(\d+)-courier\.push\.apple\.com$/.exec(name);
    if (m) this.calls++;
    else this.otherCalls++;
    return (m ? this.answers.get(Number(m[1])) : this.byName.get(name)) ?? this.fallbackAnswer;
  }
  async resolveMany(names: readonly string[]): Promise<Map<string, Resolution>> {
    const out = new Map<string, Resolution>();
    for (const name of names) out.set(name, await this.resolveA(name));
    return out;
  }
}

/** Results or records by courier number → by name (the default production template), as the mapping takes them. */
export function byCourier<T>(entries: Iterable<readonly [number, T]>, template = '{n}-courier.push.apple.com'): Map<string, T> {
  return new Map([...entries].map(([n, v]) => [template.replace('{n}', String(n)), v]));
}
