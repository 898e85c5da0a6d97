// One link's basic state (kind, MAC, MTU, flags) asked of rtnetlink directly: an RTM_GETLINK
// request on a NETLINK_ROUTE socket, answered within the send. The bridge check runs every 2 s
// for the router's whole life, and spawning `ip` for it cost the router about 1 % of a core (a
// fork of a large process each time), taken from whatever the host forwards meanwhile.
// Reads only, in the namespace of the process; anything else still goes through iproute2.
import { WeaveError } from '../core/errors.js';
import { Errno, MSG_DONTWAIT, SOCK_CLOEXEC, closeFd, failed, libc } from './ffi/libc.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const NETLINK_ROUTE = 0;
const RTM_NEWLINK = 16;
const RTM_GETLINK = 18;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
const NLMSG_HDRLEN = 16;
const IFINFOMSG_LEN = 16;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_EXT_MASK = 29;
/** RTEXT_FILTER_SKIP_STATS: leave the counters out of the answer. */
const SKIP_STATS = 1 << 3;
/** The nested-attribute and byte-order bits of rta_type. */
const NLA_TYPE_MASK = 0x3fff;
const ENODEV = 19;

/** `ip`'s names for the interface flags (include/uapi/linux/if.h), in `ip`'s order. */
const IFF_NAMES: readonly [number, string][] = [
  [0x8, 'LOOPBACK'], [0x2, 'BROADCAST'], [0x10, 'POINTOPOINT'], [0x1000, 'MULTICAST'], [0x80, 'NOARP'],
  [0x1, 'UP'], [0x10000, 'LOWER_UP'],
];

export interface LinkBasics {
  ifindex: number;
  ifname: string;
  mtu: number;
  /** lower-case colon hex, as `ip -j` prints it; '' when the link has none. */
  address: string;
  flags: string[];
  kind?: string;
}

const align4 = (n: number) => (n + 3) & ~3;

/** The RTM_GETLINK request for `name` (exported for the codec's tests). */
export function getLinkRequest(name: string, seq: number): Buffer {
  const nameBytes = Buffer.from(name + '\0');
  if (nameBytes.length > 16) throw new WeaveError('INVALID_ARGUMENT', `interface name too long: ${name}`);
  const nameAttr = 4 + nameBytes.length;
  const len = NLMSG_HDRLEN + IFINFOMSG_LEN + align4(nameAttr) + 8;
  const b = Buffer.alloc(len);
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(RTM_GETLINK, 4);
  b.writeUInt16LE(NLM_F_REQUEST, 6);
  b.writeUInt32LE(seq >>> 0, 8);
  // ifinfomsg stays zero: any family, look the link up by the name attribute.
  let off = NLMSG_HDRLEN + IFINFOMSG_LEN;
  b.writeUInt16LE(nameAttr, off);
  b.writeUInt16LE(IFLA_IFNAME, off + 2);
  nameBytes.copy(b, off + 4);
  off += align4(nameAttr);
  b.writeUInt16LE(8, off);
  b.writeUInt16LE(IFLA_EXT_MASK, off + 2);
  b.writeUInt32LE(SKIP_STATS, off + 4);
  return b;
}

/** Walks the attributes in b[start, end): calls `each(type, valueStart, valueEnd)`. */
function attrs(b: Buffer, start: number, end: number, each: (type: number, from: number, to: number) => void): void {
  let off = start;
  while (off + 4 <= end) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > end) throw new WeaveError('DECODE_FAILED', `rtnetlink: attribute of length ${len} at ${off} overruns its message`);
    each(b.readUInt16LE(off + 2) & NLA_TYPE_MASK, off + 4, off + len);
    off += align4(len);
  }
}

const cString = (b: Buffer, from: number, to: number) => {
  const nul = b.indexOf(0, from);
  return b.toString('utf8', from, nul >= 0 && nul < to ? nul : to);
};

/**
 * The answer to getLinkRequest(…, seq): the link, or undefined when there is none (ENODEV).
 * Throws DECODE_FAILED on anything malformed and KERNEL_FAILED on another error.
 */
export function parseGetLinkReply(b: Buffer, seq: number): LinkBasics | undefined {
  if (b.length < NLMSG_HDRLEN) throw new WeaveError('DECODE_FAILED', `rtnetlink: short answer (${b.length} bytes)`);
  const len = b.readUInt32LE(0);
  const type = b.readUInt16LE(4);
  if (len < NLMSG_HDRLEN || len > b.length) throw new WeaveError('DECODE_FAILED', `rtnetlink: message length ${len} in ${b.length} bytes`);
  if (b.readUInt32LE(8) !== seq >>> 0) throw new WeaveError('DECODE_FAILED', `rtnetlink: answer to request ${b.readUInt32LE(8)}, not ${seq}`);
  if (type === NLMSG_ERROR) {
    if (len < NLMSG_HDRLEN + 4) throw new WeaveError('DECODE_FAILED', 'rtnetlink: short error message');
    const err = -b.readInt32LE(NLMSG_HDRLEN);
    if (err === ENODEV) return undefined;
    throw new WeaveError('KERNEL_FAILED', `rtnetlink RTM_GETLINK: errno ${err}`);
  }
  if (type !== RTM_NEWLINK) throw new WeaveError('DECODE_FAILED', `rtnetlink: unexpected message type ${type}`);
  if (len < NLMSG_HDRLEN + IFINFOMSG_LEN) throw new WeaveError('DECODE_FAILED', 'rtnetlink: short link message');
  const ifindex = b.readInt32LE(NLMSG_HDRLEN + 4);
  const iff = b.readUInt32LE(NLMSG_HDRLEN + 8);
  const link: LinkBasics = { ifindex, ifname: '', mtu: 0, address: '', flags: IFF_NAMES.filter(([bit]) => iff & bit).map(([, n]) => n) };
  attrs(b, NLMSG_HDRLEN + IFINFOMSG_LEN, len, (t, from, to) => {
    if (t === IFLA_IFNAME) link.ifname = cString(b, from, to);
    else if (t === IFLA_MTU && to - from >= 4) link.mtu = b.readUInt32LE(from);
    else if (t === IFLA_ADDRESS) link.address = [...b.subarray(from, to)].map((x) => x.toString(16).padStart(2, '0')).join(':');
    else if (t === IFLA_LINKINFO) {
      attrs(b, from, to, (it, f, e) => {
        if (it === IFLA_INFO_KIND) link.kind = cString(b, f, e);
      });
    }
  });
  if (link.ifname === '') throw new WeaveError('DECODE_FAILED', 'rtnetlink: link message without a name');
  return link;
}

/** A NETLINK_ROUTE socket of this process's network namespace, for RTM_GETLINK by name. */
export class RtnlLinkReader {
  private fd: number;
  private seq = 0;
  private readonly buf = Buffer.alloc(32 * 1024);

  private constructor(fd: number) {
    this.fd = fd;
  }

  static open(): RtnlLinkReader {
    const fd = libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) failed('socket(AF_NETLINK)');
    return new RtnlLinkReader(fd);
  }

  /** The link named `name`, or undefined if there is none. Synchronous: the kernel answers within the send. */
  get(name: string): LinkBasics | undefined {
    if (this.fd < 0) throw new WeaveError('INTERNAL', 'rtnetlink socket closed');
    const c = libc();
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const req = getLinkRequest(name, seq);
    // A null address: the kernel (port 0) is an unconnected netlink socket's destination.
    if (c.sendto(this.fd, req, req.length, 0, null, 0) < 0) failed('sendto(rtnetlink)');
    for (;;) {
      const n = c.recvfrom(this.fd, this.buf, this.buf.length, MSG_DONTWAIT, null, null);
      if (n < 0) {
        if (c.errno() === Errno.EINTR) continue;
        failed('recvfrom(rtnetlink)');
      }
      const reply = this.buf.subarray(0, n);
      // An answer to an earlier request that timed out on our side would carry an older number.
      if (n >= NLMSG_HDRLEN && reply.readUInt32LE(8) !== seq) continue;
      return parseGetLinkReply(reply, seq);
    }
  }

  close(): void {
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }
}
