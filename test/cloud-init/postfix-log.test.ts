import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { POSTFIX_LOG } from "../../cloud-init/paths";
import { renderPostfixMainCf } from "../../cloud-init/postfix";
import { postfixLogSetupLines, renderPostfixLogrotate } from "../../cloud-init/postfix-log";
import { buildConfig } from "../../testkit/node-config";
import { parseMainCf } from "./parsers";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("Postfix's log is a file the relay can read and nobody else", () => {
  it("main.cf sends Postfix's log to the file the relay's tracker follows (the relay's default RELAY_POSTFIX_LOG)", () => {
    expect(parseMainCf(renderPostfixMainCf(buildConfig().host)).get("maillog_file")).toBe(POSTFIX_LOG);
    expect(POSTFIX_LOG).toBe("/var/log/mail-relay/postfix.log");
  });

  it("the deploy step creates it root:mailrelay 0640 in a 0750 directory, and leaves an existing log's content alone", () => {
    const root = mkdtempSync(join(tmpdir(), "postfix-log-"));
    const stubs = mkdtempSync(join(tmpdir(), "postfix-log-stubs-"));
    dirs.push(root, stubs);
    writeFileSync(join(stubs, "chown"), `#!/usr/bin/env bash\necho "chown $*" >> "${stubs}/calls"\n`);
    chmodSync(join(stubs, "chown"), 0o755);
    const run = () =>
      spawnSync("bash", ["-euc", `umask 077\n${postfixLogSetupLines().join("\n")}`], {
        env: { PATH: `${stubs}:${process.env.PATH}`, root },
        encoding: "utf8",
      });
    expect(run().status).toBe(0);
    const file = join(root, POSTFIX_LOG);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect(statSync(join(root, "/var/log/mail-relay")).mode & 0o777).toBe(0o750);
    writeFileSync(file, "Nov 30 10:00:00 mail postfix/master[1]: daemon started\n");
    expect(run().status).toBe(0);
    expect(statSync(file).size).toBeGreaterThan(0);
    expect(spawnSync("cat", [join(stubs, "calls")], { encoding: "utf8" }).stdout).toMatch(
      /chown root:mailrelay .*postfix\.log/,
    );
  });

  it("logrotate recreates it with the relay's group, keeps .1 uncompressed (read by inode after the rename) and reopens postlogd", () => {
    const conf = renderPostfixLogrotate();
    expect(conf).toMatch(new RegExp(`^${POSTFIX_LOG.replaceAll(".", "\\.")} \\{$`, "m"));
    expect(conf).toMatch(/^ {2}create 0640 root mailrelay$/m);
    expect(conf).toMatch(/^ {2}delaycompress$/m);
    expect(conf).toMatch(/postfix reload/);
    expect(conf).not.toMatch(/copytruncate/); // truncation would race the reader; rename + create keeps every line
  });
});
