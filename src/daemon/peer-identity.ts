// This router's peer name, as Weave Net derives it: --name; else the MAC of an existing
// weave bridge (the bridge MAC is set to the peer name); else the name persisted in the store;
// else sha256("9oBJ0Jmip-" + machine-id + product_uuid). Several routers on one machine (one
// per network namespace, as in tests) share the machine-id, so a non-default data directory is
// mixed in; the name is then persisted, so it survives restarts either way.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { formatPeerName, parsePeerName, peerNameFromUUID, randomPeerName } from '../core/peer-name.js';
import { WeaveError } from '../core/errors.js';

const KEY_PEERNAME = 'peername';

export interface IdentityStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

function readId(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

export function systemIdentity(dataDir: string, defaultDataDir: string): string | undefined {
  const machineId = readId('/etc/machine-id') || readId('/var/lib/dbus/machine-id');
  const productUuid = readId('/sys/class/dmi/id/product_uuid') || readId('/sys/hypervisor/uuid');
  if (!machineId && !productUuid) return undefined;
  return machineId + productUuid + (dataDir === defaultDataDir ? '' : dataDir);
}

export function resolvePeerName(opts: {
  flag?: string;
  bridgeMac?: string;
  store: IdentityStore;
  systemId: string | undefined;
}): { name: string; source: 'flag' | 'bridge' | 'store' | 'system' | 'random' } {
  let name: string;
  let source: 'flag' | 'bridge' | 'store' | 'system' | 'random';
  if (opts.flag) {
    try {
      name = formatPeerName(parsePeerName(opts.flag));
    } catch (e) {
      throw new WeaveError('INVALID_ARGUMENT', `--name: ${(e as Error).message}`);
    }
    source = 'flag';
  } else if (opts.bridgeMac && opts.bridgeMac !== '00:00:00:00:00:00') {
    name = opts.bridgeMac.toLowerCase();
    source = 'bridge';
  } else if (opts.store.get(KEY_PEERNAME)) {
    name = opts.store.get(KEY_PEERNAME)!;
    source = 'store';
  } else if (opts.systemId) {
    name = formatPeerName(peerNameFromUUID(opts.systemId));
    source = 'system';
  } else {
    name = formatPeerName(randomPeerName(randomBytes));
    source = 'random';
  }
  if (opts.store.get(KEY_PEERNAME) !== name) opts.store.set(KEY_PEERNAME, name);
  return { name, source };
}
