// The client as it ships: compiled by its own tsconfig (client/tsconfig.json: ESM + declarations), imported from an
// empty directory by Debian 12's Node 18 (the oldest Node it promises), sending to the real relay.
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missing } from "../../testkit/real-tools";
import { haveNode18, NODE18 } from "../relay/bundle-process";
import { tempDir } from "../relay/fixtures";
import { FROM, startRealRelay, TOKEN, type RealRelay } from "./real-relay";

const skip = missing("the built client on Node 18", {
  check: () => (haveNode18 ? undefined : `${NODE18.bin} is missing; run .ci/node18.sh`),
});
const exec = promisify(execFile);
const tmp = tempDir("client-dist-");
let relay: RealRelay;
beforeAll(async () => {
  relay = await startRealRelay();
});
afterAll(async () => {
  await relay?.close();
  tmp.cleanup();
});

describe.skipIf(skip)("the built client package", () => {
  it("tsc builds ESM with type declarations, and Node 18 imports it and sends through it", async () => {
    const out = path.join(tmp.dir, "dist");
    const tsc = path.join(__dirname, "../../node_modules/typescript/bin/tsc");
    await exec(process.execPath, [tsc, "-p", path.join(__dirname, "../../client/tsconfig.json"), "--outDir", out]);
    for (const f of ["index.js", "index.d.ts", "nodemailer.js", "nodemailer.d.ts"])
      expect(existsSync(path.join(out, f)), f).toBe(true);
    writeFileSync(path.join(tmp.dir, "package.json"), JSON.stringify({ type: "module" }));
    const script =
      `import { RelayClient } from "./dist/index.js";\n` +
      `const c = new RelayClient({ url: process.env.URL, token: process.env.TOKEN });\n` +
      `const r = await c.send({ from: process.env.FROM, to: "ok@example.net", subject: "node18", text: "x" });\n` +
      `const s = await c.status(r.id);\n` +
      `console.log(JSON.stringify({ version: process.version, id: r.id, state: s.state }));\n`;
    writeFileSync(path.join(tmp.dir, "send.mjs"), script);
    const { stdout } = await exec(NODE18.bin, ["--no-warnings", path.join(tmp.dir, "send.mjs")], {
      cwd: tmp.dir,
      env: { ...NODE18.env, URL: relay.url, TOKEN, FROM },
    });
    const r = JSON.parse(stdout) as { version: string; id: string; state: string };
    expect(r.version).toMatch(/^v18\./);
    expect(r.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(["queued", "sending", "handed_off"]).toContain(r.state);
  });
});
