/**
 * Postfix's main.cf and master.cf syntax, `$name` expansion, lists, and milter addresses. Written independently of
 * the renderers in cloud-init/ on purpose: a checker that shares the code it checks would share its bugs.
 */
import { posix as posixPath } from "node:path";

/**
 * Postfix's logical lines: a line starting with whitespace continues the previous one; blank lines and
 * lines whose first non-whitespace character is `#` are ignored (also between continuation lines).
 */
export function postfixLogicalLines(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*(#|$)/.test(raw)) continue;
    if (/^\s/.test(raw) && out.length > 0) out[out.length - 1] += ` ${raw.trim()}`;
    else out.push(raw.trim());
  }
  return out;
}

/** main.cf: `key = value`; a later definition of a key replaces an earlier one, as in Postfix. */
export function parseMainCf(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const line of postfixLogicalLines(text)) {
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    params.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return params;
}

/** Expand `$name`, `${name}`, `$(name)`, `${name?text}` and `${name:text}` the way Postfix does (bounded depth). */
export function expandPostfix(value: string, params: ReadonlyMap<string, string>, depth = 0): string {
  if (depth > 10) return value;
  return value.replace(
    /\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^}]*))?\}|\(([A-Za-z0-9_]+)(?:([?:])([^)]*))?\)|([A-Za-z0-9_]+))/g,
    (_m, n1, op1, t1, n2, op2, t2, n3) => {
      const name = (n1 ?? n2 ?? n3) as string;
      const op = (op1 ?? op2) as string | undefined;
      const text = (t1 ?? t2 ?? "") as string;
      const v = expandPostfix(params.get(name) ?? "", params, depth + 1);
      if (op === "?") return v !== "" ? expandPostfix(text, params, depth + 1) : "";
      if (op === ":") return v === "" ? expandPostfix(text, params, depth + 1) : "";
      return v;
    },
  );
}

/** A Postfix list: items separated by commas and/or whitespace; `{ ... }` groups stay one item (without braces). */
export function postfixList(value: string): string[] {
  const items: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of value) {
    if (ch === "{") {
      depth++;
      if (depth === 1) continue;
    } else if (ch === "}") {
      depth--;
      if (depth === 0) {
        items.push(cur.trim());
        cur = "";
        continue;
      }
    }
    if (depth === 0 && (ch === "," || /\s/.test(ch))) {
      if (cur.trim()) items.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  if (cur.trim()) items.push(cur.trim());
  return items;
}

export interface MasterCfService {
  readonly service: string;
  readonly type: string;
  readonly command: string;
  readonly args: string[];
  /** `-o name=value` overrides, in order. */
  readonly overrides: Map<string, string>;
  readonly line: string;
}

/** Split a master.cf command line into words; `{ ... }` groups are one word (Postfix 3.0+ syntax). */
function masterWords(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let depth = 0;
  for (const ch of line) {
    if (ch === "{") depth++;
    if (ch === "}") depth--;
    if (depth === 0 && /\s/.test(ch)) {
      if (cur) words.push(cur);
      cur = "";
    } else cur += ch;
  }
  if (cur) words.push(cur);
  return words;
}

/** master.cf: service type private unpriv chroot wakeup maxproc command [args], with `-o` overrides parsed. */
export function parseMasterCf(text: string): MasterCfService[] {
  const services: MasterCfService[] = [];
  for (const line of postfixLogicalLines(text)) {
    const w = masterWords(line);
    if (w.length < 8) continue;
    const args = w.slice(8);
    const overrides = new Map<string, string>();
    for (let i = 0; i < args.length; i++) {
      let a = args[i];
      if (a === "-o" && i + 1 < args.length) a = args[++i];
      else if (a.startsWith("-o")) a = a.slice(2);
      else continue;
      const inner = a.startsWith("{") && a.endsWith("}") ? a.slice(1, -1) : a;
      const eq = inner.indexOf("=");
      if (eq > 0) overrides.set(inner.slice(0, eq).trim(), inner.slice(eq + 1).trim());
    }
    services.push({ service: w[0], type: w[1], command: w[7], args, overrides, line });
  }
  return services;
}

/** Postfix service name "host:port" or "port"; host may be bracketed IPv6. */
export function masterServiceEndpoint(service: string): { host?: string; port: string } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?([^:]+)$/.exec(service);
  if (!m) return { port: service };
  return m[1] === undefined ? { port: m[2] } : { host: m[1].replace(/^\[|\]$/g, ""), port: m[2] };
}

/** The program a master.cf command runs, without its directory. */
export const commandName = (c: string) => posixPath.basename(c);

/** Where a milter listens: what Postfix connects to and what OpenDKIM binds, compared by sameMilter. */
export type MilterEndpoint = { kind: "inet"; port: number; host: string } | { kind: "unix"; path: string };

/** A Postfix milter address (inet:host:port, unix:path relative to queue_directory, local:path). */
export function postfixMilterEndpoint(milter: string, queueDirectory: string): MilterEndpoint | undefined {
  const inet = /^inet6?:(.*):(\d+)$/.exec(milter.trim());
  if (inet) return { kind: "inet", port: Number(inet[2]), host: inet[1].replace(/^\[|\]$/g, "") };
  const unix = /^(?:unix|local):(.+)$/.exec(milter.trim());
  if (unix) return { kind: "unix", path: unix[1].startsWith("/") ? unix[1] : posixPath.join(queueDirectory, unix[1]) };
  return undefined;
}

export function sameMilter(a: MilterEndpoint, b: MilterEndpoint): boolean {
  if (a.kind === "inet" && b.kind === "inet") return a.port === b.port;
  if (a.kind === "unix" && b.kind === "unix") return posixPath.normalize(a.path) === posixPath.normalize(b.path);
  return false;
}

/** A milter list item: the address, plus any per-milter `default_action=` from a `{ ... }` group. */
export function parseMilterItem(item: string): { address: string; defaultAction?: string } {
  const parts = item.split(/[\s,]+/).filter(Boolean);
  const address = parts.find((p) => !p.includes("=")) ?? "";
  const da = parts.map((p) => /^default_action\s*=\s*(\S+)$/.exec(p)).find(Boolean);
  return da ? { address, defaultAction: da[1] } : { address };
}
