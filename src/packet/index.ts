/**
 * The wire layer: zero-copy views over Node Buffers, plus plain `Repr` values for building packets.
 *
 * Conventions used by every protocol module:
 * - A view (`XxxView`) covers `buf[off .. off + len)`; all offsets it returns (`payloadOffset`, ...)
 *   are absolute offsets into `buf`. Fields are read and written by indexing the Buffer's bytes
 *   (`bytes.ts`: `readU16`, `readU32`, `writeU16`, ...), never through `readUInt16BE` & co, whose
 *   argument checks cost more than the rest of the per-packet work; indexing honours `byteOffset`, so
 *   a Buffer that is itself a subarray works as-is. Setters do not check bounds (a view is reset
 *   first); the `writeXxx` builders check their region once and throw RangeError.
 * - `reset(buf, off, len)` re-points a view and returns a `ParseError` number: 0 (`ParseError.Ok`)
 *   means the lengths were validated and no accessor can fail. This is the data-path contract: no
 *   exceptions, and no allocation in `reset` or in any accessor. After a non-zero result the
 *   accessors are meaningless, but `buf`/`off`/`len` are always stored, so a `XxxViewMut` can be
 *   pointed at memory that does not hold a valid header yet and filled in with setters.
 *   `XxxView.parse(buf, off?, len?)` is the throwing form (`PacketError`)
 *   for tests and the edges.
 * - Fields are read with getters (`view.ttl`, `view.src`); anything that computes over the bytes
 *   (`verifyChecksum(...)`) or writes is a method. Setters (`setTtl(...)`, `fillChecksum()`) exist
 *   only on the writable subclass `XxxViewMut`; they write one field, truncate values to the field's
 *   width, and do not touch checksums unless their name says so (`fillChecksum`, `decrementTtl`).
 * - 32-bit fields (IPv4 addresses, TCP seq/ack) are unsigned numbers; MACs are (hi16, lo32) pairs.
 * - `writeXxx(buf, off, ...numbers)` builders are allocation-free and fit for the data path;
 *   `emitXxx(repr, buf, off)` takes a `Repr` (string addresses) and returns the bytes it wrote, which
 *   is also what `xxxBufferLen(repr)` returns. Emitters write headers only: a payload is expected to
 *   be in place already, because checksums cover it (ICMP errors, which quote, are the exception).
 */
export * from './errors.js';
export * from './bytes.js';
export * from './checksum.js';
export * from './addr.js';
export * from './ethernet.js';
export * from './arp.js';
export * from './ipv4.js';
export * from './icmp.js';
export * from './udp.js';
export * from './tcp.js';
export * from './vxlan.js';
// Both addr.ts and ipv4.ts export `parseIpv4`; the ipv4.ts one accepts a string (-> number) or an
// `Ipv4View` (-> `Ipv4Repr`), so it is the one re-exported here.
export { parseIpv4 } from './ipv4.js';
export * from './fields.js';
export * from './vnet.js';
export * from './segment.js';
