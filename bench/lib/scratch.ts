// What a netns benchmark creates (child processes, namespaces named `<prefix>-…`) and its
// removal: once, at the end, on an error, or on Ctrl-C / SIGTERM / SIGHUP, so an interrupted
// run leaves nothing behind.
import { spawnSync, type ChildProcess } from 'node:child_process';

export class Scratch {
  readonly children = new Set<ChildProcess>();
  interrupted = false;
  private cleaning: Promise<void> | undefined;

  /** `teardown`: the benchmark's own removal (hosts, namespaces, files), run after the children are killed. */
  constructor(
    private readonly prefix: string,
    private readonly teardown: () => Promise<void>,
  ) {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        if (this.interrupted) return;
        this.interrupted = true;
        process.stderr.write(`\n${sig}: removing ${prefix}-* namespaces\n`);
        void this.cleanup().finally(() => process.exit(130));
      });
    }
  }

  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      for (const c of this.children) c.kill('SIGKILL');
      await this.teardown();
      // Anything a failed constructor left behind (names are ours alone).
      const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '';
      for (const line of left.split('\n')) {
        const name = line.split(' ')[0] ?? '';
        if (name.startsWith(`${this.prefix}-`)) spawnSync('ip', ['netns', 'del', name]);
      }
    })();
    return this.cleaning;
  }
}
