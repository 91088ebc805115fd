// CRC-32 (IEEE 802.3, the zlib one) of an ASCII string: the key's typo and noise check.

const TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

/** CRC-32 of the first `end` characters of `text`, read as bytes (callers pass ASCII only). */
export function crc32(text: string, end = text.length): number {
  let crc = -1;
  for (let i = 0; i < end; i++) crc = TABLE[(crc ^ text.charCodeAt(i)) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}
