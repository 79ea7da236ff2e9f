// Bundles the relay into one file, relay/dist/relay.js, that runs with no node_modules on the oldest tested release's
// Node (Debian 12's 18; Debian 13 ships 20): test/cloud-init/release.test.ts ties the target to cloud-init/release.ts.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import * as path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));

await build({
  entryPoints: [path.join(here, "main.ts")],
  outfile: path.join(here, "dist", "relay.js"),
  bundle: true,
  platform: "node",
  target: "node18",
  format: "cjs",
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
  banner: { js: "#!/usr/bin/env node" },
});
