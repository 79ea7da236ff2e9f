// The Debian releases the host can run, and every setting that differs between them: one table, one row per
// release. Renderers, the deploy steps, the rehearsal and the real-tool tests read a release's row through
// `releaseProfile`; nothing else anywhere asks which release it is rendering for. docs/releases.md's table of
// differences is generated from this file (`npm run docs:gen`).

/** Debian codenames, oldest first. The codename is also the debootstrap suite the rehearsal builds. */
export const DEBIAN_RELEASES = ["bookworm", "trixie"] as const;
export type DebianRelease = (typeof DEBIAN_RELEASES)[number];

/**
 * The release `image` defaults to, and what the host files of an image marked `allowUntestedImage` are rendered for.
 */
export const DEFAULT_RELEASE: DebianRelease = "trixie";

export interface ReleaseProfile {
  readonly codename: DebianRelease;
  /** Debian's version number: 12, 13. */
  readonly version: number;
  /** The Hetzner image that boots this release. */
  readonly hetznerImage: string;
  /** The versions this release ships, as the real-tool tests find them (each test checks its own). */
  readonly ships: {
    readonly postfix: string;
    readonly openssh: string;
    readonly systemd: number;
    readonly cloudInit: string;
    readonly nftables: string;
    readonly node: number;
  };
  readonly postfix: {
    /** main.cf's compatibility_level: the level Debian's own main.cf sets on this release. */
    readonly compatibilityLevel: string;
    /** The unit that runs Postfix's master (its journal holds the log). */
    readonly masterUnit: string;
  };
}

export const RELEASES: { readonly [R in DebianRelease]: ReleaseProfile & { readonly codename: R } } = {
  bookworm: {
    codename: "bookworm",
    version: 12,
    hetznerImage: "debian-12",
    ships: { postfix: "3.7", openssh: "9.2", systemd: 252, cloudInit: "22.4", nftables: "1.0.6", node: 18 },
    postfix: { compatibilityLevel: "3.6", masterUnit: "postfix@-.service" },
  },
  trixie: {
    codename: "trixie",
    version: 13,
    hetznerImage: "debian-13",
    ships: { postfix: "3.10", openssh: "10.0", systemd: 257, cloudInit: "25.1", nftables: "1.1.3", node: 20 },
    // Debian's postfix 3.9.1-7 folded the postfix@- instance unit into postfix.service (NEWS.Debian).
    postfix: { compatibilityLevel: "3.9", masterUnit: "postfix.service" },
  },
};

export function releaseProfile(release: DebianRelease): ReleaseProfile {
  const p = RELEASES[release];
  if (p === undefined)
    throw new Error(`release must be one of ${DEBIAN_RELEASES.join(", ")}, got ${JSON.stringify(release)}`);
  return p;
}

/** The tested release a Hetzner image boots, or undefined for an image no row names. */
export function releaseForImage(image: string): DebianRelease | undefined {
  return DEBIAN_RELEASES.find((r) => RELEASES[r].hetznerImage === image);
}

/** "Debian 13 (trixie)" */
export function releaseName(release: DebianRelease): string {
  const p = releaseProfile(release);
  return `Debian ${p.version} (${p.codename})`;
}
