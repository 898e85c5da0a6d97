// Chooses between our overlays per connection (the original's `router/overlay_switch.go`):
// every overlay in common with the remote runs in parallel; the best one is the most preferred
// that is established and healthy, else the most preferred that still works. The common list is
// ordered by the connecting side's preference so both ends index control messages alike
// (`07 <index> <tag> ...`). A remote without the `Overlays` feature gets sleeve only.
//
// Unlike the original, a forwarder can be established and then unhealthy (the fast path's
// heartbeats stop) without failing: traffic moves to the next one and moves back when the
// heartbeats resume, so a connection cannot stay stuck on sleeve (#1737). What fails is the
// connection: when no forwarder has carried (established and healthy) for 60 s — the fast path
// never proved itself or went quiet, and sleeve timed out — it fails with `no working
// forwarders`, the mesh closes it, and the reconnect brings fresh forwarders (the original's
// fast path failed after 60 s without heartbeats; without this a connection could stay
// `pending`, or `established` over a dead fast path, for good).
import type { Clock, TimerHandle } from '../core/clock.js';
import { WeaveError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { formatPeerName, type PeerName } from '../core/peer-name.js';
import type { Overlay, OverlayConnection, OverlayConnectionParams } from '../mesh/overlay.js';

export const OVERLAYS_FEATURE = 'Overlays';
/** How long a connection may go without a forwarder that carries (the original's heartbeat timeout). */
export const NO_WORKING_FORWARDER_MS = 60_000;

/** What a sub-overlay gets for one connection. */
export interface ForwarderParams extends Omit<OverlayConnectionParams, 'sendControl' | 'established' | 'failed'> {
  sendControl(tag: number, body?: Buffer): void;
  /** The forwarder carries traffic (heartbeats acknowledged). */
  established(): void;
  /** Established forwarders may come and go in health (the fast path's heartbeats). */
  healthChanged(healthy: boolean): void;
  failed(err: WeaveError): void;
}

export interface Forwarder {
  confirm(): void;
  controlMessage(tag: number, body: Buffer): void;
  stop(): void;
  attrs(): Record<string, unknown> | null;
}

export interface NetworkOverlay {
  readonly name: string;
  /** Features this overlay adds (besides its name in `Overlays`). */
  addFeaturesTo?(features: Map<string, string>): void;
  /** Throws when it cannot serve this connection (the switch then runs without it). */
  prepare(params: ForwarderParams): Forwarder;
}

/**
 * Told whenever the overlay carrying traffic to a peer changes (undefined: none). The
 * connection UID tells a replaced connection's late stop from the live one's.
 */
export type BestListener = (peer: PeerName, connUid: bigint, overlay: string | undefined) => void;

interface Sub {
  readonly name: string;
  fwd: Forwarder | undefined;
  established: boolean;
  healthy: boolean;
}

export class OverlaySwitch implements Overlay {
  private readonly overlays: NetworkOverlay[] = [];
  private readonly log: Logger;
  readonly clock: Clock;
  /** Serves remotes that do not send `Overlays` (Weave Net before 1.2). */
  compat: NetworkOverlay | undefined;
  onBestChanged: BestListener = () => {};

  constructor(deps: { logger: Logger; clock: Clock }) {
    this.log = deps.logger;
    this.clock = deps.clock;
  }

  add(overlay: NetworkOverlay): void {
    if (this.overlays.some((o) => o.name === overlay.name)) throw new WeaveError('INTERNAL', `repeated overlay name ${overlay.name}`);
    this.overlays.push(overlay);
  }

  get names(): string[] {
    return this.overlays.map((o) => o.name);
  }

  addFeaturesTo(features: Map<string, string>): void {
    features.set(OVERLAYS_FEATURE, this.names.join(' '));
    for (const o of this.overlays) o.addFeaturesTo?.(features);
  }

  /** The overlays in common, in the connecting side's order (ours when we dialled). */
  commonOverlays(params: Pick<OverlayConnectionParams, 'features' | 'outbound'>): NetworkOverlay[] {
    const theirs = params.features.get(OVERLAYS_FEATURE);
    if (theirs === undefined) return this.compat ? [this.compat] : [];
    const peerNames = theirs.split(' ');
    const common = this.overlays.filter((o) => peerNames.includes(o.name));
    const ordering = params.outbound ? this.names : peerNames;
    const out: NetworkOverlay[] = [];
    for (const name of ordering) {
      const o = common.find((c) => c.name === name);
      if (o && !out.includes(o)) out.push(o);
    }
    return out.slice(0, 256);
  }

  prepareConnection(params: OverlayConnectionParams): OverlayConnection {
    const overlays = this.commonOverlays(params);
    if (overlays.length === 0) throw new WeaveError('UNAVAILABLE', 'no overlays in common with peer');
    return new SwitchConnection(this, params, overlays, this.log);
  }
}

class SwitchConnection implements OverlayConnection {
  private readonly subs: Sub[];
  private best = -1;
  private stopped = false;
  private announced = false;
  /** Runs while no forwarder carries; fails the connection when it fires. */
  private watchdog: TimerHandle | undefined;
  private readonly label: string;

  constructor(
    private readonly sw: OverlaySwitch,
    private readonly params: OverlayConnectionParams,
    overlays: NetworkOverlay[],
    private readonly log: Logger,
  ) {
    this.label = `${formatPeerName(params.remoteName)}(${params.remoteNickName})`;
    this.subs = overlays.map((o) => ({ name: o.name, fwd: undefined, established: false, healthy: true }));
    overlays.forEach((o, i) => {
      const sub = this.subs[i] as Sub;
      try {
        sub.fwd = o.prepare({
          ...params,
          sendControl: (tag, body) => params.sendControl(Buffer.concat([Buffer.from([i, tag]), body ?? Buffer.alloc(0)])),
          established: () => this.onEstablished(sub),
          healthChanged: (healthy) => this.onHealth(sub, healthy),
          failed: (err) => this.onFailed(sub, err),
        });
      } catch (e) {
        this.log.info({ peer: this.label, overlay: o.name, err: errorMessage(e) }, `Unable to use ${o.name} for connection to ${this.label}: ${errorMessage(e)}`);
      }
    });
    this.chooseBest();
  }

  private onEstablished(sub: Sub): void {
    if (this.stopped || sub.established) return;
    sub.established = true;
    sub.healthy = true;
    if (!this.announced) {
      this.announced = true;
      this.params.established();
    }
    this.chooseBest();
  }

  private onHealth(sub: Sub, healthy: boolean): void {
    if (this.stopped || sub.healthy === healthy) return;
    sub.healthy = healthy;
    this.log.info({ peer: this.label, overlay: sub.name, healthy }, `overlay_switch ->[${this.label}] ${sub.name} ${healthy ? 'healthy again' : 'unhealthy (heartbeats stopped)'}`);
    this.chooseBest();
  }

  private onFailed(sub: Sub, err: WeaveError): void {
    if (this.stopped || !sub.fwd) return;
    this.log.info({ peer: this.label, overlay: sub.name, err: err.message }, `overlay_switch ->[${this.label}] ${sub.name} ${err.message}`);
    const fwd = sub.fwd;
    sub.fwd = undefined;
    sub.established = false;
    fwd.stop();
    this.chooseBest();
  }

  private chooseBest(): void {
    if (this.stopped) return;
    let bestEstablished = -1;
    let bestWorking = -1;
    this.subs.forEach((s, i) => {
      if (!s.fwd) return;
      if (bestWorking < 0) bestWorking = i;
      if (bestEstablished < 0 && s.established && s.healthy) bestEstablished = i;
    });
    // Established but unhealthy ones still beat ones that never worked.
    if (bestEstablished < 0) bestEstablished = this.subs.findIndex((s) => s.fwd && s.established);
    const best = bestEstablished >= 0 ? bestEstablished : bestWorking;
    if (best < 0) {
      this.fail();
      return;
    }
    const carrying = this.subs.some((s) => s.fwd && s.established && s.healthy);
    if (carrying) {
      this.watchdog?.cancel();
      this.watchdog = undefined;
    } else {
      this.watchdog ??= this.sw.clock.setTimeout(() => {
        this.watchdog = undefined;
        if (!this.stopped && !this.subs.some((s) => s.fwd && s.established && s.healthy)) this.fail();
      }, NO_WORKING_FORWARDER_MS);
    }
    if (best !== this.best) {
      this.best = best;
      const name = (this.subs[best] as Sub).name;
      this.log.info({ peer: this.label, overlay: name }, `overlay_switch ->[${this.label}] using ${name}`);
    }
    this.sw.onBestChanged(this.params.remoteName, this.params.connUid, this.current());
  }

  private fail(): void {
    this.watchdog?.cancel();
    this.watchdog = undefined;
    this.params.failed(new WeaveError('UNAVAILABLE', `no working forwarders to ${this.label}`));
  }

  /** The overlay carrying traffic: established ones only (none while connecting). */
  current(): string | undefined {
    const s = this.subs[this.best];
    return s && s.fwd && s.established ? s.name : undefined;
  }

  confirm(): void {
    for (const s of this.subs) s.fwd?.confirm();
  }

  controlMessage(body: Buffer): void {
    if (body.length < 2) return;
    const sub = this.subs[body[0] as number];
    sub?.fwd?.controlMessage(body[1] as number, body.subarray(2));
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.watchdog?.cancel();
    this.watchdog = undefined;
    for (const s of this.subs) {
      const f = s.fwd;
      s.fwd = undefined;
      f?.stop();
    }
    this.sw.onBestChanged(this.params.remoteName, this.params.connUid, undefined);
  }

  displayName(): string {
    const s = this.subs[this.best];
    return s && s.fwd ? s.name : 'none';
  }

  attrs(): Record<string, unknown> | null {
    return this.subs[this.best]?.fwd?.attrs() ?? null;
  }
}
