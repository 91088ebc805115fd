// The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, as the cluster specification says.
// One function for both users: key ids drawn into a slot (key/format.ts) and reads grouped by node (redis/reads.ts).

const SLOTS = 16384;

/** CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0). */
const CRC16 = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[byte] = crc;
  }
  return table;
})();

const step = (crc: number, byte: number): number => ((crc << 8) & 0xffff) ^ CRC16[((crc >> 8) ^ byte) & 0xff]!;

/**
 * The slot (0..16383) of a key: of its hash tag when it has one (the text between its first `{` and the
 * first `}` after it, when not empty), of the whole key otherwise; over the key's UTF-8 bytes. Key ids
 * (ASCII, no braces) take the fast path, which the draw of an id into a slot runs thousands of times.
 */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  let crc = 0;
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code > 0x7f) return slotOfBytes(Buffer.from(key, 'utf8'));
    crc = step(crc, code);
  }
  return crc % SLOTS;
}

function slotOfBytes(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = step(crc, byte);
  return crc % SLOTS;
}
