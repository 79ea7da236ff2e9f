/**
 * The host's unbound in the rehearsal: the world has no signed root, so the deployed resolver (validating against
 * the real root's trust anchor) would find every answer bogus. This drop-in, written into the host's image before it
 * boots, forwards every name to the world's DNS and validates nothing (iterator only): the host still resolves
 * through its own unbound (resolv.conf = 127.0.0.1, as deployed), but nothing is DNSSEC-validated here, so the
 * rehearsal proves the wiring (opportunistic delivery, the MTA-STS resolver, both signatures), not DANE.
 */
import { WORLD } from "../world";

/** Sorts after Debian's and the program's drop-ins (unbound.conf.d is read in name order). */
export const REHEARSAL_UNBOUND_DROPIN = "etc/unbound/unbound.conf.d/zz-rehearsal-world.conf";

export function renderRehearsalUnboundConf(): string {
  return [
    "# mail-relay rehearsal (rehearsal/world/resolver.ts): the world's DNS stands in for the internet's root.",
    "server:",
    "    # No validator: the world's root is unsigned. (domain-insecure \".\" is refused beside Debian's root",
    "    # auto-trust-anchor: 'anchor cannot be with and without autotrust'.)",
    '    module-config: "iterator"',
    "forward-zone:",
    '    name: "."',
    `    forward-addr: ${WORLD.dns}`,
    "",
  ].join("\n");
}
