/**
 * shellcheck on every shell script the program ships, taken from the program's own runs (as `npm run plan` and the
 * rehearsal's capture get them), not from renderer fixtures: each remote Command's create and delete, every script
 * those pass on through `bash -c '...'`, and each server's user-data runcmd as cloud-init turns it into a script.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { OfflineRun } from "../../infra/offline";
import { ofType, runStack, stackVariants, T, useStandInBundleIfUnbuilt } from "../helpers/stack";
import { missing, removeDir, run } from "../../testkit/real-tools";

useStandInBundleIfUnbuilt();

const skip = missing("shellcheck on the rendered deploy scripts", { tools: ["shellcheck"] });

interface ShellScript {
  /** Where it comes from: "<run>: <resource> create", "... > bash -c #1", "<run>: <server> runcmd". */
  readonly name: string;
  readonly text: string;
  readonly shell: "bash" | "sh";
}

/** The scripts a rendered script hands to `bash -c '...'` (shellQuote's quoting undone), which shellcheck skips. */
function nestedBashScripts(script: string): string[] {
  return [...script.matchAll(/\bbash -c '((?:[^']|'\\'')*)'/g)].map((m) => m[1].replace(/'\\''/g, "'"));
}

function withNested(name: string, text: string): ShellScript[] {
  return [
    { name, text, shell: "bash" },
    ...nestedBashScripts(text).flatMap((t, i) => withNested(`${name} > bash -c #${i + 1}`, t)),
  ];
}

/** cloud-init's shellify(): the runcmd list as the /bin/sh script it runs (a list item's words each single-quoted). */
function runcmdScript(runcmd: (string | string[])[]): string {
  const quote = (w: string) => `'${w.replace(/'/g, "'\\''")}'`;
  return "#!/bin/sh\n" + runcmd.map((c) => (typeof c === "string" ? c : c.map(quote).join(" "))).join("\n") + "\n";
}

function scriptsOf(runName: string, r: OfflineRun): ShellScript[] {
  const out: ShellScript[] = [];
  for (const c of ofType(r.resources, T.command)) {
    for (const phase of ["create", "update", "delete"] as const) {
      const text = c.props[phase];
      if (text === undefined) continue;
      expect(typeof text, `${runName}: ${c.name} ${phase}`).toBe("string");
      out.push(...withNested(`${runName}: ${c.name} ${phase}`, text as string));
    }
  }
  for (const s of ofType(r.resources, T.server)) {
    const userData = parseYaml(String(s.props.userData)) as { runcmd?: (string | string[])[] };
    if (userData.runcmd)
      out.push({ name: `${runName}: ${s.name} runcmd`, text: runcmdScript(userData.runcmd), shell: "sh" });
  }
  return out;
}

describe.skipIf(skip)("shellcheck: every script the program runs on a server", () => {
  let dir: string;
  const scripts = new Map<string, ShellScript>();
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "shellcheck-"));
    const runs: [string, Promise<OfflineRun>][] = [
      ["prod", runStack("prod")],
      ["staging", runStack("staging")],
      ...stackVariants.map((v): [string, Promise<OfflineRun>] => [v.name, runStack(v.stack, v.overrides)]),
    ];
    // Identical scripts across stacks are checked once, under the first name that rendered them.
    for (const [name, r] of runs)
      for (const s of scriptsOf(name, await r)) if (!scripts.has(s.text)) scripts.set(s.text, s);
  }, 300_000);
  afterAll(() => dir && removeDir(dir));

  function shellcheck(s: ShellScript, i: number) {
    const file = join(dir, `script-${i}.sh`);
    writeFileSync(file, s.text);
    return run("shellcheck", ["--shell", s.shell, "--norc", "--format", "gcc", file]);
  }

  it("shellcheck can fail: it refuses an unquoted expansion and a useless cd", () => {
    const r = shellcheck(
      { name: "known bad", text: '#!/usr/bin/env bash\ncd $1\nrm -rf "$dir"/*\n', shell: "bash" },
      -1,
    );
    expect(r.status).not.toBe(0);
    expect(r.stdout).toMatch(/SC2086/);
    expect(r.stdout).toMatch(/SC2164/);
  });

  it("every remote command's create/delete (and the scripts they run through bash -c) and every runcmd pass shellcheck", () => {
    const all = [...scripts.values()];
    // Each deploy step is here: host key, cloud-init wait, file installs, firewall, mail config, relay (with its two
    // nested scripts), cloudflared start, both teardown guards; and the runcmd of user-data.
    for (const purpose of [
      "install the program's SSH host key",
      "wait for cloud-init",
      "install /etc/postfix/main.cf",
      "load the host firewall",
      "apply Postfix and OpenDKIM configuration",
      "install (if needed) and activate relay release",
      "# mail-relay deploy step: install relay release",
      "# mail-relay deploy step: activate relay release",
      "start the Cloudflare tunnel",
      "stop the Cloudflare tunnel",
      "drain the queues, then stop the relay",
    ])
      expect(
        all.some((s) => s.text.includes(purpose)),
        purpose,
      ).toBe(true);
    expect(all.some((s) => s.shell === "sh")).toBe(true);
    expectNoFindings(all);
  });

  it("the repository's own shell scripts (.ci/) pass shellcheck", () => {
    const ciDir = join(__dirname, "../../.ci");
    const own = readdirSync(ciDir)
      .map((f) => ({ name: `.ci/${f}`, text: readFileSync(join(ciDir, f), "utf8") }))
      .filter((f) => /^#!.*\b(bash|sh)\b/.test(f.text))
      .map((f) => ({ ...f, shell: /^#!.*\bbash\b/.test(f.text) ? ("bash" as const) : ("sh" as const) }));
    expect(own.map((f) => f.name)).toContain(".ci/run");
    expectNoFindings(own);
  });

  function expectNoFindings(checked: ShellScript[]): void {
    const failures = checked
      .map((s, i) => ({ s, r: shellcheck(s, i) }))
      .filter(({ r }) => r.status !== 0)
      .map(({ s, r }) => `--- ${s.name} (${s.shell}) ---\n${r.stdout}${r.stderr}`);
    expect(failures.join("\n"), `${failures.length} of ${checked.length} scripts have shellcheck findings`).toBe("");
    console.log(`shellcheck: ${checked.length} distinct scripts checked, 0 findings`);
  }
});
