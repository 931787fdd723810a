// D. J. Bernstein's constant database format (https://cr.yp.to/cdb.html), as read by
// qpsmtpd through CDB_File: a 2048-byte header of 256 (table position, slot count) pairs,
// then the records (key length, data length, key, data), then the 256 hash tables.
// All numbers are 32-bit little-endian. Keys and values are decoded as UTF-8, like config files.

const HEADER = 2048;

/** The cdb hash: h = 5381; h = ((h << 5) + h) ^ byte, kept to 32 bits. */
export function cdb_hash(key: Uint8Array): number {
  let h = 5381;
  for (const c of key) h = (((h << 5) + h) ^ c) >>> 0;
  return h;
}

function u32(buf: Buffer, pos: number): number {
  if (pos < 0 || pos + 4 > buf.length) throw new Error(`cdb: truncated file (offset ${pos})`);
  return buf.readUInt32LE(pos);
}

function slice(buf: Buffer, pos: number, len: number): Buffer {
  if (pos + len > buf.length) throw new Error(`cdb: truncated record at offset ${pos}`);
  return buf.subarray(pos, pos + len);
}

/** Every record of a cdb file; for a key stored more than once the first value wins, as in CDB_File. */
export function cdb_parse(buf: Buffer): Map<string, string> {
  let end = buf.length;
  for (let i = 0; i < 256; i++) {
    const pos = u32(buf, i * 8);
    if (pos < HEADER || pos > buf.length) throw new Error(`cdb: bad hash table position ${pos}`);
    end = Math.min(end, pos);
  }
  const map = new Map<string, string>();
  for (let pos = HEADER; pos < end; ) {
    const klen = u32(buf, pos);
    const dlen = u32(buf, pos + 4);
    const key = slice(buf, pos + 8, klen).toString('utf8');
    const data = slice(buf, pos + 8 + klen, dlen).toString('utf8');
    if (!map.has(key)) map.set(key, data);
    pos += 8 + klen + dlen;
  }
  return map;
}

/** Look one key up through the hash tables, as a cdb reader does (first record of that key). */
export function cdb_get(buf: Buffer, key: string): string | undefined {
  const k = Buffer.from(key, 'utf8');
  const h = cdb_hash(k);
  const tpos = u32(buf, (h & 255) * 8);
  const slots = u32(buf, (h & 255) * 8 + 4);
  if (slots === 0) return undefined;
  let slot = (h >>> 8) % slots;
  for (let n = 0; n < slots; n++) {
    const sh = u32(buf, tpos + slot * 8);
    const rpos = u32(buf, tpos + slot * 8 + 4);
    if (rpos === 0) return undefined;
    if (sh === h && u32(buf, rpos) === k.length && slice(buf, rpos + 8, k.length).equals(k)) {
      return slice(buf, rpos + 8 + k.length, u32(buf, rpos + 4)).toString('utf8');
    }
    slot = (slot + 1) % slots;
  }
  return undefined;
}

/** Build a cdb file (what cdbmake/qmail-newmrh produce); for tests and tools. */
export function cdb_make(entries: Iterable<readonly [string, string]>): Buffer {
  const records: Buffer[] = [];
  const buckets: Array<Array<[number, number]>> = Array.from({ length: 256 }, () => []);
  let pos = HEADER;
  for (const [key, value] of entries) {
    const k = Buffer.from(key, 'utf8');
    const v = Buffer.from(value, 'utf8');
    const head = Buffer.alloc(8);
    head.writeUInt32LE(k.length, 0);
    head.writeUInt32LE(v.length, 4);
    records.push(head, k, v);
    const h = cdb_hash(k);
    buckets[h & 255]!.push([h, pos]);
    pos += 8 + k.length + v.length;
  }
  const header = Buffer.alloc(HEADER);
  const tables: Buffer[] = [];
  buckets.forEach((bucket, i) => {
    const slots = bucket.length * 2;
    const table = Buffer.alloc(slots * 8);
    for (const [h, rpos] of bucket) {
      let slot = (h >>> 8) % slots;
      while (table.readUInt32LE(slot * 8 + 4) !== 0) slot = (slot + 1) % slots;
      table.writeUInt32LE(h, slot * 8);
      table.writeUInt32LE(rpos, slot * 8 + 4);
    }
    header.writeUInt32LE(pos, i * 8);
    header.writeUInt32LE(slots, i * 8 + 4);
    tables.push(table);
    pos += table.length;
  });
  if (pos > 0xffffffff) throw new Error('cdb: file would exceed 4 GiB');
  return Buffer.concat([header, ...records, ...tables]);
}
