// DNS wire format, read and written directly (pure): just enough to answer queries without a
// decode/encode round trip per packet. Names are never followed through compression pointers here,
// so a pointer loop in hostile input cannot make anything loop.

/** Fixed header size (RFC 1035 4.1.1). */
export const HEADER_SIZE = 12;
/** Longest name on the wire, length bytes and root included (RFC 1035 3.1). */
export const MAX_NAME_WIRE = 255;

export const TYPE_A = 1;
export const TYPE_SOA = 6;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** BADVERS is extended rcode 16: 0 in the header, 1 in the OPT record's upper rcode bits. */
export const EXT_RCODE_BADVERS_HIGH = 1;

// Header byte 2: QR opcode(4) AA TC RD; byte 3: RA Z AD CD rcode(4).
export const FLAG2_QR = 0x80;
export const FLAG2_OPCODE = 0x78;
export const FLAG2_AA = 0x04;
export const FLAG2_TC = 0x02;
export const FLAG2_RD = 0x01;
export const FLAG3_RA = 0x80;
export const FLAG3_CD = 0x10;
export const FLAG3_RCODE = 0x0f;

/** Where a question name ends, whether it can be spelt as text, and the hash of its lower-cased form. */
export interface NameScan {
  end: number;          // offset just after the name's terminating zero
  plain: boolean;       // every label printable ASCII without '.' or '\': safe to spell as text
  hash: number;         // nameHash of the lower-cased wire bytes
}

/** FNV-1a over bytes, seeded; the Responder picks a seed under which no two courier names collide. */
export function nameHash(bytes: Uint8Array, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 16777619);
  return h >>> 0;
}

/**
 * Reads an uncompressed name at `off` (a question name may not use pointers: nothing precedes it),
 * hashing its lower-cased bytes like nameHash. Undefined when malformed.
 */
export function scanQuestionName(msg: Uint8Array, off: number, seed: number): NameScan | undefined {
  let p = off;
  let plain = true;
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (;;) {
    if (p >= msg.length) return undefined;
    const len = msg[p]!;
    if (len === 0) {
      if (p + 1 - off > MAX_NAME_WIRE) return undefined;
      return { end: p + 1, plain, hash: Math.imul(h, 16777619) >>> 0 };  // h ^ 0 for the root byte
    }
    // 0xC0 is a pointer, 0x40/0x80 are obsolete extended label types: not in a question
    if (len > 63) return undefined;
    if (p + 1 + len - off >= MAX_NAME_WIRE || p + 1 + len >= msg.length) return undefined;
    h = Math.imul(h ^ len, 16777619);
    for (let i = p + 1; i <= p + len; i++) {
      const c = msg[i]!;
      if (c < 0x21 || c > 0x7e || c === 0x2e || c === 0x5c) plain = false;
      h = Math.imul(h ^ (c >= 0x41 && c <= 0x5a ? c | 0x20 : c), 16777619);
    }
    p += 1 + len;
  }
}

/** Whether the name at `off` in msg is `lower` (lower-cased wire bytes), ignoring ASCII case. */
export function sameName(lower: Uint8Array, msg: Uint8Array, off: number): boolean {
  if (off + lower.length > msg.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = msg[off + i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== lower[i]) return false;
  }
  return true;
}

/** Skips a possibly compressed name without following pointers; undefined when it runs off the end. */
export function skipName(msg: Uint8Array, off: number): number | undefined {
  let p = off;
  for (;;) {
    if (p >= msg.length) return undefined;
    const len = msg[p]!;
    if (len === 0) return p + 1;
    if ((len & 0xc0) === 0xc0) return p + 2 <= msg.length ? p + 2 : undefined;
    if (len > 63) return undefined;
    p += 1 + len;
    if (p - off >= MAX_NAME_WIRE) return undefined;
  }
}

/** The EDNS0 OPT record of a message, as far as we use it. */
export interface Opt {
  start: number;         // offset of the record (its root name byte)
  end: number;           // offset after its RDATA
  udpSize: number;       // requestor's payload size (the CLASS field)
  extRcode: number;      // upper 8 bits of the extended rcode
  version: number;
  dnssecOk: boolean;     // the DO flag: the requestor wants DNSSEC records (RFC 3225)
}

export interface Sections {
  questionEnd: number;   // offset after the (single) question
  recordsEnd: number;    // offset after the last record counted in the header
  opt: Opt | undefined;
  optIsLast: boolean;    // the OPT record is the message's last record
}

/**
 * Walks the records after a question ending at `questionEnd` to find the OPT record.
 * Returns undefined when the counts do not fit the bytes, an OPT is malformed or appears twice
 * (RFC 6891 6.1.1: FORMERR). EDNS options are only checked for framing, never interpreted.
 */
export function walkRecords(msg: Uint8Array, questionEnd: number): Sections | undefined {
  const an = (msg[6]! << 8) | msg[7]!;
  const ns = (msg[8]! << 8) | msg[9]!;
  const ar = (msg[10]! << 8) | msg[11]!;
  const total = an + ns + ar;
  let p = questionEnd;
  let opt: Opt | undefined;
  let optIndex = -1;
  for (let i = 0; i < total; i++) {
    const start = p;
    const nameEnd = skipName(msg, p);
    if (nameEnd === undefined || nameEnd + 10 > msg.length) return undefined;
    const type = (msg[nameEnd]! << 8) | msg[nameEnd + 1]!;
    const rdlen = (msg[nameEnd + 8]! << 8) | msg[nameEnd + 9]!;
    const end = nameEnd + 10 + rdlen;
    if (end > msg.length) return undefined;
    if (type === TYPE_OPT) {
      // only in the additional section, only once, owned by the root
      if (i < an + ns || opt !== undefined || msg[start] !== 0) return undefined;
      if (!optionsFramed(msg, nameEnd + 10, end)) return undefined;
      opt = {
        start, end,
        udpSize: (msg[nameEnd + 2]! << 8) | msg[nameEnd + 3]!,
        extRcode: msg[nameEnd + 4]!,
        version: msg[nameEnd + 5]!,
        dnssecOk: (msg[nameEnd + 6]! & 0x80) !== 0,
      };
      optIndex = i;
    }
    p = end;
  }
  return { questionEnd, recordsEnd: p, opt, optIsLast: optIndex === total - 1 && optIndex >= 0 };
}

function optionsFramed(msg: Uint8Array, from: number, to: number): boolean {
  let p = from;
  while (p < to) {
    if (p + 4 > to) return false;
    p += 4 + ((msg[p + 2]! << 8) | msg[p + 3]!);
  }
  return p === to;
}

/** Our OPT record: root owner, type 41, payload size, extended rcode high bits, version 0, no options. */
export function optRecord(udpSize: number, extRcodeHigh = 0): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(TYPE_OPT, 1);
  b.writeUInt16BE(udpSize, 3);
  b[5] = extRcodeHigh;
  return b;
}

/** Text spelling of a plain (see NameScan.plain) uncompressed name, case kept; '.' for the root. */
export function nameText(msg: Uint8Array, off: number): string {
  const labels: string[] = [];
  let p = off;
  while (p < msg.length && msg[p]! !== 0 && msg[p]! <= 63) {
    labels.push(Buffer.from(msg.buffer, msg.byteOffset + p + 1, msg[p]!).toString('latin1'));
    p += 1 + msg[p]!;
  }
  return labels.length === 0 ? '.' : labels.join('.');
}

/** Presentation text of a name for logs: like nameText but escapes what is not plain (RFC 4343). */
export function nameForLog(msg: Uint8Array, off: number): string {
  const labels: string[] = [];
  let p = off;
  while (p < msg.length && msg[p]! !== 0 && msg[p]! <= 63 && labels.length < 128) {
    let s = '';
    for (let i = p + 1; i <= p + msg[p]! && i < msg.length; i++) {
      const c = msg[i]!;
      s += c >= 0x21 && c <= 0x7e && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`;
    }
    labels.push(s);
    p += 1 + msg[p]!;
  }
  return labels.length === 0 ? '.' : labels.join('.');
}

/** "name TYPE" of a query's first question for logs (type as a number when the name is unreadable). */
export function questionForLog(msg: Uint8Array): string {
  const name = nameForLog(msg, HEADER_SIZE);
  const end = skipName(msg, HEADER_SIZE);
  if (end === undefined || end + 2 > msg.length) return name;
  const type = (msg[end]! << 8) | msg[end + 1]!;
  return `${name} ${TYPE_NAMES[type] ?? `TYPE${type}`}`;
}

const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 64: 'SVCB', 65: 'HTTPS', 255: 'ANY',
};

/** Lower-cased wire form of a text name ("a.b" or "a.b."): labels with length bytes, then 0. */
export function nameWire(name: string): Buffer {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  const parts = bare === '' ? [] : bare.split('.');
  const out = Buffer.alloc(parts.reduce((sum, l) => sum + 1 + l.length, 1));
  let p = 0;
  for (const label of parts) {
    if (label.length === 0 || label.length > 63) throw new RangeError(`nameWire: bad label in ${JSON.stringify(name)}`);
    out[p++] = label.length;
    out.write(label.toLowerCase(), p, 'latin1');
    p += label.length;
  }
  out[p] = 0;
  if (out.length > MAX_NAME_WIRE) throw new RangeError(`nameWire: ${JSON.stringify(name)} is longer than 255 bytes on the wire`);
  return out;
}
