// What the DANE-first TLS policy socketmap and the host's configuration (cloud-init/) agree on. No dependencies, so
// the renderers import it without pulling in the relay.

/** The socketmap's loopback address; main.cf names it first in smtp_tls_policy_maps. */
export const TLS_POLICY_LISTEN = { host: "127.0.0.1", port: 8462 } as const;
/** The map name in `socketmap:inet:127.0.0.1:8462:dane`: the only name the server answers. */
export const TLS_POLICY_MAP_NAME = "dane";
/** postfix-mta-sts-resolver's zones: the enforcing default zone and the one that also returns testing policies. */
export const MTA_STS_ENFORCE_ZONE = "postfix";
export const MTA_STS_TESTING_ZONE = "testing";
/** The relay bundle's subcommand that runs the socketmap (mail-relay-tls-policy.service). */
export const TLS_POLICY_SUBCOMMAND = "tls-policy";
/** Its environment (set by the unit's Environment= lines; no secrets). */
export const TLS_POLICY_ENV = {
  listen: "TLS_POLICY_LISTEN",
  resolver: "TLS_POLICY_RESOLVER",
  mtaSts: "TLS_POLICY_MTA_STS",
} as const;
