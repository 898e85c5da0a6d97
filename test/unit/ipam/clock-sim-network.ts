// SimNetwork (test/helpers/mesh-sim.ts) with one change: bytes cross a pipe on the fake
// clock (1 ms later) instead of in the next microtask. The mesh relays a unicast hop by hop
// along each router's own routes; while two routers' routes disagree (a link was just cut)
// a message can bounce between them until the routes are recalculated, which the routers do
// on a clock timer. With microtask delivery such a bounce never lets the clock move, so the
// simulation would spin for ever; with delivery on the clock, each hop costs a millisecond and
// the recalculation ends the bounce, as it does on a real network.
import { WeaveError } from '../../../src/core/errors.js';
import type { MeshTransport } from '../../../src/mesh/transport.js';
import { SimNetwork } from '../../helpers/mesh-sim.js';
import { connectedPipe } from '../../helpers/duplex-pipe.js';

const LATENCY_MS = 1;

function host(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

export class ClockSimNetwork extends SimNetwork {
  private readonly cuts = new Set<string>();
  private nextPort = 50000;

  private key(a: string, b: string): string {
    const [x, y] = [host(a), host(b)].sort();
    return `${x}|${y}`;
  }

  override partition(i: number, j: number, cut = true): void {
    const k = this.key(SimNetwork.address(i), SimNetwork.address(j));
    if (cut) this.cuts.add(k);
    else this.cuts.delete(k);
    super.partition(i, j, cut);
  }

  override async dial(from: string, to: string): Promise<MeshTransport> {
    await Promise.resolve();
    const target = this.routers.get(to);
    if (!target || this.cuts.has(this.key(from, to))) throw new WeaveError('UNAVAILABLE', `dial tcp4 ${to}: connect: connection refused`);
    const clock = this.clock;
    const [a, b] = connectedPipe(`${host(from)}:${this.nextPort++}`, to, { cross: (deliver) => clock.setTimeout(deliver, LATENCY_MS) });
    target.accept(b);
    return a;
  }
}
