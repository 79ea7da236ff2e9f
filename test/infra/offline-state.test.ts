// Offline runs keep random outputs (keys, tokens) in a state file when given one, as a stack's state keeps them
// between updates: the rehearsal renders a stack twice (before and after an upgrade) and both must agree on them.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline";
import { ofType, runStack, T } from "../helpers/stack";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "offline-state-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const dkimTxt = (r: OfflineRun) =>
  ofType(r.resources, T.dnsRecord)
    .filter((x) => /dkim/.test(x.name))
    .map((x) => x.props.content);

describe("offline runs and the state file", () => {
  it("two runs sharing a state file have the same DKIM keys, tokens and tunnel secret; the image may differ", async () => {
    const stateFile = path.join(dir, "state.json");
    const a = await runStack("prod", { image: "debian-12" }, { stateFile });
    const b = await runStack("prod", { image: "debian-13" }, { stateFile });
    expect(dkimTxt(b)).toEqual(dkimTxt(a));
    expect(b.outputs.relayTokens).toEqual(a.outputs.relayTokens);
    expect(b.outputs.accessClientSecrets).toEqual(a.outputs.accessClientSecrets);
    expect(fs.statSync(stateFile).mode & 0o777).toBe(0o600);
  }, 60_000);
  it("without one, each run draws its own (so the test above can fail)", async () => {
    const a = await runStack("prod");
    const b = await runStack("prod");
    expect(dkimTxt(b)).not.toEqual(dkimTxt(a));
    expect(b.outputs.relayTokens).not.toEqual(a.outputs.relayTokens);
  }, 60_000);
});
