// The DNS server's decisions (pure): query bytes + a Responder (built from config and snapshot)
// → reply bytes | forward upstream | drop. Courier replies are precomputed per snapshot; a query
// only costs a header/question scan, one Map lookup and a copy with ID, flags and question patched.
import dnsPacket from 'dns-packet';
import type { Config } from '../core/config.js';
import { type NameEntry, type NumberedSet, PRODUCTION_SET, matchNumbered, nameEntries } from '../core/namesets.js';
import type { Snapshot } from '../sync/mapping.js';
import { parseIPv4 } from '../core/net.js';
import { EDNS_UDP_SIZE } from './client/exchange.js';
import {
  CLASS_ANY, CLASS_IN, EXT_RCODE_BADVERS_HIGH, FLAG2_AA, FLAG2_OPCODE, FLAG2_QR, FLAG2_RD, FLAG2_TC, FLAG3_CD,
  FLAG3_RA, FLAG3_RCODE, HEADER_SIZE, RCODE, TYPE_A, TYPE_SOA, nameText, nameWire, optRecord,
  nameHash, sameName, scanQuestionName, skipName, walkRecords,
} from './wire.js';

export type Transport = 'udp' | 'tcp';

/** Largest reply without EDNS over UDP (RFC 1035 4.2.1). */
export const PLAIN_UDP_LIMIT = 512;
/** Largest message TCP framing can carry. */
export const TCP_LIMIT = 65535;

/** SOA rdata for our negative answers, as unbound's static local zones write it. */
const SOA_MNAME = 'localhost';
const SOA_RNAME = 'nobody.invalid';
const SOA_TIMERS = [1, 3600, 1200, 604800] as const;  // serial, refresh, retry, expire; minimum = dns.ttl

/** The replies for one name of a set: [without EDNS, with our OPT]; qname lower-case, patched per query. */
export interface CourierAnswers {
  readonly n: number | null;                // N in a numbered set; null for an exact name
  readonly set: string;
  readonly qname: Buffer;                   // lower-cased wire name
  readonly vip: string;
  readonly exists: boolean | null;          // as the snapshot says; null = unknown
  readonly forA: readonly [Buffer, Buffer];  // A record, or NXDOMAIN + SOA when exists is false
  readonly forOther: readonly [Buffer, Buffer]; // NODATA + SOA, or NXDOMAIN + SOA when exists is false
}

/** Everything a query needs, computed once per snapshot (or config) change. Immutable. */
export interface Responder {
  readonly couriers: ReadonlyMap<number, CourierAnswers>;  // every name of every set; key: nameHash(qname, seed)
  readonly seed: number;                                  // no two names share a hash under it
  readonly numbered: readonly NumberedSet[];              // names of their shape outside the range: NXDOMAIN here
  readonly ttl: number;
  readonly countLimit: number;                            // push.apple.com TXT "count=" is capped at this (production last)
}

export type Outcome = 'courier' | 'nodata' | 'nxdomain' | 'refused' | 'formerr' | 'notimp' | 'badvers';

/** A non-courier question to ask upstream, and what relaying the answer back needs. */
export interface ForwardQuery {
  readonly id: number;
  readonly rd: boolean;
  readonly name: string;       // as asked, case kept (0x20)
  readonly type: string;       // dns-packet's name: 'A', 'UNKNOWN_65', ...
  readonly class: string;
  readonly question: Buffer;   // the client's question section bytes, echoed in the reply
  readonly edns: boolean;      // the client sent OPT: the reply carries ours, else none
  readonly dnssecOk: boolean;  // its OPT had DO: asked upstream with DO too (a validating client gets signatures)
  readonly checkingDisabled: boolean;  // CD: asked upstream with CD too (the client validates itself)
  readonly limit: number;      // the largest reply this client takes on its transport
  readonly countLimit?: number; // push.apple.com TXT: a "count=N" above this is rewritten to it (rewriteTxtCount)
}

export type Decision =
  | { readonly kind: 'reply'; readonly bytes: Buffer; readonly outcome: Outcome; readonly courier?: number }
  | { readonly kind: 'forward'; readonly query: ForwardQuery }
  | { readonly kind: 'drop'; readonly reason: 'short' | 'response' };

export type ResponderConfig = Pick<Config, 'couriers' | 'vipPrefix' | 'sets'> & { readonly dns: Pick<Config['dns'], 'ttl'> };

/** The zone our SOA names for a name: under the numbered label (numbered sets), else the parent. */
function zoneOffsetOf(name: string, set: NumberedSet | undefined): number | undefined {
  const labels = name.split('.');
  const skip = set ? set.template.split('.').findIndex((l) => l.includes('{n}')) + 1 : 1;
  if (skip >= labels.length) return undefined;  // the root
  return HEADER_SIZE + labels.slice(0, skip).reduce((sum, l) => sum + 1 + l.length, 0);
}

/**
 * Precomputes the replies of every name of every set. Names and VIPs come from the snapshot (what
 * the kernel was given, exact names with their pool VIPs); before the first snapshot, numbered sets
 * from the config alone (exact names have no VIP until the pool is read). Existence is unknown (null)
 * for names the snapshot does not have.
 */
export function buildResponder(config: ResponderConfig, snapshot: Snapshot | undefined): Responder {
  const entries: CourierAnswers[] = [];
  const ttl = config.dns.ttl;
  const opt = optRecord(EDNS_UDP_SIZE);
  const numbered = config.sets.filter((s): s is NumberedSet => s.kind === 'numbered');
  const bySet = new Map(numbered.map((s) => [s.id, s]));
  const names: readonly (NameEntry & { exists?: boolean | null })[] = snapshot ? [...snapshot.names.values()] : nameEntries(config.sets, new Map());
  for (const entry of names) {
    const { name, vip, n, set } = entry;
    const exists = entry.exists ?? null;
    const qname = nameWire(name);
    // The SOA owner is the zone under the name's own label ("push.apple.com"): a pointer into the question.
    const zone = zoneOffsetOf(name, bySet.get(set));
    const negative = (rcode: number) => negativeReply(qname, rcode, zone, ttl);
    const forA = exists === false ? negative(RCODE.NXDOMAIN) : addressReply(qname, vip, ttl);
    const forOther = negative(exists === false ? RCODE.NXDOMAIN : RCODE.NOERROR);
    entries.push(Object.freeze({
      n, set, qname, vip, exists,
      forA: Object.freeze([forA, withOpt(forA, opt)] as const),
      forOther: Object.freeze([forOther, withOpt(forOther, opt)] as const),
    }));
  }
  const production = bySet.get(PRODUCTION_SET);
  const countLimit = production?.last ?? config.couriers.last;
  for (let seed = 0; ; seed++) {
    const couriers = new Map(entries.map((c) => [nameHash(c.qname, seed), c]));
    if (couriers.size === entries.length) return Object.freeze({ couriers, seed, numbered, ttl, countLimit });
  }
}

function header(flags2: number, flags3: number, qd: number, an: number, ns: number, ar: number): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h[2] = flags2;
  h[3] = flags3;
  h.writeUInt16BE(qd, 4);
  h.writeUInt16BE(an, 6);
  h.writeUInt16BE(ns, 8);
  h.writeUInt16BE(ar, 10);
  return h;
}

function question(qname: Buffer, type: number, klass: number): Buffer {
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(klass, 2);
  return Buffer.concat([qname, tail]);
}

/** RR header with the owner a pointer to `ownerOffset`, or the root when undefined. */
function rrHeader(ownerOffset: number | undefined, type: number, ttl: number, rdlen: number): Buffer {
  const owner = ownerOffset === undefined ? Buffer.from([0]) : Buffer.from([0xc0 | (ownerOffset >> 8), ownerOffset & 0xff]);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(type, 0);
  fixed.writeUInt16BE(CLASS_IN, 2);
  fixed.writeUInt32BE(ttl, 4);
  fixed.writeUInt16BE(rdlen, 8);
  return Buffer.concat([owner, fixed]);
}

function addressReply(qname: Buffer, vip: string, ttl: number): Buffer {
  const addr = Buffer.alloc(4);
  addr.writeUInt32BE(parseIPv4(vip)!, 0);
  return Buffer.concat([
    header(FLAG2_QR | FLAG2_AA, FLAG3_RA, 1, 1, 0, 0),
    question(qname, TYPE_A, CLASS_IN),
    rrHeader(HEADER_SIZE, TYPE_A, ttl, 4), addr,  // owner: pointer to the question name
  ]);
}

function negativeReply(qname: Buffer, rcode: number, zoneOffset: number | undefined, ttl: number): Buffer {
  const timers = Buffer.alloc(20);
  SOA_TIMERS.forEach((v, i) => timers.writeUInt32BE(v, i * 4));
  timers.writeUInt32BE(ttl, 16);  // minimum: the negative-caching TTL (RFC 2308)
  const rdata = Buffer.concat([nameWire(SOA_MNAME), nameWire(SOA_RNAME), timers]);
  return Buffer.concat([
    header(FLAG2_QR | FLAG2_AA, FLAG3_RA | rcode, 1, 0, 1, 0),
    question(qname, TYPE_A, CLASS_IN),  // type and class are overwritten by the client's
    rrHeader(zoneOffset, TYPE_SOA, ttl, rdata.length), rdata,
  ]);
}

function withOpt(reply: Buffer, opt: Buffer): Buffer {
  const out = Buffer.concat([reply, opt]);
  out.writeUInt16BE(out.readUInt16BE(10) + 1, 10);
  return out;
}

const DROP_SHORT: Decision = Object.freeze({ kind: 'drop', reason: 'short' });
const DROP_RESPONSE: Decision = Object.freeze({ kind: 'drop', reason: 'response' });
const OUR_OPT = optRecord(EDNS_UDP_SIZE);

/**
 * Decides what to do with one query from a client. `allowed` is the client ACL's verdict.
 * Never throws on any input: unreadable header → drop, unparsable rest → FORMERR.
 */
export function answerQuery(r: Responder, msg: Buffer, transport: Transport, allowed: boolean): Decision {
  if (msg.length < HEADER_SIZE) return DROP_SHORT;
  const flags2 = msg[2]!;
  if (flags2 & FLAG2_QR) return DROP_RESPONSE;  // never answer answers: that is how loops start
  if (flags2 & FLAG2_OPCODE) return reply(headerOnly(msg, RCODE.NOTIMP), 'notimp');
  if (msg[4] !== 0 || msg[5] !== 1) return reply(headerOnly(msg, RCODE.FORMERR), 'formerr');
  const scan = scanQuestionName(msg, HEADER_SIZE, r.seed);
  if (scan === undefined || scan.end + 4 > msg.length) return reply(headerOnly(msg, RCODE.FORMERR), 'formerr');
  const questionEnd = scan.end + 4;
  const sections = walkRecords(msg, questionEnd);
  if (sections === undefined) return reply(headerOnly(msg, RCODE.FORMERR), 'formerr');
  const opt = sections.opt;
  const edns = opt !== undefined;
  if (!allowed) return reply(withQuestion(msg, questionEnd, RCODE.REFUSED, edns), 'refused');
  if (edns && opt.version !== 0) {
    return reply(withQuestion(msg, questionEnd, 0, true, EXT_RCODE_BADVERS_HIGH), 'badvers');
  }
  const qtype = (msg[scan.end]! << 8) | msg[scan.end + 1]!;
  const qclass = (msg[scan.end + 2]! << 8) | msg[scan.end + 3]!;

  const courier = r.couriers.get(scan.hash);
  if (courier !== undefined && courier.qname.length === scan.end - HEADER_SIZE && sameName(courier.qname, msg, HEADER_SIZE)) {
    if (qclass !== CLASS_IN && qclass !== CLASS_ANY) return reply(withQuestion(msg, questionEnd, RCODE.REFUSED, edns), 'refused');
    const isA = qtype === TYPE_A;
    // Never over 512 bytes (a 255-byte name gives < 350), so never truncated: no TC check here.
    const template = (isA ? courier.forA : courier.forOther)[edns ? 1 : 0];
    const out = Buffer.allocUnsafe(template.length);
    out.set(template);
    out[0] = msg[0]!;
    out[1] = msg[1]!;
    out[2] = template[2]! | (flags2 & FLAG2_RD);
    out[3] = template[3]! | (msg[3]! & FLAG3_CD);
    // the question as asked: case (0x20), type, class; a short loop beats a native copy call here
    for (let i = HEADER_SIZE; i < questionEnd; i++) out[i] = msg[i]!;
    const outcome: Outcome = courier.exists === false ? 'nxdomain' : isA ? 'courier' : 'nodata';
    return courier.n === null ? { kind: 'reply', bytes: out, outcome } : { kind: 'reply', bytes: out, outcome, courier: courier.n };
  }

  const type = typeName(qtype);
  const klass = className(qclass);
  // Names with dots, backslashes or non-ASCII inside labels cannot be asked upstream faithfully.
  if (!scan.plain || type === undefined || klass === undefined) {
    return reply(withQuestion(msg, questionEnd, RCODE.NOTIMP, edns), 'notimp');
  }
  const name = nameText(msg, HEADER_SIZE);
  const lower = name.toLowerCase().replace(/\.$/, '');
  // A name of a numbered set's shape outside its range (255-courier…): no VIP of ours stands for
  // it, and a forwarded answer would hand the device an address it cannot reach. NXDOMAIN here.
  const shaped = r.numbered.length > 0 ? matchNumbered(r.numbered, lower) : undefined;
  if (shaped !== undefined && (qclass === CLASS_IN || qclass === CLASS_ANY)) {
    const qname = nameWire(lower);
    if (qname.length === scan.end - HEADER_SIZE) {
      const out = withOpt0(negativeReply(qname, RCODE.NXDOMAIN, zoneOffsetOf(lower, shaped.set), r.ttl), edns);
      out[0] = msg[0]!;
      out[1] = msg[1]!;
      out[2] = out[2]! | (flags2 & FLAG2_RD);
      out[3] = out[3]! | (msg[3]! & FLAG3_CD);
      for (let i = HEADER_SIZE; i < questionEnd; i++) out[i] = msg[i]!;
      return reply(out, 'nxdomain');
    }
  }
  const countLimit = qtype === TYPE_TXT && lower === COUNT_NAME ? r.countLimit : undefined;
  return {
    kind: 'forward',
    query: {
      id: (msg[0]! << 8) | msg[1]!,
      rd: (flags2 & FLAG2_RD) !== 0,
      name,
      type, class: klass,
      question: Buffer.from(msg.subarray(HEADER_SIZE, questionEnd)),
      edns,
      dnssecOk: opt?.dnssecOk ?? false,
      checkingDisabled: (msg[3]! & FLAG3_CD) !== 0,
      limit: transport === 'tcp' ? TCP_LIMIT : udpLimit(opt?.udpSize),
      ...(countLimit !== undefined ? { countLimit } : {}),
    },
  };
}

const TYPE_TXT = 16;
/** The name whose TXT "count=N" tells a device without its bag how many couriers there are (0..N). */
export const COUNT_NAME = 'push.apple.com';

function withOpt0(reply: Buffer, edns: boolean): Buffer {
  return edns ? withOpt(reply, OUR_OPT) : reply;
}

/**
 * push.apple.com TXT as relayed to a client, with every "count=N" above `limit` (the couriers this
 * router serves) rewritten to `limit`: a device that picks a courier 0..N must pick one we have.
 * Pure: returns the new bytes and the highest count seen, or undefined when nothing needed changing
 * (or the reply cannot be decoded: it is then relayed as it came).
 */
export function rewriteTxtCount(reply: Buffer, limit: number): { bytes: Buffer; from: number } | undefined {
  let packet: dnsPacket.Packet;
  try {
    packet = dnsPacket.decode(reply);
  } catch {
    return undefined;
  }
  let from = -1;
  const answers = (packet.answers ?? []).map((a) => {
    if (a.type !== 'TXT' || a.name.toLowerCase().replace(/\.$/, '') !== COUNT_NAME) return a;
    const data = (Array.isArray(a.data) ? a.data : [a.data]).map((chunk) => {
      const text = Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
      const m = /^count=(\d{1,9})$/.exec(text);
      if (!m || Number(m[1]) <= limit) return chunk;
      from = Math.max(from, Number(m[1]));
      return Buffer.from(`count=${limit}`, 'latin1');
    });
    return { ...a, data };
  });
  if (from < 0) return undefined;
  try {
    const bytes = dnsPacket.encode({ ...packet, answers } as dnsPacket.Packet);
    return { bytes: Buffer.from(bytes), from };
  } catch {
    return undefined;
  }
}

/** The client's limit, capped at our own EDNS size so replies are not fragmented (DNS flag day 2020). */
export function udpLimit(clientSize: number | undefined): number {
  if (clientSize === undefined) return PLAIN_UDP_LIMIT;
  return Math.min(Math.max(clientSize, PLAIN_UDP_LIMIT), EDNS_UDP_SIZE);
}

function reply(bytes: Buffer, outcome: Outcome): Decision {
  return { kind: 'reply', bytes, outcome };
}

/** FORMERR / NOTIMP: the query's ID, opcode and RD, no sections (the rest may be unreadable). */
function headerOnly(msg: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER_SIZE);
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  out[2] = FLAG2_QR | (msg[2]! & (FLAG2_OPCODE | FLAG2_RD));
  out[3] = FLAG3_RA | rcode;
  return out;
}

/** A reply of the question alone: REFUSED, SERVFAIL, BADVERS. */
function withQuestion(msg: Buffer, questionEnd: number, rcode: number, edns: boolean, extRcodeHigh = 0): Buffer {
  const q = msg.subarray(HEADER_SIZE, questionEnd);
  const out = Buffer.alloc(HEADER_SIZE + q.length + (edns ? OUR_OPT.length : 0));
  out[0] = msg[0]!;
  out[1] = msg[1]!;
  out[2] = FLAG2_QR | (msg[2]! & FLAG2_RD);
  out[3] = FLAG3_RA | (msg[3]! & FLAG3_CD) | rcode;
  out[5] = 1;
  q.copy(out, HEADER_SIZE);
  if (edns) {
    out[11] = 1;
    OUR_OPT.copy(out, HEADER_SIZE + q.length);
    out[HEADER_SIZE + q.length + 5] = extRcodeHigh;
  }
  return out;
}

/** SERVFAIL for a forwarded query (upstream silent, failing, or too many forwards in flight). */
export function servfail(q: ForwardQuery): Buffer {
  return questionReply(q, FLAG2_QR | (q.rd ? FLAG2_RD : 0), FLAG3_RA | RCODE.SERVFAIL, 0);
}

function questionReply(q: ForwardQuery, flags2: number, flags3: number, extRcodeHigh: number): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + q.question.length + (q.edns ? OUR_OPT.length : 0));
  out.writeUInt16BE(q.id, 0);
  out[2] = flags2;
  out[3] = flags3;
  out[5] = 1;
  q.question.copy(out, HEADER_SIZE);
  if (q.edns) {
    out[11] = 1;
    OUR_OPT.copy(out, HEADER_SIZE + q.question.length);
    out[HEADER_SIZE + q.question.length + 5] = extRcodeHigh;
  }
  return out;
}

/**
 * An upstream reply (already matched to the question by exchange()) made into the client's reply:
 * client's ID and question bytes, upstream's OPT replaced by ours or removed, TC (question only)
 * when it exceeds the client's limit. Undefined when the reply cannot be walked.
 */
export function relayReply(q: ForwardQuery, raw: Buffer): Buffer | undefined {
  if (raw.length < HEADER_SIZE || raw[4] !== 0 || raw[5] !== 1) return undefined;
  const nameEnd = skipName(raw, HEADER_SIZE);
  if (nameEnd === undefined || nameEnd + 4 > raw.length) return undefined;
  const questionEnd = nameEnd + 4;
  const s = walkRecords(raw, questionEnd);
  if (s === undefined) return undefined;
  // Same length means the same name in other case: echo the client's bytes (0x20). A compressed
  // upstream question (never seen in practice) keeps its own bytes: pointers into it stay valid.
  const ourQuestion = questionEnd - HEADER_SIZE === q.question.length ? q.question : raw.subarray(HEADER_SIZE, questionEnd);
  const shift = HEADER_SIZE + ourQuestion.length - questionEnd;
  let records = raw.subarray(questionEnd, s.recordsEnd);
  let arDelta = 0;
  let tail: Buffer | undefined;
  if (s.opt && !q.edns && s.optIsLast) {
    records = raw.subarray(questionEnd, s.opt.start);  // no OPT for a client that sent none (RFC 6891 7)
    arDelta = -1;
  } else if (!s.opt && q.edns) {
    tail = OUR_OPT;
    arDelta = 1;
  }
  const ext = s.opt?.extRcode ?? 0;
  if (HEADER_SIZE + ourQuestion.length + records.length + (tail?.length ?? 0) > q.limit) {
    return questionReply(q, raw[2]! | FLAG2_TC, raw[3]!, q.edns ? ext : 0);
  }
  const out = Buffer.concat(tail ? [raw.subarray(0, HEADER_SIZE), ourQuestion, records, tail] : [raw.subarray(0, HEADER_SIZE), ourQuestion, records]);
  out.writeUInt16BE(q.id, 0);
  if (arDelta !== 0) out.writeUInt16BE(out.readUInt16BE(10) + arDelta, 10);
  // A kept upstream OPT advertises our size, not upstream's (the root owner is 1 byte, then type).
  if (s.opt && (q.edns || !s.optIsLast)) out.writeUInt16BE(EDNS_UDP_SIZE, s.opt.start + shift + 3);
  return out;
}

// dns-packet's names for types and classes, learnt from the codec itself so exchange() round-trips them.
const typeNames = new Map<number, string>();
const classNames = new Map<number, string | undefined>();

function probe(type: number, klass: number): dnsPacket.Question | undefined {
  const bytes = Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, type >> 8, type & 0xff, klass >> 8, klass & 0xff]);
  try {
    return dnsPacket.decode(bytes).questions?.[0];
  } catch {
    return undefined;
  }
}

function typeName(type: number): string | undefined {
  let name = typeNames.get(type);
  if (name === undefined) {
    name = probe(type, CLASS_IN)?.type;
    if (name === undefined) return undefined;
    typeNames.set(type, name);  // at most 65536 short strings
  }
  return name;
}

function className(klass: number): string | undefined {
  if (!classNames.has(klass)) {
    const name = probe(TYPE_A, klass)?.class;
    // dns-packet cannot encode classes it has no name for (they become 0): not forwardable
    classNames.set(klass, name === undefined || name.startsWith('UNKNOWN_') ? undefined : name);
  }
  return classNames.get(klass);
}

/** Reads the rcode (with EDNS extension ignored) of a reply we built, for logs and tests. */
export function rcodeOf(reply: Buffer): number {
  return reply[3]! & FLAG3_RCODE;
}
