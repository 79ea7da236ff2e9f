/**
 * How a config problem is told: the key as `pulumi config` spells it, what was wrong, and a command that fixes it as
 * printed (`--path` for nested keys and list items, `--secret` for secrets). Derived from the schema, so a key added
 * there gets its hints for free.
 */
import { z } from "zod";
import { CONFIG_KEYS, NS, rawSchema, SECRET_KEYS } from "./schema";

/** `mail-relay:callers[1].events[0]`: the key as `pulumi config set --path` takes it. */
export function keyPath(path: readonly (string | number)[]): string {
  const [key, ...rest] = path;
  return `${NS}:${String(key)}${rest.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("")}`;
}

/** The schema a path leads to (through optional, default, refinements, arrays, unions' object branches). */
export function schemaAt(
  path: readonly (string | number)[],
  schema: z.ZodTypeAny = rawSchema,
): z.ZodTypeAny | undefined {
  const s = unwrap(schema);
  if (path.length === 0) return s;
  const [head, ...rest] = path;
  if (s instanceof z.ZodObject && typeof head === "string") {
    const child = (s.shape as Record<string, z.ZodTypeAny>)[head];
    return child && schemaAt(rest, child);
  }
  if (s instanceof z.ZodArray && typeof head === "number") return schemaAt(rest, s.element);
  if (s instanceof z.ZodUnion) {
    for (const option of s.options as z.ZodTypeAny[]) {
      const found = schemaAt(path, option);
      if (found) return found;
    }
  }
  return undefined;
}

function unwrap(s: z.ZodTypeAny): z.ZodTypeAny {
  if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) return unwrap(s.unwrap());
  if (s instanceof z.ZodDefault) return unwrap(s.removeDefault());
  if (s instanceof z.ZodEffects) return unwrap(s.innerType());
  return s;
}

function isRequired(s: z.ZodTypeAny): boolean {
  return !(s instanceof z.ZodOptional || s instanceof z.ZodDefault) && !s.isOptional();
}

/** The object behind a schema, if it is one (an object, or a union with an object branch). */
function objectOf(s: z.ZodTypeAny | undefined): z.AnyZodObject | undefined {
  const u = s && unwrap(s);
  if (u instanceof z.ZodObject) return u;
  if (u instanceof z.ZodUnion) return (u.options as z.ZodTypeAny[]).map(objectOf).find((o) => o !== undefined);
  return undefined;
}

/**
 * `pulumi config set` command(s) that set the value at `path`, working as printed: a list is set item by item and an
 * object field by field with `--path` (a plain `pulumi config set key value` would store one string).
 */
export function setCommands(path: readonly (string | number)[]): string[] {
  const s = schemaAt(path);
  const key = String(path[0]);
  if (path.length === 1 && (SECRET_KEYS as readonly string[]).includes(key)) return [secretSetCommand(key)];
  const u = s && unwrap(s);
  if (u instanceof z.ZodArray) return setCommands([...path, 0]);
  const obj = objectOf(u);
  if (obj && !(u instanceof z.ZodUnion && path.length > 1 && typeof path[path.length - 1] === "number")) {
    const shape = obj.shape as Record<string, z.ZodTypeAny>;
    const required = Object.keys(shape).filter((k) => isRequired(shape[k]));
    return (required.length > 0 ? required : Object.keys(shape).slice(0, 1)).flatMap((k) => setCommands([...path, k]));
  }
  const last = path[path.length - 1];
  const placeholder = typeof last === "number" ? "<value>" : `<${last}>`;
  return path.length === 1
    ? [`pulumi config set ${keyPath(path)} ${placeholder}`]
    : [`pulumi config set --path '${keyPath(path)}' ${placeholder}`];
}

/** How to set a secret key: from a file for the SSH key, at the prompt for the others (never on the command line). */
export function secretSetCommand(key: string): string {
  return key === "sshPrivateKey"
    ? `pulumi config set --secret ${NS}:${key} < ~/.ssh/mail-relay`
    : `pulumi config set --secret ${NS}:${key}`;
}

function setHint(path: readonly (string | number)[]): string {
  return `set it with \`${setCommands(path).join("` and `")}\``;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of two neighbours cost 1. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}

/**
 * The known names closest to `word` (case ignored first, so `nodecount` finds `nodeCount`), when close enough to be a
 * typo: at most a third of the word's letters wrong, and always one; else the names it begins.
 */
export function closest(word: string, known: readonly string[]): string[] {
  const scored = known.map((k) => ({
    k,
    d: editDistance(word.toLowerCase(), k.toLowerCase()),
    exact: editDistance(word, k),
  }));
  const limit = Math.max(1, Math.floor(word.length / 3));
  const best = Math.min(...scored.map((s) => s.d));
  if (best > limit) {
    // A shortened name (ratelimit for rateLimitPerMin) is a typo too.
    const w = word.toLowerCase();
    return w.length >= 4 ? known.filter((k) => k.toLowerCase().startsWith(w)) : [];
  }
  const tied = scored.filter((s) => s.d === best);
  const bestExact = Math.min(...tied.map((s) => s.exact));
  return tied.filter((s) => s.exact === bestExact).map((s) => s.k);
}

function didYouMean(word: string, known: readonly string[]): string {
  const c = closest(word, known);
  return c.length > 0 ? `did you mean ${c.map((k) => `\`${k}\``).join(" or ")}?` : "";
}

/** Every key of the `mail-relay:` namespace this program reads (secrets included). */
export function knownKeys(): string[] {
  return [...Object.keys(CONFIG_KEYS), ...SECRET_KEYS];
}

/**
 * Problems with the namespace as a whole, before any value is read: keys the program does not know (a typo would
 * otherwise be ignored and the default used), and secret keys stored in plaintext.
 */
export function namespaceProblems(all: Record<string, string>, isSecret: (key: string) => boolean): string[] {
  const problems: string[] = [];
  const known = knownKeys();
  for (const full of Object.keys(all).sort()) {
    if (!full.startsWith(`${NS}:`)) continue;
    const key = full.slice(NS.length + 1);
    if (known.includes(key)) continue;
    const hint = didYouMean(key, known);
    problems.push(
      `${full} is not a key of ${NS}${hint ? `; ${hint}` : ""} Rename it: \`pulumi config rm ${full}\`, then set the ` +
        `right key (the keys are listed in docs/configuration.md)`,
    );
  }
  for (const key of SECRET_KEYS) {
    const full = `${NS}:${key}`;
    if (all[full] === undefined || isSecret(full)) continue;
    problems.push(
      `${full} is stored in plaintext in the stack file; it is a secret: remove it with \`pulumi config rm ${full}\` ` +
        `and set it encrypted with \`${secretSetCommand(key)}\` (if the file was committed, replace the secret too)`,
    );
  }
  return problems;
}

/** The value a zod issue is about, read from the input by its path. */
function valueAt(input: unknown, path: readonly (string | number)[]): unknown {
  let v = input;
  for (const p of path)
    v = v !== null && typeof v === "object" ? (v as Record<string | number, unknown>)[p] : undefined;
  return v;
}

function shown(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function kindOf(s: z.ZodTypeAny | undefined): string {
  const u = s && unwrap(s);
  if (u instanceof z.ZodArray) return "a list";
  if (u instanceof z.ZodObject) return "an object";
  if (u instanceof z.ZodString || u instanceof z.ZodEnum) return "a string";
  if (u instanceof z.ZodNumber) return "a number";
  if (u instanceof z.ZodBoolean) return "true or false";
  if (u instanceof z.ZodUnion) return (u.options as z.ZodTypeAny[]).map(kindOf).join(" or ");
  return "another type";
}

/** One zod issue as the problems it stands for, each naming the key, what is wrong, and the fix. */
export function issueProblems(issue: z.ZodIssue, input: unknown): string[] {
  const kp = keyPath(issue.path);
  const value = valueAt(input, issue.path);
  switch (issue.code) {
    case "invalid_type": {
      if (issue.received === "undefined")
        return [`${kp} is required; ${setHint(issue.path)} (its description: docs/configuration.md)`];
      const custom = !/^Expected /.test(issue.message);
      const what = custom ? issue.message : `must be ${kindOf(schemaAt(issue.path))}`;
      if (issue.received === "string")
        return [
          `${kp} ${what} (got the string ${shown(value)}: \`pulumi config set\` without --path stores a string); ` +
            setHint(issue.path),
        ];
      return [`${kp} ${what} (got ${issue.received} ` + `${shown(value)}); ${setHint(issue.path)}`];
    }
    case "invalid_enum_value": {
      const options = issue.options.map(String);
      const near = closest(String(issue.received), options);
      const hint = near.length > 0 && near.length < options.length ? didYouMean(String(issue.received), options) : "";
      return [
        `${kp} is ${shown(issue.received)}, which is not allowed; use one of ` +
          `${issue.options.map((o) => shown(o)).join(", ")}${hint ? ` (${hint})` : ""}`,
      ];
    }
    case "invalid_union": {
      // The branches whose type matched the value explain what is wrong inside it; the others only say "not a string".
      const matched = issue.unionErrors.filter(
        (e) => !e.issues.some((i) => i.code === "invalid_type" && i.path.length === issue.path.length),
      );
      if (matched.length > 0) return matched[0].issues.flatMap((i) => issueProblems(i, input));
      return [`${kp} must be ${kindOf(schemaAt(issue.path))} (got ${shown(value)})`];
    }
    case "unrecognized_keys": {
      const known = Object.keys(objectOf(schemaAt(issue.path))?.shape ?? {});
      return issue.keys.map((k) => {
        const hint = didYouMean(k, known);
        return `${kp}.${k} is not a key of ${kp}${hint ? `; ${hint}` : ""} (its keys: ${known.join(", ")})`;
      });
    }
    default: {
      const got =
        value !== undefined && typeof value !== "object" && !issue.message.includes(String(value))
          ? ` (got ${shown(value)})`
          : "";
      return [`${kp} ${issue.message}${got}`];
    }
  }
}
