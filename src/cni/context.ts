// What one plugin run works with: the parsed environment and config, where it logs, and its
// dependencies on the outside world (kernel, router, child processes, time) behind narrow
// interfaces, so the verbs can be driven in tests with fakes and no root. defaultDeps() is
// the production wiring; building it has no side effects.
import { systemClock, type Clock } from '../core/clock.js';
import { WeaveClient } from '../api/client.js';
import { execFile } from '../platform/exec.js';
import { IpRoute, type LinkInfo } from '../platform/iproute.js';
import {
  attachContainer,
  checkNetns,
  detachContainer,
  inspectContainerLink,
  type AttachResult,
  type AttachSpec,
} from '../platform/container-link.js';
import type { NetConf } from './config.js';
import { findExecutable, type ExecFn, type FindExecutableFn } from './delegate.js';
import { RouterSession, type RouterApi } from './router.js';
import type { CniEnv, EnvMap, Log } from './skel.js';

export type PluginKind = 'net' | 'ipam';

/** The kernel work the verbs need (platform/container-link and iproute in production). */
export interface KernelOps {
  /** A link in the host namespace, with its addresses; undefined when it does not exist. */
  getLink(name: string): Promise<LinkInfo | undefined>;
  /** Throws CONTAINER_UNKNOWN for a missing netns, INVALID_ARGUMENT for the host's own. */
  checkNetns(path: string): void;
  attach(spec: AttachSpec): Promise<AttachResult>;
  detach(opts: { containerId: string; ifName: string; ident?: string; netns?: string }): Promise<boolean>;
  inspect(netns: string, ifName: string): Promise<LinkInfo | undefined>;
}

export interface PluginDeps {
  clock: Clock;
  kernel: KernelOps;
  router(addr: string): RouterApi;
  exec: ExecFn;
  findExecutable: FindExecutableFn;
}

export function defaultDeps(): PluginDeps {
  return {
    clock: systemClock,
    kernel: {
      getLink: (name) => new IpRoute().getLink(name),
      checkNetns,
      attach: attachContainer,
      detach: detachContainer,
      inspect: inspectContainerLink,
    },
    router: (addr) => new WeaveClient(addr),
    exec: execFile,
    findExecutable,
  };
}

export interface PluginContext {
  kind: PluginKind;
  env: CniEnv;
  /** The process environment, handed unchanged to a delegated plugin. */
  rawEnv: EnvMap;
  conf: NetConf;
  /** stdin exactly as received, handed unchanged to a delegated plugin. */
  stdin: string;
  log: Log;
  /** Raw stderr (a delegate's own diagnostics are copied here). */
  stderr: (s: string) => void;
  deps: PluginDeps;
  /** The router for this run; created on first use, one wait budget per run. */
  router(): RouterSession;
}

export function createContext(init: Omit<PluginContext, 'router'>): PluginContext {
  let session: RouterSession | undefined;
  return {
    ...init,
    router() {
      session ??= new RouterSession(init.deps.router(init.conf.weaveHttpAddr), {
        waitMs: init.conf.routerWaitMs,
        clock: init.deps.clock,
        log: init.log,
      });
      return session;
    },
  };
}
