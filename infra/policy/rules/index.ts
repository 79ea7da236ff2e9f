/**
 * The registry: every rule, one file per concern beside this one, and checkAll to run them over a stack.
 * policies.ts turns each into a CrossGuard policy; the tests call checkAll directly.
 */
import type { ResourceView, Rule, Violation } from "../model";
import { accessInFrontOfTunnel } from "./access";
import { dkimDmarcBimi, forwardConfirmedRdns, mxNeverPointsAtRelay, spfCoversEveryNode } from "./dns";
import { firewallBeforeFirstBoot, noPublicSmtpPorts, sshRestricted } from "./firewall";
import { primaryIpsKept } from "./hetzner";
import { neverSendUnsigned } from "./milter";
import { outboundTlsNotDowngradable } from "./outbound-tls";
import {
  postfixLoopbackOnly,
  relayRestrictionsClosed,
  sendOnlyMydestination,
  trustedNetworksLoopbackOnly,
} from "./postfix";
import { noSecretsInUserData } from "./secrets";
import { tunnelCannotReachMailPorts, tunnelIngressLocal } from "./tunnel";

/** Every rule, in the order. */
export const rules: readonly Rule[] = [
  noPublicSmtpPorts,
  firewallBeforeFirstBoot,
  sshRestricted,
  postfixLoopbackOnly,
  trustedNetworksLoopbackOnly,
  relayRestrictionsClosed,
  sendOnlyMydestination,
  neverSendUnsigned,
  tunnelCannotReachMailPorts,
  accessInFrontOfTunnel,
  forwardConfirmedRdns,
  spfCoversEveryNode,
  dkimDmarcBimi,
  noSecretsInUserData,
  mxNeverPointsAtRelay,
  primaryIpsKept,
  tunnelIngressLocal,
  outboundTlsNotDowngradable,
];

/** Run every rule over a stack: resource rules on each resource, stack rules on the whole list. */
export function checkAll(resources: readonly ResourceView[], only: readonly Rule[] = rules): Violation[] {
  return only.flatMap((rule) =>
    rule.scope === "resource" ? resources.flatMap((r) => rule.check(r)) : rule.check(resources),
  );
}
