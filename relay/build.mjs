// Bundles the relay into one file, relay/dist/relay.js, that runs with no node_modules on the oldest tested release's
// Node (Debian 12's 18; Debian 13 ships 20): test/cloud-init/release.test.ts ties the target to cloud-init/release.ts.
import { build } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import { escapeAboveLatin1 } from "./bundle-charset.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const outfile = path.join(here, "dist", "relay.js");

// Built in memory, then written once with its characters escaped (relay/bundle-charset.mjs): esbuild leaves
// non-Latin-1 characters in comments and regular expressions, and V8 keeps a source with any of them at two bytes per
// character. If the escape refuses the bundle, nothing is written: relay/dist/relay.js is never left unescaped.
const result = await build({
  entryPoints: [path.join(here, "main.ts")],
  outfile,
  write: false,
  bundle: true,
  platform: "node",
  target: "node18",
  format: "cjs",
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
  banner: { js: "#!/usr/bin/env node" },
});

const [bundle] = result.outputFiles;
if (result.outputFiles.length !== 1 || bundle.path !== outfile) {
  throw new Error(`esbuild produced ${result.outputFiles.map((f) => f.path).join(", ")}, expected only ${outfile}`);
}
mkdirSync(path.dirname(outfile), { recursive: true });
writeFileSync(outfile, escapeAboveLatin1(bundle.text));
