// TCP/IPv4 super-frames as the kernel hands them over a TAP with TSO (virtio header with GSO,
// partial checksum: the pseudo-header sum in the TCP checksum field), for the sleeve engine's
// tests and bench/dataplane/engine.ts.
import { internetChecksum, ipv4PseudoHeaderSum } from '../../src/dataplane/sleeve/ipv4.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, encodeVnetHdr } from '../../src/dataplane/sleeve/vnet-hdr.js';

export interface SuperFrameOptions {
  dst: Buffer;
  src: Buffer;
  /** TCP payload bytes (filled with a pattern). */
  payload: number;
  mss: number;
  seq?: number;
  ack?: number;
  /** TCP flags byte (default PSH|ACK). */
  flags?: number;
  srcPort?: number;
  dstPort?: number;
  window?: number;
  /** A 32-byte TCP header with NOP NOP timestamps instead of the bare 20 bytes. */
  timestamps?: boolean;
}

/** The frame (Ethernet on) and its 10-byte virtio header. */
export function tcpSuperFrame(o: SuperFrameOptions): { hdr: Buffer; frame: Buffer } {
  const tcp = o.timestamps ? 32 : 20;
  const headers = 14 + 20 + tcp;
  const f = Buffer.alloc(headers + o.payload);
  o.dst.copy(f, 0);
  o.src.copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(20 + tcp + o.payload, 16);
  f[20] = 0x40; // DF
  f[22] = 64;
  f[23] = 6;
  Buffer.from([10, 32, 1, 1]).copy(f, 26);
  Buffer.from([10, 32, 2, 1]).copy(f, 30);
  f.writeUInt16BE(internetChecksum(f, 14, 34), 24);
  f.writeUInt16BE(o.srcPort ?? 0, 34);
  f.writeUInt16BE(o.dstPort ?? 0, 36);
  f.writeUInt32BE((o.seq ?? 1000) >>> 0, 38);
  f.writeUInt32BE(o.ack ?? 0, 42);
  f[46] = (tcp / 4) << 4;
  f[47] = o.flags ?? 0x18;
  f.writeUInt16BE(o.window ?? 0, 48);
  if (o.timestamps) f.set([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 54);
  for (let k = headers; k < f.length; k++) f[k] = (k * 7) & 0xff;
  f.writeUInt16BE(ipv4PseudoHeaderSum(f, 14, 6, tcp + o.payload) & 0xffff, 50);
  const hdr = encodeVnetHdr({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: headers, gsoSize: o.mss, csumStart: 34, csumOffset: 16 });
  return { hdr, frame: f };
}
