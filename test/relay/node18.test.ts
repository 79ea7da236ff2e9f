import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BUNDLE, haveBundle, haveNode18, NODE18, NODE18_DIR, startBundle, type BundleProcess } from "./bundle-process";
import { tempDir } from "./fixtures";

const TOKEN = "node18-test-token-0123456789abcdefghijk";
if (!haveNode18) console.warn(`skipping Node 18 tests: ${NODE18_DIR} is missing; run \`bash .ci/node18.sh\` (.ci/run does)`);
if (!haveBundle) console.warn(`skipping Node 18 tests: ${BUNDLE} is missing; run \`npm run build\``);

const tmp = tempDir("relay-node18-");
let relay: BundleProcess | undefined;
afterAll(async () => {
  await relay?.stop("SIGKILL");
  tmp.cleanup();
});

describe.skipIf(!haveNode18 || !haveBundle)("the bundle runs on Debian 12's Node 18 (what the host installs)", () => {
  it("the interpreter really is Node 18", () => {
    expect(execFileSync(NODE18.bin, ["--version"], { env: { ...process.env, ...NODE18.env } }).toString()).toMatch(/^v18\./);
  });

  it("serves /health and accepts a /send that is handed to sendmail", async () => {
    relay = await startBundle(path.join(tmp.dir, "r"), TOKEN, NODE18);
    expect(await (await fetch(`${relay.url}/health`)).text()).toBe("ok");
    const res = await fetch(`${relay.url}/send`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({
        to: "user@example.net",
        from: { email: "noreply@example.com", name: "Node 18" },
        subject: "node 18 round trip",
        html: "<p>hello</p>",
        attachments: [{ filename: "a.txt", contentType: "text/plain", content: "aGk=" }],
      }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    let state = "";
    for (let i = 0; i < 100 && state !== "handed_off"; i++) {
      await new Promise((r) => setTimeout(r, 50));
      state = ((await (await fetch(`${relay.url}/messages/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { message: { state: string } }).message.state;
    }
    expect(state).toBe("handed_off");
    // fetch keeps its socket alive: Node 18's server.close() alone would wait for it (seen: 60 s hang).
    const t0 = Date.now();
    expect(await relay.stop("SIGTERM")).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});
