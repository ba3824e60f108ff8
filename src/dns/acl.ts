// Which clients may use the DNS server (dns.allowClients). Anyone else gets REFUSED: never an open resolver.
import { BlockList, isIP } from 'node:net';

/**
 * One dns.allowClients entry as BlockList takes it: address, family and prefix length (a bare
 * address is a /32 or /128; host bits are left for BlockList to ignore). undefined: not an address.
 */
export function aclEntry(cidr: string): { address: string; family: 4 | 6; prefix: number } | undefined {
  const slash = cidr.lastIndexOf('/');
  const address = slash === -1 ? cidr : cidr.slice(0, slash);
  const family = isIP(address);
  if (family !== 4 && family !== 6) return undefined;
  return { address, family, prefix: slash === -1 ? (family === 4 ? 32 : 128) : Number(cidr.slice(slash + 1)) };
}

/** Verdicts are cached per address string; the cache is bounded and simply cleared when full. */
const CACHE_LIMIT = 4096;

export class ClientAcl {
  private readonly list = new BlockList();
  private readonly cache = new Map<string, boolean>();
  private lastAddress = '';
  private lastVerdict = false;

  /** `cidrs` as config validated them ("192.0.2.0/24", "fd00::/8"); an empty list allows nobody. */
  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const entry = aclEntry(cidr);
      if (entry === undefined) throw new RangeError(`ClientAcl: ${JSON.stringify(cidr)} is not a CIDR`);
      this.list.addSubnet(entry.address, entry.prefix, entry.family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  allows(address: string): boolean {
    // most datagrams come from the client that sent the previous one
    if (address === this.lastAddress) return this.lastVerdict;
    let verdict = this.cache.get(address);
    if (verdict === undefined) verdict = this.remember(address);
    this.lastAddress = address;
    this.lastVerdict = verdict;
    return verdict;
  }

  private remember(address: string): boolean {
    const verdict = this.check(address);
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(address, verdict);
    return verdict;
  }

  private check(address: string): boolean {
    // a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d: judge them by the IPv4 rules
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const plain = mapped ? mapped[1]! : address.replace(/%.*$/, '');
    const family = isIP(plain);
    if (family === 0) return false;
    return this.list.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}
