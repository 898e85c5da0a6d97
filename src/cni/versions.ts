// CNI spec versions this plugin speaks, and how they compare. Owns the rule that an empty or
// missing config `cniVersion` means "0.1.0" (the spec's and libcni's reading of old configs),
// and the list every VERSION answer and every "incompatible versions" error prints.

/** Every version we read configs of and format results for, oldest first. */
export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The version a config without `cniVersion` (or with "") is read as. */
export const IMPLICIT_CONFIG_VERSION: CniVersion = '0.1.0';

/** The newest version we speak: used in answers when the caller's version is unknown. */
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Numeric parts of "a.b.c"; anything unparsable sorts as 0. */
function parts(v: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

/** Negative, zero or positive as `a` is older than, equal to or newer than `b`. */
export function compareVersions(a: string, b: string): number {
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) {
    const d = pa[i]! - pb[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

/** The list as Go's `%q` prints a string slice, which libcni-based plugins put in errors. */
export function formatVersionList(): string {
  return `[${SUPPORTED_VERSIONS.map((v) => `"${v}"`).join(' ')}]`;
}
