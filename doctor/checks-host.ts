/**
 * The checks over SSH, as pure functions of what the probe printed (host-probe.ts): the DKIM key on the host against
 * the published TXT, the services, outbound SMTP (or the smarthost's TLS and login), Postfix's queue, disk space for
 * it and the clock. Tests feed them recorded probe output.
 */
import { DEBIAN_RELEASES, RELEASES } from "../cloud-init/release";
import { sections } from "./host-probe";
import { type Check, fail, pass, warn } from "./report";

export interface HostContext {
  readonly node: string;
  readonly stack: string;
  readonly selector: string;
  readonly domain: string;
  /** The `p=` of the DKIM TXT the resolver returns for the active selector (undefined when there is none). */
  readonly publishedDkimKey?: string;
  /** Whether the stack runs the tunnel (cloudflared is expected). */
  readonly tunnel: boolean;
  /** The doctor's clock, in seconds since the epoch, when the probe ran. */
  readonly nowSeconds: number;
}

/** `p=` of a DKIM record, whitespace removed. */
export function dkimPublicKey(txt: string): string | undefined {
  const m = /(?:^|;)\s*p=([^;]*)/.exec(txt);
  return m ? m[1].replace(/\s+/g, "") : undefined;
}

function postfixUnit(versionId: string): string {
  const r = DEBIAN_RELEASES.find((d) => String(RELEASES[d].version) === versionId.trim());
  return RELEASES[r ?? "trixie"].postfix.masterUnit;
}

export function checkDkimKey(hostKey: string, ctx: HostContext): Check {
  const id = "host.dkim";
  const subject = `DKIM key on ${ctx.node} for ${ctx.selector}._domainkey.${ctx.domain}`;
  if (!/^[A-Za-z0-9+/]+=*$/.test(hostKey))
    return fail(
      id,
      "host",
      subject,
      `cannot read the host's key: ${hostKey.slice(0, 200)}`,
      `redeploy the key: \`pulumi up --stack ${ctx.stack}\` pushes it`,
    );
  if (ctx.publishedDkimKey === undefined)
    return fail(
      id,
      "host",
      subject,
      "no DKIM TXT published for the active selector",
      `\`pulumi up --stack ${ctx.stack}\` publishes it`,
    );
  if (hostKey === ctx.publishedDkimKey)
    return pass(id, "host", subject, `the host's private key matches the published p= (${hostKey.slice(-12)})`);
  return fail(
    id,
    "host",
    subject,
    `the host signs with a key whose public half (…${hostKey.slice(-12)}) is not the published p= ` +
      `(…${ctx.publishedDkimKey.slice(-12)}): receivers answer dkim=fail`,
    `\`pulumi up --stack ${ctx.stack}\` (publishes the stack's key and pushes it to the host); compare ` +
      `\`openssl pkey -in /etc/opendkim/keys/${ctx.domain}/${ctx.selector}.private -pubout\` with ` +
      `\`dig +short TXT ${ctx.selector}._domainkey.${ctx.domain}\``,
  );
}

export function checkServices(unitsText: string, versionId: string, ctx: HostContext): Check[] {
  const states = new Map(
    unitsText
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .filter((p) => p.length >= 2)
      .map(([u, active, enabled]) => [u, { active, enabled: enabled ?? "-" }]),
  );
  const units = [postfixUnit(versionId), "opendkim.service", "mail-relay.service"];
  if (ctx.tunnel) units.push("cloudflared-mail-relay.service");
  return units.map((u) => {
    const s = states.get(u) ?? { active: "unknown", enabled: "-" };
    const subject = `${u} on ${ctx.node}`;
    if (s.active === "active") return pass("host.service", "host", subject, `active (${s.enabled})`);
    return fail(
      "host.service",
      "host",
      subject,
      `${s.active} (${s.enabled})`,
      `systemctl start ${u} on ${ctx.node}; \`journalctl -u ${u} -n 50\` says why it stopped`,
    );
  });
}

/** Outbound SMTP: the banner of a well-known MX over port 25, or with a smarthost its STARTTLS + AUTH answer. */
export function checkOutbound(text: string, ctx: HostContext): Check {
  const mode = /^mode=(\w+) target=(\S+)/m.exec(text);
  const rc = /^rc=(\d+)/m.exec(text)?.[1];
  const body = text
    .split("\n")
    .filter((l) => !/^(mode|rc)=/.test(l))
    .join(" ")
    .trim();
  if (mode?.[1] === "smarthost") {
    const subject = `smarthost ${mode[2]} from ${ctx.node}`;
    if (/^235[ -]/m.test(text))
      return pass("host.smarthost", "host", subject, "STARTTLS verified, AUTH accepted (235)");
    return fail(
      "host.smarthost",
      "host",
      subject,
      `no successful login: ${body.slice(0, 300) || "no answer"}`,
      "check mail-relay:smarthost (host, port) and the smarthost password " +
        "(`pulumi config set --secret mail-relay:smarthostPassword`), then `pulumi up`",
    );
  }
  const subject = `outbound TCP 25 to ${mode?.[2] ?? "?"} from ${ctx.node}`;
  if (rc === "0" && /^220[ -]/m.test(body)) return pass("host.smtp-out", "host", subject, `connected: ${body}`);
  const saw =
    rc === "124"
      ? "no answer within the timeout: the connection is dropped on the way (port 25 blocked)"
      : `could not connect (exit ${rc ?? "?"}): ${body.slice(0, 200) || "no banner"}`;
  return fail(
    "host.smtp-out",
    "host",
    subject,
    saw,
    "Hetzner blocks outbound 25 on new projects: ask Hetzner to lift it (Cloud Console, Support, " +
      "'Request sending limit unblock' for port 25/465) or send through a smarthost (mail-relay:smarthost)",
  );
}

interface QueueEntry {
  readonly queue_name?: string;
  readonly recipients?: { readonly address?: string; readonly delay_reason?: string }[];
}

/** Postfix's queue: how many messages, how many deferred, and the commonest deferral reasons. */
export function checkQueue(text: string, ctx: HostContext, warnAt = 100, failAt = 1000): Check {
  const subject = `Postfix queue on ${ctx.node}`;
  const entries: QueueEntry[] = [];
  for (const line of text.split("\n").filter((l) => l.startsWith("{"))) {
    try {
      entries.push(JSON.parse(line) as QueueEntry);
    } catch {
      /* a line cut by the probe's size cap */
    }
  }
  if (entries.length === 0 && text !== "" && !text.startsWith("{") && !/queue is empty/i.test(text))
    return warn("host.queue", "host", subject, `postqueue -j: ${text.slice(0, 200)}`, "run `postqueue -p` on the host");
  const deferred = entries.filter((e) => e.queue_name === "deferred");
  const reasons = new Map<string, number>();
  for (const e of deferred)
    for (const r of e.recipients ?? []) {
      // The reason without the queue id or address specifics, so one cause counts once.
      const key = (r.delay_reason ?? "?").replace(/\[[0-9a-f.:]+\]/gi, "[…]").slice(0, 120);
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
  const top = [...reasons.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([r, n]) => `${n}x "${r}"`);
  const saw =
    `${entries.length} message(s), ${deferred.length} deferred` +
    (top.length ? `; top reasons: ${top.join("; ")}` : "");
  const fix =
    "fix the reason above, then `postqueue -f` on the host to retry now (`postqueue -p` lists the queue; the relay's " +
    "GET /messages/:id shows each message's remote reply)";
  if (entries.length >= failAt) return fail("host.queue", "host", subject, saw, fix);
  if (deferred.length > 0 || entries.length >= warnAt) return warn("host.queue", "host", subject, saw, fix);
  return pass("host.queue", "host", subject, saw);
}

/** Free space where Postfix queues (it refuses mail below queue_minfree; the relay below RELAY_MIN_FREE_BYTES). */
export function checkDisk(dfLine: string, ctx: HostContext): Check {
  const subject = `disk for /var/spool/postfix on ${ctx.node}`;
  const p = dfLine.trim().split(/\s+/);
  const size = Number(p[1]);
  const avail = Number(p[3]);
  if (!Number.isFinite(size) || !Number.isFinite(avail) || size <= 0)
    return warn(
      "host.disk",
      "host",
      subject,
      `cannot read df: ${dfLine}`,
      "run `df -h /var/spool/postfix` on the host",
    );
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  const pct = (100 * avail) / size;
  const saw = `${gib(avail)} free of ${gib(size)} (${pct.toFixed(0)}%) on ${p[5] ?? "?"}`;
  const fix =
    "free space (`journalctl --vacuum-size=200M`, `apt-get clean`, old releases in /opt/mail-relay/releases) " +
    "or choose a larger mail-relay:serverType";
  if (avail < 512 * 2 ** 20 || pct < 5) return fail("host.disk", "host", subject, saw, fix);
  if (avail < 2 * 2 ** 30 || pct < 15) return warn("host.disk", "host", subject, saw, fix);
  return pass("host.disk", "host", subject, saw);
}

/** The clock: NTP synchronised (timedatectl), and within a minute of the doctor's own. */
export function checkClock(text: string, ctx: HostContext): Check {
  const subject = `clock on ${ctx.node}`;
  const now = Number(/^now=(\d+)/m.exec(text)?.[1]);
  const synced = /^NTPSynchronized=(\w+)/m.exec(text)?.[1];
  const ntp = /^NTP=(\w+)/m.exec(text)?.[1];
  const skew = Number.isFinite(now) ? now - ctx.nowSeconds : NaN;
  const skewText = Number.isFinite(skew) ? `${skew >= 0 ? "+" : ""}${skew}s from the doctor's clock` : "no time read";
  if (Number.isFinite(skew) && Math.abs(skew) > 60)
    return fail(
      "host.clock",
      "host",
      subject,
      `${skewText}: DKIM timestamps and TLS checks go wrong`,
      `timedatectl set-ntp true on ${ctx.node}, then \`timedatectl timesync-status\``,
    );
  if (synced === "yes") return pass("host.clock", "host", subject, `NTP synchronised, ${skewText}`);
  const what =
    synced === undefined
      ? `timedatectl gave no NTP status (${text.split("\n")[0].slice(0, 120)})`
      : `NTPSynchronized=${synced}, NTP=${ntp ?? "?"}`;
  return warn(
    "host.clock",
    "host",
    subject,
    `${what}; ${skewText}`,
    `\`timedatectl set-ntp true\` on ${ctx.node} (systemd-timesyncd), then \`timedatectl timesync-status\``,
  );
}

/** The HELO name Postfix uses, from the probe (smtp_helo_name, else myhostname). */
export function heloFromProbe(text: string): string | undefined {
  const [helo, myhostname] = text.split("\n").map((l) => l.trim());
  const name = helo && !helo.startsWith("$") ? helo : myhostname;
  return name && /^[a-z0-9.-]+$/i.test(name) ? name.toLowerCase() : undefined;
}

/** Every host check from one probe's output. */
export function hostChecks(out: string, ctx: HostContext): Check[] {
  const s = sections(out);
  return [
    checkDkimKey(s.get("dkim") ?? "", ctx),
    ...checkServices(s.get("units") ?? "", s.get("os") ?? "", ctx),
    checkOutbound(s.get("smtp") ?? "", ctx),
    checkQueue(s.get("queue") ?? "", ctx),
    checkDisk(s.get("disk") ?? "", ctx),
    checkClock(s.get("clock") ?? "", ctx),
  ];
}
