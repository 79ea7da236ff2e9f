/**
 * OpenDKIM's opendkim.conf, SigningTable and KeyTable. Written independently of the renderers in cloud-init/ on
 * purpose: a checker that shares the code it checks would share its bugs.
 */
import { normName } from "./dns";
import type { MilterEndpoint } from "./postfix";

/** opendkim.conf: `Key value` lines, `#` comments. Keys are case-insensitive. */
export function parseOpendkimConf(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/#.*$/, "").trim();
    const kv = /^(\S+)\s+(.+)$/.exec(line);
    if (kv) m.set(kv[1].toLowerCase(), kv[2].trim());
  }
  return m;
}

/** OpenDKIM's `Socket` (inet:8891@localhost, inet6:8891@[::1], local:/path, unix:/path). */
export function opendkimSocketEndpoint(socket: string): MilterEndpoint | undefined {
  const inet = /^inet6?:(\d+)(?:@(.+))?$/.exec(socket.trim());
  if (inet) return { kind: "inet", port: Number(inet[1]), host: (inet[2] ?? "").replace(/^\[|\]$/g, "") };
  const local = /^(?:local|unix):(.+)$/.exec(socket.trim());
  if (local) return { kind: "unix", path: local[1] };
  if (socket.startsWith("/")) return { kind: "unix", path: socket.trim() };
  return undefined;
}

/** SigningTable lines: `<pattern> <keyname>`. */
export function parseSigningTable(text: string): { pattern: string; keyName: string }[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/#.*$/, "").trim())
    .filter(Boolean)
    .flatMap((l) => {
      const [pattern, keyName] = l.split(/\s+/);
      return pattern && keyName ? [{ pattern, keyName }] : [];
    });
}

/** KeyTable lines: `<keyname> <domain>:<selector>:<keypath>`. */
export function parseKeyTable(text: string): Map<string, { domain: string; selector: string; keyPath: string }> {
  const m = new Map<string, { domain: string; selector: string; keyPath: string }>();
  for (const raw of text.split(/\r?\n/)) {
    const l = raw.replace(/#.*$/, "").trim();
    const kv = /^(\S+)\s+([^:\s]+):([^:\s]+):(\S+)$/.exec(l);
    if (kv) m.set(kv[1], { domain: normName(kv[2]), selector: kv[3], keyPath: kv[4] });
  }
  return m;
}
