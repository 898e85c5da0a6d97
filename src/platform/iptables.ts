// iptables rules and chains, converging: ensure* checks (-C) before adding, remove* treats
// "not there" as done. `-w` waits for the xtables lock that kube-proxy, portmap and we share.
import { WeaveError } from '../core/errors.js';
import { execFile } from './exec.js';

export type Table = 'filter' | 'nat' | 'mangle';

export class Iptables {
  private readonly bin: string;

  constructor(opts: { bin?: string } = {}) {
    this.bin = opts.bin ?? 'iptables';
  }

  private async run(args: string[]): Promise<{ ok: boolean; stderr: string; stdout: string }> {
    const r = await execFile(this.bin, ['-w', '5', ...args]);
    return { ok: r.code === 0, stderr: r.stderr.trim(), stdout: r.stdout };
  }

  async chainExists(table: Table, chain: string): Promise<boolean> {
    return (await this.run(['-t', table, '-n', '-L', chain])).ok;
  }

  async ensureChain(table: Table, chain: string): Promise<void> {
    const r = await this.run(['-t', table, '-N', chain]);
    if (!r.ok && !/exists/i.test(r.stderr)) throw new WeaveError('KERNEL_FAILED', `iptables -t ${table} -N ${chain}: ${r.stderr}`);
  }

  async ruleExists(table: Table, chain: string, rule: string[]): Promise<boolean> {
    return (await this.run(['-t', table, '-C', chain, ...rule])).ok;
  }

  /** Appends the rule (or inserts it at `position`, 1-based) unless it is already there. */
  async ensureRule(table: Table, chain: string, rule: string[], position?: number): Promise<void> {
    if (await this.ruleExists(table, chain, rule)) return;
    const args = position === undefined ? ['-t', table, '-A', chain, ...rule] : ['-t', table, '-I', chain, String(position), ...rule];
    const r = await this.run(args);
    if (!r.ok) throw new WeaveError('KERNEL_FAILED', `iptables ${args.join(' ')}: ${r.stderr}`);
  }

  /** Deletes every copy of the rule; a missing rule or chain is success. */
  async removeRule(table: Table, chain: string, rule: string[]): Promise<void> {
    for (let i = 0; i < 16; i++) {
      const r = await this.run(['-t', table, '-D', chain, ...rule]);
      if (!r.ok) return;
    }
  }

  /** Flushes and deletes a chain; a missing chain is success. */
  async removeChain(table: Table, chain: string): Promise<void> {
    if (!(await this.chainExists(table, chain))) return;
    await this.run(['-t', table, '-F', chain]);
    const r = await this.run(['-t', table, '-X', chain]);
    if (!r.ok && !/No chain|does not exist/i.test(r.stderr)) {
      throw new WeaveError('KERNEL_FAILED', `iptables -t ${table} -X ${chain}: ${r.stderr}`);
    }
  }

  /** Rules of a chain in `-S` form (without the -N line). */
  async listRules(table: Table, chain: string): Promise<string[]> {
    const r = await this.run(['-t', table, '-S', chain]);
    if (!r.ok) return [];
    return r.stdout.split('\n').filter((l) => l.startsWith('-A '));
  }
}
