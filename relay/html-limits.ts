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

export interface HtmlLimits {
  readonly maxElements: number;
  readonly maxDepth: number;
}

/** Elements that never have content, so they open no nesting level. */
export const VOID_ELEMENTS: ReadonlySet<string> = new Set([
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
export function assertHtmlWithinLimits(html: string, limits: HtmlLimits = HTML_LIMITS): void {
  scanHtml(html, limits);
}

const isLetter = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isNameChar = (c: number): boolean => isLetter(c) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
const LONGEST_VOID = Math.max(...[...VOID_ELEMENTS].map((name) => name.length));

/**
 * The scan behind assertHtmlWithinLimits, returning what it counted. It finds exactly the tags the regular expression
 * /<(\/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(\/?)>/g finds (test/relay/html-limits.property.test.ts checks it against that
 * expression over generated HTML), by hand: the expression's match arrays and captures were 5% of everything a POST
 * /send allocated (issue 23, V8's sampling heap profiler); this allocates only the names short enough to be void.
 */
export function scanHtml(html: string, limits: HtmlLimits = HTML_LIMITS): { elements: number; maxDepth: number } {
  let elements = 0;
  let depth = 0;
  let maxDepth = 0;
  const n = html.length;
  for (let i = html.indexOf("<"); i !== -1;) {
    let j = i + 1;
    const closing = html.charCodeAt(j) === 0x2f;
    if (closing) j++;
    if (!isLetter(html.charCodeAt(j))) {
      i = html.indexOf("<", i + 1);
      continue;
    }
    const nameStart = j;
    while (++j < n && isNameChar(html.charCodeAt(j)));
    const nameEnd = j;
    // The tag ends at the first '>' after its name; with none left, no later tag can end either.
    const gt = html.indexOf(">", nameEnd);
    if (gt === -1) break;
    i = html.indexOf("<", gt + 1);
    if (closing) {
      depth = Math.max(0, depth - 1);
      continue;
    }
    elements++;
    if (elements > limits.maxElements) {
      throw new RelayError("message_too_complex", `html has more than ${limits.maxElements} elements`, "html");
    }
    const selfClosing = gt - 1 >= nameEnd && html.charCodeAt(gt - 1) === 0x2f;
    if (selfClosing) continue;
    if (nameEnd - nameStart <= LONGEST_VOID && VOID_ELEMENTS.has(html.slice(nameStart, nameEnd).toLowerCase()))
      continue;
    depth++;
    if (depth > maxDepth) maxDepth = depth;
    if (maxDepth > limits.maxDepth) {
      throw new RelayError("message_too_complex", `html nests elements more than ${limits.maxDepth} deep`, "html");
    }
  }
  return { elements, maxDepth };
}
