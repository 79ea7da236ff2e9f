/**
 * `npm run docs:gen`: renders the reference tables the docs must not retype, between marker comments:
 *   docs/configuration.md  config keys   <- Pulumi.yaml
 *   docs/configuration.md  stack outputs <- the doc comments of infra/index.ts's exports
 *   docs/relay-api.md      error codes   <- relay/errors.ts (ERROR_STATUS, ERROR_MEANING)
 *   docs/releases.md       what differs between the Debian releases <- cloud-init/release.ts (RELEASES)
 * `npm run docs:gen -- --check` changes nothing and exits 1 when a doc is out of date; test/scripts/gen-docs.test.ts
 * fails the same way.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { DEBIAN_RELEASES, DEFAULT_RELEASE, RELEASES, releaseName } from "../cloud-init/release";
import { ERROR_MEANING, ERROR_STATUS, type ErrorCode } from "../relay/errors";

export const ROOT = path.join(__dirname, "..");

/**
 * A table cell: newlines folded and pipes escaped (one value stays one cell), a `<` outside code spans escaped (not an
 * HTML tag).
 */
export function cell(text: string): string {
  return text
    .replace(/\s*\n\s*/g, " ")
    .split("`")
    .map((part, i) => (i % 2 === 0 ? part.replace(/</g, "&lt;") : part))
    .join("`")
    .replace(/\|/g, "\\|");
}

interface ConfigKeySchema {
  readonly type?: string;
  readonly secret?: boolean;
  readonly items?: { readonly type?: string };
  readonly description?: string;
}

/**
 * The config key table: one row per key of Pulumi.yaml, in its order. Untyped keys say their shape in "(...)" first.
 */
export function renderConfigTable(pulumiYaml: string): string {
  const doc = parseYaml(pulumiYaml) as { name: string; config: Record<string, ConfigKeySchema> };
  const rows = Object.entries(doc.config).map(([key, k]) => {
    let description = k.description ?? "";
    let type: string;
    const shape = /^\(([^)]+)\)\s*/.exec(description);
    if (k.type === "array") type = `list of ${k.items?.type ?? "values"}s`;
    else if (k.type) type = k.type;
    else if (shape) {
      type = shape[1] as string;
      description = description.slice(shape[0].length);
    } else type = "object";
    if (k.secret) type += ", secret";
    return `| \`${key}\` | ${cell(type)} | ${cell(description)} |`;
  });
  return ["| key (`" + doc.name + ":`) | type | meaning, default |", "|---|---|---|", ...rows].join("\n");
}

/** The stack outputs table: each `export const` of infra/index.ts with the doc comment above it. */
export function renderOutputsTable(indexTs: string): string {
  const rows = [...indexTs.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*\nexport const (\w+)/g)].map(
    ([, comment, name]) => {
      const text = (comment as string).replace(/^\s*\*\s?/gm, "").trim();
      return `| \`${name}\` | ${/\(secret\)/.test(text) ? "yes" : "no"} | ${cell(text)} |`;
    },
  );
  return ["| output | secret | what |", "|---|---|---|", ...rows].join("\n");
}

/** The relay's error table: every code, its HTTP status and when it is answered. */
export function renderErrorTable(): string {
  const rows = (Object.keys(ERROR_STATUS) as ErrorCode[]).map(
    (code) => `| \`${code}\` | ${ERROR_STATUS[code]} | ${cell(ERROR_MEANING[code])} |`,
  );
  return ["| code | status | when |", "|---|---|---|", ...rows].join("\n");
}

/** The release table: one column per release, one row per version shipped and per setting that differs. */
export function renderReleaseTable(): string {
  const col = (f: (r: (typeof RELEASES)[keyof typeof RELEASES]) => string | number) =>
    DEBIAN_RELEASES.map((r) => cell(String(f(RELEASES[r])))).join(" | ");
  const rows: [string, string][] = [
    [
      "Hetzner image (`image`)",
      DEBIAN_RELEASES.map((r) => `\`${RELEASES[r].hetznerImage}\`${r === DEFAULT_RELEASE ? " (default)" : ""}`).join(
        " | ",
      ),
    ],
    ["Postfix", col((r) => r.ships.postfix)],
    ["OpenSSH", col((r) => r.ships.openssh)],
    ["systemd", col((r) => r.ships.systemd)],
    ["cloud-init", col((r) => r.ships.cloudInit)],
    ["nftables", col((r) => r.ships.nftables)],
    ["Node (Debian's `nodejs`, runs the relay)", col((r) => r.ships.node)],
    ["main.cf `compatibility_level`", col((r) => `\`${r.postfix.compatibilityLevel}\``)],
    ["the unit that runs Postfix's master (its journal)", col((r) => `\`${r.postfix.masterUnit}\``)],
  ];
  return [
    `| | ${DEBIAN_RELEASES.map(releaseName).join(" | ")} |`,
    `|---|${DEBIAN_RELEASES.map(() => "---").join("|")}|`,
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
  ].join("\n");
}

const begin = (name: string): string =>
  `<!-- BEGIN GENERATED ${name}: edit the source and run \`npm run docs:gen\` -->`;
const end = (name: string): string => `<!-- END GENERATED ${name} -->`;

/** Replaces what lies between a block's markers; a doc without both markers is an error, never silently skipped. */
export function fillBlock(doc: string, name: string, content: string, file: string): string {
  const b = doc.indexOf(begin(name));
  const e = doc.indexOf(end(name));
  if (b === -1 || e === -1 || e < b)
    throw new Error(`${file}: markers for the generated block "${name}" are missing:\n${begin(name)}\n${end(name)}`);
  return `${doc.slice(0, b + begin(name).length)}\n${content}\n${doc.slice(e)}`;
}

/** Every generated doc: its path and the content it should have. */
export function generatedDocs(root = ROOT): { file: string; current: string; expected: string }[] {
  const read = (rel: string): string => fs.readFileSync(path.join(root, rel), "utf8");
  const blocks: Record<string, [string, string][]> = {
    "docs/configuration.md": [
      ["config-keys", renderConfigTable(read("Pulumi.yaml"))],
      ["stack-outputs", renderOutputsTable(read("infra/index.ts"))],
    ],
    "docs/relay-api.md": [["error-codes", renderErrorTable()]],
    "docs/releases.md": [["release-table", renderReleaseTable()]],
  };
  return Object.entries(blocks).map(([file, list]) => {
    const current = read(file);
    const expected = list.reduce((doc, [name, content]) => fillBlock(doc, name, content, file), current);
    return { file, current, expected };
  });
}

function main(argv: string[]): number {
  const check = argv.includes("--check");
  let stale = 0;
  for (const d of generatedDocs()) {
    if (d.current === d.expected) continue;
    stale++;
    if (check) console.error(`${d.file} is out of date: run \`npm run docs:gen\``);
    else {
      fs.writeFileSync(path.join(ROOT, d.file), d.expected);
      console.log(`wrote ${d.file}`);
    }
  }
  if (stale === 0) console.log("generated docs are up to date");
  return check && stale > 0 ? 1 : 0;
}

if (require.main === module) process.exit(main(process.argv.slice(2)));
