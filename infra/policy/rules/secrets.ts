/** Rule 14, secrets: none of the stack's secret values, and no private key, in user-data. */
import { gunzipSync } from "node:zlib";
import { asObj, isStr, ofType, ResourceView, resourceLabel, StackRule, TYPES, violation, Violation } from "../model";
import { filePushes } from "../facts";

/** The decoded forms of base64 (and gzip+base64) blobs inside a text: write_files content may be encoded. */
export function decodedBlobs(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/[A-Za-z0-9+/]{24,}={0,2}/g)) {
    try {
      const buf = Buffer.from(m[0], "base64");
      out.push(buf[0] === 0x1f && buf[1] === 0x8b ? gunzipSync(buf).toString("utf8") : buf.toString("utf8"));
    } catch {
      // not base64 or not gzip: nothing hidden there
    }
  }
  return out;
}

export interface SecretValue {
  /** Where it comes from (resource + field): reported instead of the value itself. */
  readonly source: string;
  readonly value: string;
}

/** Env keys that name a secret; other keys of a secret file (paths, domains, limits) are configuration. */
const SECRET_KEY_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|PASS\b|_KEY\b|^KEY|CREDENTIAL|AUTH/i;
/** A value shaped like generated key material: long, no path or domain punctuation, letters and digits mixed. */
const looksRandom = (x: string) =>
  x.length >= 20 && /^[A-Za-z0-9+/=_-]+$/.test(x) && !x.includes("/") && /[0-9]/.test(x) && /[A-Za-z]/.test(x);

const SECRET_FILE =
  /^(\/etc\/opendkim\/keys\/|\/etc\/mail-relay\.env$|\/etc\/postfix\/sasl_passwd$|\/etc\/cloudflared\/)/;

/** Every secret value the stack holds: generated secrets, private keys, tokens, secret file contents. */
export function stackSecrets(rs: readonly ResourceView[]): SecretValue[] {
  const out: SecretValue[] = [];
  const add = (r: ResourceView, field: string, value: unknown, min = 8) => {
    if (isStr(value) && value.trim().length >= min)
      out.push({ source: `${resourceLabel(r)} ${field}`, value: value.trim() });
  };
  for (const r of rs) {
    switch (r.type) {
      case TYPES.randomPassword:
        add(r, "result", r.props.result);
        break;
      case TYPES.randomBytes:
        add(r, "base64", r.props.base64);
        add(r, "hex", r.props.hex);
        break;
      case TYPES.privateKey:
        for (const f of ["privateKeyPem", "privateKeyOpenssh", "privateKeyPemPkcs8"]) {
          add(r, f, r.props[f]);
          // A key body pasted without its BEGIN/END lines is just as leaked.
          if (isStr(r.props[f]))
            for (const line of r.props[f].split(/\r?\n/))
              if (/^[A-Za-z0-9+/=]{40,}$/.test(line)) add(r, `${f} (body)`, line);
        }
        break;
      case TYPES.serviceToken:
        add(r, "clientSecret", r.props.clientSecret);
        break;
      case TYPES.tunnel:
        add(r, "tunnelSecret", r.props.tunnelSecret);
        break;
      case TYPES.command: {
        const pk = asObj(r.props.connection)?.privateKey;
        add(r, "connection.privateKey", pk);
        if (isStr(pk))
          for (const line of pk.split(/\r?\n/))
            if (/^[A-Za-z0-9+/=]{40,}$/.test(line)) add(r, "connection.privateKey (body)", line);
        add(r, "connection.password", asObj(r.props.connection)?.password);
        break;
      }
      default:
        break;
    }
  }
  for (const p of filePushes(rs)) {
    if (!SECRET_FILE.test(p.path) || p.content === undefined) continue;
    add(p.resource, `content of ${p.path}`, p.content, 12);
    for (const line of p.content.split(/\r?\n/)) {
      const kv = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
      if (kv) {
        const value = kv[2].replace(/^(["'])(.*)\1$/, "$2");
        // Each part of a list value ("app=<token>,billing=<token>") counts on its own.
        for (const part of value.split(/[,;\s]+/).map((x) => x.replace(/^[A-Za-z0-9_.-]{1,32}=/, ""))) {
          if (SECRET_KEY_NAME.test(kv[1]) || looksRandom(part)) add(p.resource, `${kv[1]} in ${p.path}`, part, 12);
        }
      }
      const sasl = /^\s*\S+\s+[^:\s]+:(\S+)\s*$/.exec(line);
      if (p.path.endsWith("sasl_passwd") && sasl) add(p.resource, `password in ${p.path}`, sasl[1]);
      if (/^[A-Za-z0-9+/=]{40,}$/.test(line.trim())) add(p.resource, `key body line in ${p.path}`, line.trim());
    }
  }
  return out;
}

/** 14. User-data holds no secret value of the stack and no PRIVATE KEY. */
export const noSecretsInUserData: StackRule = {
  name: "no-secrets-in-user-data",
  scope: "stack",
  reason:
    "User-data is readable from the metadata service by every process on the host and kept by Hetzner; " +
    "secrets go over SSH into root-only files instead.",
  check(rs) {
    const out: Violation[] = [];
    const secrets = stackSecrets(rs);
    for (const r of ofType(rs, TYPES.server)) {
      const ud = r.props.userData;
      if (!isStr(ud)) continue;
      const texts = [ud, ...decodedBlobs(ud)];
      if (texts.some((t) => /PRIVATE KEY/.test(t)))
        out.push(violation(this.name, r, "userData contains a PRIVATE KEY block"));
      const leaked = [...new Set(secrets.filter((s) => texts.some((t) => t.includes(s.value))).map((s) => s.source))];
      // Name the secret's source, never its value.
      for (const src of leaked) out.push(violation(this.name, r, `userData contains the secret value of ${src}`));
    }
    return out;
  },
};
