// The host's unbound in the rehearsal's world, checked by the real unbound-checkconf with the configuration the host
// really has: Debian's root auto-trust-anchor-file, the program's drop-in (cloud-init/outbound-tls.ts), then the
// rehearsal's (rehearsal/world/resolver.ts) with a zone signed by ldns-signzone. Unbound accepts the validator with
// domain-insecure below the root and the signed zone's trust anchor; the control, domain-insecure "." (what the world's
// unsigned root would need), is refused beside the root's auto trust anchor.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { renderUnboundConf } from "../../cloud-init";
import { signZone } from "../../rehearsal/world/dnssec";
import { renderRehearsalUnboundConf } from "../../rehearsal/world/resolver";
import { missing, removeDir, run, tool } from "../../testkit/real-tools";

const skip = missing("the rehearsal's unbound drop-in: unbound-checkconf", {
  tools: ["unbound-checkconf", "ldns-keygen", "ldns-signzone"],
});

/** The root KSK-2017's DS (IANA's root-anchors): what Debian's root.key starts from. */
const ROOT_DS = ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

describe.skipIf(skip)("the rehearsal's resolver drop-in, beside Debian's root auto trust anchor", () => {
  let dir = "";
  const check = (dropIn: string) => {
    writeFileSync(join(dir, "root.key"), `${ROOT_DS}\n`);
    writeFileSync(join(dir, "mail-relay.conf"), renderUnboundConf());
    writeFileSync(join(dir, "zz-rehearsal-world.conf"), dropIn);
    writeFileSync(
      join(dir, "unbound.conf"),
      [
        "server:",
        '    chroot: ""',
        '    username: ""',
        `    directory: "${dir}"`,
        `    auto-trust-anchor-file: "${join(dir, "root.key")}"`,
        `include: "${join(dir, "mail-relay.conf")}"`,
        `include: "${join(dir, "zz-rehearsal-world.conf")}"`,
        "",
      ].join("\n"),
    );
    const r = run(tool("unbound-checkconf") as string, [join(dir, "unbound.conf")]);
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "rehearsal-resolver-"));
  });
  afterAll(() => {
    if (dir) removeDir(dir);
  });

  it("validator on, the world's TLDs insecure, a signed zone's DS as trust anchor with a stub: accepted", () => {
    const z = signZone(dir, "dane.example", ["@ IN NS ns.dane.example.", "ns IN A 198.51.100.54"], {
      keygen: tool("ldns-keygen"),
      signzone: tool("ldns-signzone"),
    });
    const conf = renderRehearsalUnboundConf(
      ["arpa", "com", "example", "net"],
      [{ zone: z.zone, ds: z.ds, server: "198.51.100.54" }],
    );
    const r = check(conf);
    expect(r.out).toMatch(/no errors/);
    expect(r.ok).toBe(true);
  });

  it("control: domain-insecure for the root is refused beside the root's auto trust anchor", () => {
    const r = check('server:\n    module-config: "validator iterator"\n    domain-insecure: "."\n');
    expect(r.ok).toBe(false);
    expect(r.out).toMatch(/anchor cannot be with and without autotrust/);
  });
});
