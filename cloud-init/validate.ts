// Input checks shared by the renderers. Renderers write values into config files and shell scripts, so a
// value that could break out of its line (newline, quote, space) is refused here with the field's name.

const HOSTNAME_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS name such as mail.example.com (lower case, at least two labels). */
export function assertDomainName(field: string, value: string): void {
  const labels = value.split(".");
  if (value.length > 253 || labels.length < 2 || !labels.every((l) => HOSTNAME_LABEL.test(l))) {
    throw new Error(`${field} must be a lower-case DNS name such as mail.example.com, got ${JSON.stringify(value)}`);
  }
}

/** A single DNS label such as "mail" or a DKIM selector such as "mail202611". */
export function assertLabel(field: string, value: string): void {
  if (!HOSTNAME_LABEL.test(value)) {
    throw new Error(`${field} must be one lower-case DNS label (a-z, 0-9, "-"), got ${JSON.stringify(value)}`);
  }
}

export function assertPort(field: string, value: number): void {
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${field} must be a TCP port 1-65535, got ${value}`);
  }
}

export function assertIntInRange(field: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${field} must be a whole number between ${min} and ${max}, got ${value}`);
  }
}

/** Refuses newlines and other control characters: one value must stay on one line of a config file. */
export function assertSingleLine(field: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) {
    throw new Error(`${field} must not contain newlines or control characters`);
  }
}

/** Absolute path made of safe characters only, so it can sit unquoted-safe inside '...' in bash. */
export function assertSafePath(field: string, value: string): void {
  if (!/^\/[A-Za-z0-9._/@+-]*$/.test(value) || value.includes("/../") || value.endsWith("/..")) {
    throw new Error(`${field} must be an absolute path of [A-Za-z0-9._/@+-], got ${JSON.stringify(value)}`);
  }
}

/**
 * Single-quotes a string for bash; any text is safe (a ' becomes '\''). infra/deploy.ts quotes whole scripts with it;
 * the renderers quote only values that already passed a strict check above (belt and braces).
 */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
