import { describe, expect, it } from "vitest";
import { renderRelayUnit } from "../../cloud-init";
import { buildConfig } from "../../testkit/node-config";
import { parseUnit } from "./parsers";

function service(unit: string): Map<string, string[]> {
  const section = parseUnit(unit).get("Service");
  if (!section) throw new Error("no [Service] section");
  return section;
}

describe("relay unit: sandbox follows the hand-off", () => {
  it("SMTP hand-off (default): no new privileges, no setuid/setgid, only the queue writable", () => {
    const s = service(renderRelayUnit(buildConfig().host));
    expect(s.get("NoNewPrivileges")).toEqual(["yes"]);
    expect(s.get("RestrictSUIDSGID")).toEqual(["yes"]);
    expect(s.get("ReadWritePaths")).toEqual(["/var/spool/mail-relay"]);
  });

  it("sendmail hand-off: setgid postdrop allowed and the maildrop writable, the rest of the sandbox kept", () => {
    const s = service(renderRelayUnit({ ...buildConfig().host, relayHandoff: "sendmail" }));
    expect(s.get("NoNewPrivileges")).toEqual(["no"]);
    expect(s.get("RestrictSUIDSGID")).toEqual(["no"]);
    expect(s.get("ReadWritePaths")).toEqual(["/var/spool/mail-relay /var/spool/postfix/maildrop"]);
    expect(s.get("ProtectSystem")).toEqual(["strict"]);
    expect(s.get("CapabilityBoundingSet")).toEqual([""]);
    expect(s.get("User")).toEqual(["mailrelay"]);
  });
});
