// Bundles the relay into one file, relay/dist/relay.js, that runs with no node_modules on the oldest tested release's
// Node (Debian 12's 18; Debian 13 ships 20): test/cloud-init/release.test.ts ties the target to cloud-init/release.ts.
import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as path from "node:path";
import { escapeAboveLatin1 } from "./bundle-charset.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const outfile = path.join(here, "dist", "relay.js");

await build({
  entryPoints: [path.join(here, "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node18",
  format: "cjs",
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
  banner: { js: "#!/usr/bin/env node" },
});

// One byte per character in V8's heap (relay/bundle-charset.mjs): esbuild leaves non-Latin-1 characters in comments
// and regular expressions.
writeFileSync(outfile, escapeAboveLatin1(readFileSync(outfile, "utf8")));
