/**
 * Rule 18, outbound-tls-not-downgradable: every way a direct-delivery main.cf can fall below DANE + MTA-STS fires it,
 * a smarthost main.cf is not its business, and only the risk-naming server label silences it.
 */
import { describe, expect, it } from "vitest";
import { checkAll } from "../../infra/policy/rules";
import { DOWNGRADE_RISK_LABEL } from "../../infra/policy/rules/outbound-tls";
import { baseline, FixtureResource, mutate, setMainCf } from "./fixtures";

const RULE = "outbound-tls-not-downgradable";
const fires = (rs: FixtureResource[]) => checkAll(rs).filter((v) => v.rule === RULE);

/** Each weakening of the baseline's direct-delivery main.cf, as [key, value] (undefined = the line removed). */
const WEAKER: readonly [string, string | undefined][] = [
  ["smtp_tls_security_level", "may"],
  ["smtp_tls_security_level", "encrypt"],
  ["smtp_tls_security_level", "none"],
  ["smtp_tls_security_level", undefined],
  ["smtp_dns_support_level", "enabled"],
  ["smtp_dns_support_level", undefined],
  ["smtp_tls_policy_maps", ""],
  ["smtp_tls_policy_maps", "hash:/etc/postfix/tls_policy"],
  ["smtp_tls_policy_maps", undefined],
];

describe("rule 18: direct delivery is never weaker than DANE + MTA-STS", () => {
  it("the baseline (dane, dnssec, the MTA-STS socketmap) passes", () => {
    expect(fires(baseline())).toEqual([]);
  });
  it.each(WEAKER)("fires when %s = %s", (key, value) => {
    const v = fires(mutate(baseline(), (s) => setMainCf(s, key, value)));
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain(key);
    expect(v[0]!.message).toContain(`${DOWNGRADE_RISK_LABEL}=accepted`);
  });
  it("dane-only is at least as strong as dane: it passes", () => {
    expect(fires(mutate(baseline(), (s) => setMainCf(s, "smtp_tls_security_level", "dane-only")))).toEqual([]);
  });
  it("a smarthost main.cf (relayhost set) is left to the smarthost's own secure level", () => {
    const smarthost = mutate(baseline(), (s) => {
      setMainCf(s, "relayhost", "[smtp.example.org]:587");
      setMainCf(s, "smtp_tls_security_level", "secure");
      setMainCf(s, "smtp_tls_policy_maps", undefined);
    });
    expect(fires(smarthost)).toEqual([]);
  });
  it("the server label naming the risk is the only opt-out; another value does not count", () => {
    const weak = (label: string) =>
      mutate(baseline(), (s) => {
        setMainCf(s, "smtp_tls_security_level", "may");
        for (const r of s.filter((x) => x.type === "hcloud:index/server:Server"))
          r.props.labels = { ...(r.props.labels as Record<string, string>), [DOWNGRADE_RISK_LABEL]: label };
      });
    expect(fires(weak("accepted"))).toEqual([]);
    expect(fires(weak("true"))).toHaveLength(1);
  });
});
