// The Node version the tooling needs is one fact: package.json's engines, which the README states and which the
// tooling's own engines fields require. The relay bundle is held to Node 18 elsewhere (test/relay/node18.test.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.join(__dirname, "..");
const pkg = (p: string) =>
  JSON.parse(fs.readFileSync(path.join(root, p, "package.json"), "utf8")) as { engines?: { node?: string } };
/** The lowest major an engines range admits: ">=20" -> 20, "^20.19.0 || ^22.13.0 || >=24" -> 20. */
const lowestMajor = (range: string) => Math.min(...[...range.matchAll(/(\d+)(?:\.\d+)*/g)].map((m) => Number(m[1])));

describe("the Node version of the tooling", () => {
  const ours = pkg(".").engines?.node ?? "";

  it("engines is at least what @pulumi/pulumi, vitest and ESLint require", () => {
    for (const tool of ["node_modules/@pulumi/pulumi", "node_modules/vitest", "node_modules/eslint"])
      expect(lowestMajor(ours), tool).toBeGreaterThanOrEqual(lowestMajor(pkg(tool).engines?.node ?? "0"));
  });

  it("the README states the same version, and that the relay bundle still runs on Node 18", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    expect(readme).toContain(`**Node ${lowestMajor(ours)} or later** for the tooling`);
    expect(readme).toMatch(/relay bundle the hosts\s+run still runs on Debian 12's Node 18/);
    expect(readme).not.toMatch(/Node 18\+/);
  });
});
