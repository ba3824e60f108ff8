// IPv4 and CIDR helpers (pure). Addresses are compared as unsigned 32-bit integers.
import { isIP } from 'node:net';

/** Strict dotted quad: four decimal octets 0..255, no leading zeros, no spaces. */
export function parseIPv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIPv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

export interface Cidr4 {
  readonly text: string;     // canonical "a.b.c.d/len"
  readonly network: number;  // first address
  readonly length: number;   // prefix length 0..32
  readonly mask: number;     // unsigned mask
}

export type CidrProblem = 'syntax' | 'host-bits';

/** Parses "a.b.c.d/len" (or a bare address as /32). Host bits must be zero. */
export function parseCidr4(text: string): Cidr4 | CidrProblem {
  const slash = text.indexOf('/');
  const addrText = slash === -1 ? text : text.slice(0, slash);
  const lenText = slash === -1 ? '32' : text.slice(slash + 1);
  const addr = parseIPv4(addrText);
  if (addr === undefined || !/^(0|[1-9][0-9]?)$/.test(lenText)) return 'syntax';
  const length = Number(lenText);
  if (length > 32) return 'syntax';
  const mask = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
  if (((addr & ~mask) >>> 0) !== 0) return 'host-bits';
  return { text: `${formatIPv4(addr)}/${length}`, network: addr, length, mask };
}

export function cidrContains(cidr: Cidr4, addr: number): boolean {
  return ((addr & cidr.mask) >>> 0) === cidr.network;
}

export function inAnyCidr(cidrs: readonly Cidr4[], address: string): boolean {
  const addr = parseIPv4(address);
  return addr !== undefined && cidrs.some((c) => cidrContains(c, addr));
}

/** Numeric sort and de-duplication of IPv4 addresses; non-IPv4 strings are dropped. */
export function sortUniqueIPv4(addresses: Iterable<string>): string[] {
  const values = new Set<number>();
  for (const a of addresses) {
    const v = parseIPv4(a);
    if (v !== undefined) values.add(v);
  }
  return [...values].sort((a, b) => a - b).map(formatIPv4);
}

export interface HostPort {
  readonly host: string;  // IPv4 or IPv6 literal, no brackets
  readonly port: number;
  readonly family: 4 | 6;
}

/**
 * Parses "1.2.3.4", "1.2.3.4:53", "::1" or "[::1]:53". Returns undefined when malformed.
 * Only literal addresses: a router's DNS forwarder must not itself depend on DNS.
 */
export function parseHostPort(text: string, defaultPort: number): HostPort | undefined {
  let host = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (isIP(host) !== 6) return undefined;
  } else if (isIP(text) === 6) {
    host = text;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon !== -1) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
    if (parseIPv4(host) === undefined) return undefined;
  }
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(portText)) return undefined;
    port = Number(portText);
    if (port > 65535) return undefined;
  }
  return { host, port, family: isIP(host) === 6 ? 6 : 4 };
}

export function formatHostPort(hp: { host: string; port: number }): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
