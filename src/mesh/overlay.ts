// The seam between the mesh and a data plane (mesh `overlay.go`): the mesh asks the overlay to
// add its features to the intro, prepares an overlay connection for every connection that
// passed the intro, confirms it once the connection is part of the topology, relays
// OverlayControlMsg bodies (tag 7) both ways, and counts the connection as established only
// when the overlay says the data path works. Without an overlay a connection is established as
// soon as it is added (the original's null overlay).
import type { WeaveError } from '../core/errors.js';
import type { PeerName } from '../core/peer-name.js';

export interface OverlayConnectionParams {
  readonly remoteName: PeerName;
  readonly remoteNickName: string;
  /** `ip:port` of the TCP connection's far end (for inbound ones, the remote's source port). */
  readonly remoteAddress: string;
  readonly outbound: boolean;
  readonly connUid: bigint;
  /** Only when the connection is encrypted (password set and the subnets are not trusted). */
  readonly sessionKey: Buffer | undefined;
  /** The remote's intro features (e.g. `Overlays`). */
  readonly features: ReadonlyMap<string, string>;
  /** Sends the body of an OverlayControlMsg (tag 7) to the remote over the TCP connection. */
  sendControl(body: Buffer): void;
  /** The data path to the remote works: the mesh marks the connection established. */
  established(): void;
  /** The overlay cannot carry traffic to the remote any more: the mesh closes the connection. */
  failed(err: WeaveError): void;
}

export interface OverlayConnection {
  /** The connection is in the topology: start heartbeats. */
  confirm(): void;
  /** An OverlayControlMsg body from the remote. */
  controlMessage(body: Buffer): void;
  /** The connection is going; release everything. Idempotent. */
  stop(): void;
  /** The overlay column of `weave status connections` (`sleeve`, `vxlan`, ...). */
  displayName(): string;
  /** Extra `k=v` attributes of `weave status connections` (e.g. `mtu`), null for none. */
  attrs(): Record<string, unknown> | null;
}

export interface Overlay {
  /** Adds the overlay's features (e.g. `Overlays`) to our intro. */
  addFeaturesTo(features: Map<string, string>): void;
  /** Throws a WeaveError when the remote cannot be served (e.g. no overlay in common). */
  prepareConnection(params: OverlayConnectionParams): OverlayConnection;
}
