/**
 * Rule 18, outbound-tls-not-downgradable: every way a direct-delivery main.cf can fall below DANE + MTA-STS (DANE
 * first) fires it, a smarthost main.cf is not its business, and only the opt-out that mail-relay:outboundTls labels
 * the servers with silences it. The pack's copies of the label and the maps are tied to cloud-init's here.
 */
import { describe, expect, it } from "vitest";
import {
  DANE_POLICY_MAP as CLOUD_INIT_DANE_MAP,
  MTA_STS_POLICY_MAP as CLOUD_INIT_MTA_STS_MAP,
  OUTBOUND_TLS_LABEL as CLOUD_INIT_LABEL,
  OUTBOUND_TLS_MODES,
  TLS_POLICY_MAPS,
  renderPostfixMainCf,
} from "../../cloud-init";
import { serverPolicyLabels } from "../../infra/mailRelay";
import { checkAll } from "../../infra/policy/rules";
import {
  DANE_POLICY_MAP,
  DOWNGRADE_ACCEPTED,
  MTA_STS_POLICY_MAP,
  OUTBOUND_TLS_LABEL,
} from "../../infra/policy/rules/outbound-tls";
import { buildConfig } from "../../testkit/node-config";
import { parseMainCf } from "../cloud-init/parsers";
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
  // MTA-STS before DANE: an MTA-STS policy would override a domain's DANE.
  ["smtp_tls_policy_maps", `${MTA_STS_POLICY_MAP}, ${DANE_POLICY_MAP}`],
  // DANE-first only: enforce MTA-STS policies ignored.
  ["smtp_tls_policy_maps", DANE_POLICY_MAP],
  // MTA-STS only: the resolver's secure answer wins over DANE (its documented limitation).
  ["smtp_tls_policy_maps", MTA_STS_POLICY_MAP],
];

const labelled = (rs: FixtureResource[], labels: Record<string, string>) => {
  for (const r of rs.filter((x) => x.type === "hcloud:index/server:Server"))
    r.props.labels = { ...(r.props.labels as Record<string, string>), ...labels };
};

describe("rule 18: direct delivery is never weaker than DANE (first) + MTA-STS", () => {
  it("the baseline (dane, dnssec, the DANE-first socketmap then the MTA-STS one) passes", () => {
    expect(fires(baseline())).toEqual([]);
  });
  it.each(WEAKER)("fires when %s = %s", (key, value) => {
    const v = fires(mutate(baseline(), (s) => setMainCf(s, key, value)));
    expect(v).toHaveLength(1);
    expect(v[0]!.message).toContain(key);
    expect(v[0]!.message).toContain(`pulumi config set mail-relay:outboundTls ${DOWNGRADE_ACCEPTED}`);
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
  it("only the outboundTls opt-out's label silences it; another value, or the old label, does not count", () => {
    const weak = (labels: Record<string, string>) =>
      mutate(baseline(), (s) => {
        setMainCf(s, "smtp_tls_security_level", "may");
        labelled(s, labels);
      });
    expect(fires(weak({ [OUTBOUND_TLS_LABEL]: DOWNGRADE_ACCEPTED }))).toEqual([]);
    expect(fires(weak({ [OUTBOUND_TLS_LABEL]: "dane-and-mta-sts" }))).toHaveLength(1);
    expect(fires(weak({ [OUTBOUND_TLS_LABEL]: "true" }))).toHaveLength(1);
    expect(fires(weak({ "mail-relay-outbound-tls-downgrade-risk": "accepted" }))).toHaveLength(1);
  });
});

describe("one source: the config key decides both main.cf and the label the rule reads", () => {
  it("the pack's label, opt-out value and maps are cloud-init's", () => {
    expect(OUTBOUND_TLS_LABEL).toBe(CLOUD_INIT_LABEL);
    expect(OUTBOUND_TLS_MODES).toContain(DOWNGRADE_ACCEPTED);
    expect([DANE_POLICY_MAP, MTA_STS_POLICY_MAP]).toEqual([CLOUD_INIT_DANE_MAP, CLOUD_INIT_MTA_STS_MAP]);
    expect([...TLS_POLICY_MAPS]).toEqual([DANE_POLICY_MAP, MTA_STS_POLICY_MAP]);
  });
  it.each(OUTBOUND_TLS_MODES)(
    "outboundTls = %s: the rendered main.cf with the program's labels passes, and without the labels only the opt-out fires",
    (mode) => {
      const mainCf = parseMainCf(renderPostfixMainCf({ ...buildConfig().host, outboundTls: mode }));
      const withMainCf = (labels: Record<string, string>) =>
        mutate(baseline(), (s) => {
          for (const key of ["smtp_tls_security_level", "smtp_dns_support_level", "smtp_tls_policy_maps"])
            setMainCf(s, key, mainCf.get(key));
          labelled(s, labels);
        });
      expect(fires(withMainCf(serverPolicyLabels({ outboundTls: mode })))).toEqual([]);
      expect(fires(withMainCf({})).length > 0).toBe(mode === DOWNGRADE_ACCEPTED);
    },
  );
});
