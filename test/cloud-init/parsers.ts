// Small parsers that read rendered files back the way the consuming software does, so tests assert values.

/** Postfix main.cf: `key = value`, `#` comments, continuation lines start with whitespace. Later keys win. */
export function parseMainCf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  let current: { key: string; value: string } | undefined;
  const flush = () => {
    if (current) out.set(current.key, current.value.trim());
    current = undefined;
  };
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line) || line.trim() === "") continue;
    if (/^\s/.test(line)) {
      if (!current) throw new Error(`continuation line without a parameter: ${line}`);
      current.value += " " + line.trim();
      continue;
    }
    flush();
    const m = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new Error(`not a main.cf parameter line: ${line}`);
    current = { key: m[1] as string, value: m[2] as string };
  }
  flush();
  return out;
}

/** Postfix lists: comma and/or whitespace separated. */
export function postfixList(value: string | undefined): string[] {
  return (value ?? "").split(/[\s,]+/).filter((s) => s !== "");
}

export interface MasterRow {
  service: string;
  type: string;
  private: string;
  unpriv: string;
  chroot: string;
  wakeup: string;
  maxproc: string;
  command: string;
  args: string[];
}

/** Postfix master.cf: 8 columns, continuation lines (whitespace first) are more arguments. */
export function parseMasterCf(text: string): MasterRow[] {
  const rows: MasterRow[] = [];
  for (const line of text.split("\n")) {
    if (/^\s*#/.test(line) || line.trim() === "") continue;
    if (/^\s/.test(line)) {
      const last = rows[rows.length - 1];
      if (!last) throw new Error(`continuation without a service: ${line}`);
      last.args.push(...line.trim().split(/\s+/));
      continue;
    }
    const f = line.trim().split(/\s+/);
    if (f.length < 8) throw new Error(`master.cf line has ${f.length} fields: ${line}`);
    const [service, type, priv, unpriv, chroot, wakeup, maxproc, command, ...args] = f as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      ...string[],
    ];
    rows.push({ service, type, private: priv, unpriv, chroot, wakeup, maxproc, command, args });
  }
  return rows;
}

/** systemd unit: [Section] then Key=Value; a key may repeat, so values are lists. */
export function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t === "" || t.startsWith("#") || t.startsWith(";")) continue;
    const sec = /^\[(.+)\]$/.exec(t);
    if (sec) {
      section = new Map();
      out.set(sec[1] as string, section);
      continue;
    }
    if (!section) throw new Error(`line outside a section: ${line}`);
    const eq = t.indexOf("=");
    if (eq < 0) throw new Error(`not Key=Value: ${line}`);
    const key = t.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), t.slice(eq + 1)]);
  }
  return out;
}

/** Reads one unit setting, failing loudly if the section or key is missing. */
export function unitValue(unit: Map<string, Map<string, string[]>>, section: string, key: string): string {
  const values = unit.get(section)?.get(key);
  if (!values || values.length === 0) throw new Error(`[${section}] ${key} is not set`);
  return values[values.length - 1] as string;
}

/** KEY=value lines (systemd EnvironmentFile as we write it: no quoting). */
export function parseEnvFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`not KEY=value: ${line}`);
    out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

/** `Keyword value` lines (sshd_config, opendkim.conf), comments and blank lines skipped. */
function keywordLines(text: string): [string, string][] {
  const rows: [string, string][] = [];
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t === "" || t.startsWith("#")) continue;
    const m = /^(\S+)\s+(.*)$/.exec(t);
    if (!m) throw new Error(`not "Keyword value": ${line}`);
    rows.push([m[1] as string, m[2] as string]);
  }
  return rows;
}

/** sshd_config style: `Keyword value`; the first occurrence wins, as in sshd. */
export function parseSshd(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of keywordLines(text)) if (!out.has(k.toLowerCase())) out.set(k.toLowerCase(), v);
  return out;
}

/** OpenDKIM conf: `Keyword value` per line. */
export function parseOpendkimConf(text: string): Map<string, string> {
  return new Map(keywordLines(text).map(([k, v]) => [k, v.trim()]));
}
