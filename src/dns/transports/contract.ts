// The contract between the DNS server and its transports (node:dgram UDP, the native UDP fast path,
// TCP): a transport binds listen addresses, carries each query to the pipeline and its reply back
// through a ReplyWriter (CoreDNS's ResponseWriter: tests swap it for a fake), keeps its own counts.
import type { HostPort } from '../../core/net.js';
import type { Transport } from '../answer.js';
import type { Reply } from '../pipeline.js';
import type { DnsState } from '../state.js';
import type { DnsStats } from '../stats.js';

/** The pipeline as a transport sees it (Pipeline.handle). */
export type Handler = (msg: Buffer, client: string, transport: Transport, charged?: boolean) => Reply;

/** One query's way back to its client. */
export interface ReplyWriter {
  readonly client: string;        // the client's address as Node writes it
  readonly transport: Transport;
  /** Sends a reply; a writer whose socket has gone drops it. */
  reply(bytes: Buffer): void;
}

/** One listen address bound by a transport. */
export interface Binding {
  readonly port: number;
  /** Unbinds just this address (the other side of a UDP+TCP pair could not be bound). */
  release(): void;
}

export interface DnsTransport {
  /** Binds `hp` (port 0: any free port) and serves it; rejects with the OS error (EADDRINUSE, ...). */
  bind(hp: HostPort): Promise<Binding>;
  /** A new state was adopted: apply what the sockets themselves enforce (e.g. dns.tcpMaxConnections). */
  update?(state: DnsState): void;
  /** Adds the counts this transport keeps itself to `into` (the pipeline counts the rest). */
  stats(into: DnsStats): void;
  /** Stops serving: replies still due are dropped, sockets are released. */
  close(): Promise<void>;
}

/**
 * Runs one query through `handle` and writes its reply through `w`: at once, or when the forward
 * completes. Returns that completion for a forwarded query (TCP waits for it before a half-close).
 */
export function dispatch(handle: Handler, msg: Buffer, w: ReplyWriter, charged?: boolean): Promise<void> | undefined {
  const out = handle(msg, w.client, w.transport, charged);
  if (out === undefined) return undefined;
  if (!(out instanceof Promise)) return void w.reply(out);
  return out.then((bytes) => w.reply(bytes));
}
