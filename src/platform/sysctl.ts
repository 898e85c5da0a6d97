// Writing kernel parameters under /proc/sys for the current network namespace (unlike
// /sys/class/net, /proc/sys/net follows the writer's namespace).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class Sysctl {
  /** Writes /proc/sys/<path>; false if the key does not exist (e.g. IPv6 disabled). */
  write(path: string, value: string): boolean {
    try {
      writeFileSync(join('/proc/sys', path), value);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }
}
