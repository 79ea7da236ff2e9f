/** Rule 8, the DKIM milter: Postfix never sends a message OpenDKIM has not signed. */
import { StackRule, violation, Violation } from "../model";
import { filePushes, mainCfs, masterCfs } from "../facts";
import { opendkimSocketEndpoint, parseOpendkimConf } from "../parse/opendkim";
import { MilterEndpoint, parseMilterItem, postfixList, postfixMilterEndpoint, sameMilter } from "../parse/postfix";

/** 8. milter_default_action = tempfail, and the DKIM milter is in smtpd_milters and non_smtpd_milters. */
export const neverSendUnsigned: StackRule = {
  name: "never-send-unsigned",
  scope: "stack",
  reason:
    "Unsigned mail fails DMARC and is rejected under Gmail/Yahoo sender rules (RFC 6376, RFC 7489); " +
    "if OpenDKIM is down, mail must wait (tempfail), not leave unsigned.",
  check(rs) {
    const out: Violation[] = [];
    const pushes = filePushes(rs);
    const mains = mainCfs(rs);
    const dkimSockets = pushes
      .filter((p) => p.path === "/etc/opendkim.conf" && p.content !== undefined)
      .flatMap((p) => {
        const s = parseOpendkimConf(p.content!).get("socket");
        const e = s ? opendkimSocketEndpoint(s) : undefined;
        return e ? [{ host: p.host, endpoint: e }] : [];
      });
    for (const m of mains) {
      const r = m.push.resource;
      const queueDir = m.get("queue_directory") ?? "/var/spool/postfix";
      const action = m.get("milter_default_action");
      if (action?.trim().toLowerCase() !== "tempfail")
        out.push(
          violation(this.name, r, `main.cf milter_default_action = ${action ?? "(not set: accept)"}; must be tempfail`),
        );
      const ro = m.get("receive_override_options");
      if (ro && postfixList(ro).includes("no_milters"))
        out.push(violation(this.name, r, `main.cf receive_override_options = ${ro} disables the milters`));
      const sockets = dkimSockets
        .filter((s) => s.host === undefined || m.push.host === undefined || s.host === m.push.host)
        .map((s) => s.endpoint);
      for (const key of ["smtpd_milters", "non_smtpd_milters"]) {
        const val = m.get(key);
        const items = postfixList(val ?? "").map(parseMilterItem);
        if (items.length === 0) {
          out.push(
            violation(
              this.name,
              r,
              `main.cf ${key} is ${val === undefined ? "not set" : "empty"}; the DKIM milter must sign every message`,
            ),
          );
          continue;
        }
        for (const it of items) {
          if (it.defaultAction !== undefined && it.defaultAction.toLowerCase() !== "tempfail")
            out.push(
              violation(
                this.name,
                r,
                `main.cf ${key} sets default_action=${it.defaultAction} for ${it.address}; must be tempfail`,
              ),
            );
        }
        if (sockets.length > 0) {
          const endpoints = items
            .map((i) => postfixMilterEndpoint(i.address, queueDir))
            .filter((e): e is MilterEndpoint => e !== undefined);
          if (!endpoints.some((e) => sockets.some((s) => sameMilter(e, s))))
            out.push(
              violation(
                this.name,
                r,
                `main.cf ${key} = ${val} does not include the OpenDKIM socket from /etc/opendkim.conf`,
              ),
            );
        }
      }
      if (sockets.length === 0) {
        const a = new Set(postfixList(m.get("smtpd_milters") ?? "").map((i) => parseMilterItem(i).address));
        const b = postfixList(m.get("non_smtpd_milters") ?? "").map((i) => parseMilterItem(i).address);
        if (a.size > 0 && b.length > 0 && !b.some((x) => a.has(x)))
          out.push(
            violation(
              this.name,
              r,
              "main.cf smtpd_milters and non_smtpd_milters share no milter; both paths must go through the DKIM milter",
            ),
          );
      }
    }
    for (const { push, services } of masterCfs(rs)) {
      for (const s of services) {
        const act = s.overrides.get("milter_default_action");
        if (act !== undefined && act.toLowerCase() !== "tempfail")
          out.push(
            violation(
              this.name,
              push.resource,
              `master.cf service "${s.service}" overrides milter_default_action=${act}`,
            ),
          );
        const ro = s.overrides.get("receive_override_options");
        if (ro !== undefined && postfixList(ro).includes("no_milters"))
          out.push(
            violation(
              this.name,
              push.resource,
              `master.cf service "${s.service}" overrides receive_override_options=${ro}, which disables DKIM signing`,
            ),
          );
        for (const key of ["smtpd_milters", "non_smtpd_milters"]) {
          const o = s.overrides.get(key);
          if (o !== undefined && postfixList(o).length === 0)
            out.push(
              violation(
                this.name,
                push.resource,
                `master.cf service "${s.service}" overrides ${key} to empty, so its mail leaves unsigned`,
              ),
            );
        }
      }
    }
    return out;
  },
};
