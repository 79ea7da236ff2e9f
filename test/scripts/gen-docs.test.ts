/**
 * The reference tables in docs/ are generated (scripts/gen-docs.ts): each must equal what its source renders to
 * today, so a new config key, output or error code without `npm run docs:gen` fails here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { CONFIG_KEYS, SECRET_KEYS } from "../../infra/config";
import { ERROR_STATUS } from "../../relay/errors";
import {
  cell,
  fillBlock,
  generatedDocs,
  renderConfigTable,
  renderErrorTable,
  renderOutputsTable,
  ROOT,
} from "../../scripts/gen-docs";
import { runStack } from "../helpers/stack";

const read = (rel: string): string => fs.readFileSync(path.join(ROOT, rel), "utf8");

describe("generated docs match their sources", () => {
  it.each(generatedDocs().map((d) => [d.file, d] as const))("%s is up to date (else: npm run docs:gen)", (_file, d) => {
    expect(d.current, `${d.file} differs from what its sources render: run \`npm run docs:gen\``).toBe(d.expected);
  });

  it("a changed source changes the rendered table (the check above can fail)", () => {
    const yaml = read("Pulumi.yaml");
    expect(
      renderConfigTable(yaml.replace("Hetzner server type. Default: cx22.", "Hetzner server type. Default: cx32.")),
    ).not.toBe(renderConfigTable(yaml));
    expect(() => fillBlock("no markers here", "config-keys", "x", "docs/x.md")).toThrow(
      /markers for the generated block "config-keys" are missing/,
    );
  });
});

describe("the sources themselves agree", () => {
  it("Pulumi.yaml describes exactly the keys infra/config.ts reads, and the table lists each once", () => {
    const declared = Object.keys((parseYaml(read("Pulumi.yaml")) as { config: Record<string, unknown> }).config);
    expect([...declared].sort()).toEqual([...Object.keys(CONFIG_KEYS), ...SECRET_KEYS].sort());
    const table = renderConfigTable(read("Pulumi.yaml"));
    for (const k of declared) expect(table.match(new RegExp(`^\\| \`${k}\` \\|`, "gm")), k).toHaveLength(1);
    expect(table).toMatch(/^\| `sshPrivateKey` \| string, secret \|/m);
    expect(table).toMatch(/^\| `relay` \| object \| Relay limits/m);
  });

  it("every error code is in the error table with its status", () => {
    const table = renderErrorTable();
    for (const [code, status] of Object.entries(ERROR_STATUS)) expect(table).toContain(`| \`${code}\` | ${status} |`);
  });

  it("the outputs table lists every stack output, and marks secret exactly the ones the program makes secret", async () => {
    const run = await runStack("prod");
    const rows = renderOutputsTable(read("infra/index.ts"))
      .split("\n")
      .slice(2)
      .map((l) => /^\| `(\w+)` \| (yes|no) \|/.exec(l)!.slice(1) as [string, string]);
    expect(rows.map(([n]) => n).sort()).toEqual(Object.keys(run.outputs).sort());
    expect(
      rows
        .filter(([, s]) => s === "yes")
        .map(([n]) => n)
        .sort(),
    ).toEqual([...run.secretOutputs].sort());
  }, 120_000);

  it("a table cell never breaks the table or turns into HTML", () => {
    expect(cell("smtp | sendmail\nnext")).toBe("smtp \\| sendmail next");
    expect(cell("mail.<domain> and `<hr>`")).toBe("mail.&lt;domain> and `<hr>`");
  });
});
