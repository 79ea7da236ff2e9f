// The HTML limits, apart from mime.ts so that validate.ts (which checks them) and mime.ts (which composes) do not
// import each other.
import { RelayError } from "./errors";

/**
 * How much HTML structure one message may have. A real transactional email has a few hundred elements, nested a few
 * dozen deep (tables in tables); measured on this VM, html-to-text needs ~760 ms for 125,000 <hr> (and the composer
 * several seconds more to quoted-printable the 10 MB of dashes it makes), and 100,000 nested <div> overflow its
 * recursion (a 500). Both are refused by a linear scan before any parser runs.
 */
export const HTML_LIMITS = { maxElements: 5000, maxDepth: 64 } as const;

/** Elements that never have content, so they open no nesting level. */
const VOID_ELEMENTS = new Set([
  "area",
  "base",
  "br",
  "col",
  "embed",
  "hr",
  "img",
  "input",
  "link",
  "meta",
  "param",
  "source",
  "track",
  "wbr",
]);

/** One pass over the HTML: element count and the deepest nesting; refuses what is over HTML_LIMITS with a 422. */
export function assertHtmlWithinLimits(html: string, limits = HTML_LIMITS): void {
  let elements = 0;
  let depth = 0;
  let maxDepth = 0;
  const tag = /<(\/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(\/?)>/g;
  for (let m = tag.exec(html); m !== null; m = tag.exec(html)) {
    if (m[1] === "/") {
      depth = Math.max(0, depth - 1);
      continue;
    }
    elements++;
    if (elements > limits.maxElements) {
      throw new RelayError("message_too_complex", `html has more than ${limits.maxElements} elements`, "html");
    }
    if (m[3] === "/" || VOID_ELEMENTS.has(m[2].toLowerCase())) continue;
    depth++;
    if (depth > maxDepth) maxDepth = depth;
    if (maxDepth > limits.maxDepth) {
      throw new RelayError("message_too_complex", `html nests elements more than ${limits.maxDepth} deep`, "html");
    }
  }
}
