// Errors carry a stable `code` so callers and tests branch on it, never on message text.

export type ErrorCode =
  | 'E_CONFIG'        // configuration file missing, unreadable or invalid
  | 'E_CRON'          // a cron expression (refresh.schedule) that parseCron refuses
  | 'E_USAGE'         // bad command line
  | 'E_NFT'           // nft refused a transaction or could not be run
  | 'E_ROUTING'       // ip (the fallback's policy routing) failed or could not be run
  | 'E_STATE'         // state file unreadable or corrupt
  | 'E_TIMEOUT'       // upstream DNS did not answer in time
  | 'E_SERVFAIL'      // upstream DNS answered SERVFAIL
  | 'E_REFUSED'       // upstream DNS answered REFUSED
  | 'E_RCODE'         // upstream DNS answered another error rcode
  | 'E_MALFORMED'     // upstream DNS answer could not be decoded or made no sense
  | 'E_CNAME_LOOP'    // CNAME chain loops (a name comes back)
  | 'E_CNAME_LONG'    // CNAME chain longer than the resolver's hop limit (maxChain), without a loop
  | 'E_NETWORK'       // socket error talking to upstream DNS
  | 'E_NOT_ALLOWED'   // every address upstream gave is outside allowedUpstreamNets
  | 'E_CONTROL'       // talking to the running daemon failed, or another daemon holds the lock
  | 'E_LISTEN'        // a listener could not be started
  | 'E_NOT_OURS'      // a table, route or rule we would replace or delete belongs to someone else
  | 'E_UNSAFE'        // the config clashes with this machine (VIP prefix on a local network, DNS loop)
  | 'E_NATIVE_MISSING' // a native addon (fastpath, relay) is neither prebuilt for this machine nor built
  | 'E_NATIVE'        // a native addon call failed: bad arguments, a closed handle, out of memory, a thread or Node-API call that failed
  | 'E_NATIVE_ADDR';  // the fastpath addon cannot bind that host: not an IP address literal, or too many sockets

export class ApnsProxyError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ApnsProxyError';
    this.code = code;
  }
}

/** Configuration errors name the key (dotted path) and the offending value. */
export class ConfigError extends ApnsProxyError {
  readonly key: string;
  readonly value: unknown;
  constructor(key: string, value: unknown, problem: string) {
    super('E_CONFIG', `config: ${key}: ${problem}, got ${show(value)}`);
    this.name = 'ConfigError';
    this.key = key;
    this.value = value;
  }
}

/** Renders a bad value for an error message: short, and unambiguous about its type. */
export function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
