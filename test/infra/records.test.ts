import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bimiRecord,
  dkimPublicKeyFromPem,
  dkimRecord,
  dmarcRecord,
  spfRecord,
  txtContent,
  txtValue,
  zoneFileLine,
} from "../../infra/records";

describe("record functions", () => {
  it("spfRecord authorizes every IP and include once and ends with the configured all", () => {
    expect(
      spfRecord({
        ipv4: ["203.0.113.11", "203.0.113.12", "203.0.113.11"],
        ipv6: ["2001:db8:1::1"],
        includes: ["_spf.mx.cloudflare.net"],
        all: "-all",
      }),
    ).toBe("v=spf1 ip4:203.0.113.11 ip4:203.0.113.12 ip6:2001:db8:1::1 include:_spf.mx.cloudflare.net -all");
  });

  it("dmarcRecord writes policy, pct, rua and alignment", () => {
    expect(
      dmarcRecord({ policy: "quarantine", pct: 100, rua: ["mailto:dmarc@example.com"], adkim: "s", aspf: "s" }),
    ).toBe("v=DMARC1; p=quarantine; pct=100; rua=mailto:dmarc@example.com; adkim=s; aspf=s");
    expect(dmarcRecord({ policy: "none", pct: 50, rua: [], adkim: "r", aspf: "r" })).toBe(
      "v=DMARC1; p=none; pct=50; adkim=r; aspf=r",
    );
  });

  it("bimiRecord carries the logo and the (possibly empty) authority", () => {
    expect(bimiRecord({ logoUrl: "https://example.com/l.svg" })).toBe("v=BIMI1; l=https://example.com/l.svg; a=");
    expect(bimiRecord({ logoUrl: "https://example.com/l.svg", authorityUrl: "https://example.com/vmc.pem" })).toBe(
      "v=BIMI1; l=https://example.com/l.svg; a=https://example.com/vmc.pem",
    );
  });

  it("dkimRecord publishes the key's SubjectPublicKeyInfo, which parses back to the same 2048-bit key", () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = publicKey.export({ type: "spki", format: "pem" }).toString();
    const rec = dkimRecord(pem);
    expect(rec.startsWith("v=DKIM1; k=rsa; p=")).toBe(true);
    const p = rec.split("p=")[1];
    const back = createPublicKey({ key: Buffer.from(p, "base64"), format: "der", type: "spki" });
    expect(back.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(back.export({ type: "spki", format: "pem" }).toString()).toBe(pem);
    expect(() => dkimPublicKeyFromPem("-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----")).toThrow();
  });

  it("txtContent quotes a short value as one string", () => {
    expect(txtContent("v=spf1 -all")).toBe('"v=spf1 -all"');
  });

  it("txtContent splits long values into <=255-character quoted strings that join back to the value", () => {
    const value = "v=DKIM1; k=rsa; p=" + "A".repeat(392);
    const content = txtContent(value);
    const parts = content.match(/"[^"]*"/g)!;
    expect(parts.map((p) => p.length - 2)).toEqual([255, value.length - 255]);
    expect(content).toBe(`"${value.slice(0, 255)}" "${value.slice(255)}"`);
    expect(txtValue(content)).toBe(value);
    expect(txtContent("x".repeat(255)).match(/"/g)!.length).toBe(2);
    expect(txtContent("x".repeat(256)).match(/"/g)!.length).toBe(4);
  });

  it("txtContent refuses quotes and newlines instead of emitting a broken record", () => {
    expect(() => txtContent('a"b')).toThrow(/quotes/);
    expect(() => txtContent("a\nb")).toThrow(/newlines/);
  });

  it("zoneFileLine renders MX with priority and a trailing dot", () => {
    expect(
      zoneFileLine({ name: "example.com", type: "MX", ttl: 300, content: "route1.mx.cloudflare.net", priority: 10 }),
    ).toBe("example.com.\t300\tIN\tMX\t10 route1.mx.cloudflare.net.");
    expect(
      zoneFileLine({
        name: "mail-relay.example.com",
        type: "CNAME",
        ttl: 1,
        content: "abc.cfargotunnel.com",
        proxied: true,
      }),
    ).toMatch(/auto\tIN\tCNAME\tabc\.cfargotunnel\.com\. ; proxied/);
  });
});

describe("DKIM records carry the key in the form its algorithm needs (RFC 8463)", () => {
  it("Ed25519: k=ed25519 and p= the raw 32-byte public key, never the SubjectPublicKeyInfo, for any key", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (seed) => {
        const priv = createPrivateKey({
          key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), Buffer.from(seed)]),
          format: "der",
          type: "pkcs8",
        });
        const pub = createPublicKey(priv);
        const rec = dkimRecord(pub.export({ type: "spki", format: "pem" }).toString());
        const p = /; p=([A-Za-z0-9+/=]+)$/.exec(rec)?.[1] ?? "";
        expect(rec.startsWith("v=DKIM1; k=ed25519; p=")).toBe(true);
        expect(Buffer.from(p, "base64")).toEqual(Buffer.from(pub.export({ format: "jwk" }).x as string, "base64url"));
      }),
      { numRuns: 25 },
    );
  });
  it("RSA: k=rsa and p= the SubjectPublicKeyInfo, as before", () => {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    expect(dkimRecord(publicKey.export({ type: "spki", format: "pem" }).toString())).toBe(`v=DKIM1; k=rsa; p=${spki}`);
  });
  it("refuses any other key type with a message naming it", () => {
    const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(() => dkimRecord(publicKey.export({ type: "spki", format: "pem" }).toString())).toThrow(
      /RSA or Ed25519, got ec/,
    );
  });
});
