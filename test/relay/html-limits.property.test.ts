import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RelayError } from "../../relay/errors";
import { HTML_LIMITS, scanHtml, VOID_ELEMENTS } from "../../relay/html-limits";

/**
 * The specification: the regular-expression scan the relay used before (what scanHtml must count, and refuse), with
 * the relay's own list of void elements.
 */
function reference(
  html: string,
  limits: { maxElements: number; maxDepth: number },
): { elements: number; maxDepth: number } {
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
    if (elements > limits.maxElements)
      throw new RelayError("message_too_complex", `html has more than ${limits.maxElements} elements`, "html");
    if (m[3] === "/" || VOID_ELEMENTS.has((m[2] as string).toLowerCase())) continue;
    depth++;
    if (depth > maxDepth) maxDepth = depth;
    if (maxDepth > limits.maxDepth)
      throw new RelayError("message_too_complex", `html nests elements more than ${limits.maxDepth} deep`, "html");
  }
  return { elements, maxDepth };
}

const outcome = (f: () => unknown): unknown => {
  try {
    return f();
  } catch (err) {
    return err instanceof RelayError ? { refused: err.message } : { threw: String(err) };
  }
};

// Pieces that steer the scan: tag openings and closings, self-closing marks, void names in any case, names with
// digits and dashes, '<' and '>' where no tag is, quotes holding '>' or '/', and text.
const piece = fc.oneof(
  fc.constantFrom("<", ">", "/", "</", "/>", "<!--", "-->", " ", '"', "'", "=", "<1", "< b>", "</ p>", "<>"),
  fc.constantFrom(
    "<p>",
    "</p>",
    "<div>",
    "</div>",
    "<br>",
    "<BR/>",
    "<Img src=x>",
    "<hr/>",
    "<wbr>",
    "<SOURCE>",
    "<sources>",
  ),
  fc.constantFrom('<td class="a>b">', "<a href=x/>", '<a href="x/">', "<x-y>", "</x-y>", "<h1>", "<table><tr><td>"),
  fc.constantFrom("<p/>", "<div/>", "<x-y/>", "<p />", "<div a=1/>", "<br/ >", "</p/>", "<b>/</b>"),
  fc.constantFrom("p", "br", "hr", "input", "Meta", "div", "a", "x1", "-"),
  fc.string({ maxLength: 6 }),
);
const htmlOf = fc.array(piece, { maxLength: 60 }).map((a) => a.join(""));

describe("the relay's HTML scan counts and refuses exactly what the regular expression it replaced did", () => {
  it("the same counts, and the same refusals, over generated HTML with small and with the real limits", () => {
    fc.assert(
      fc.property(
        htmlOf,
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 6 }),
        (html, maxElements, maxDepth) => {
          for (const limits of [{ maxElements, maxDepth }, HTML_LIMITS]) {
            expect(outcome(() => scanHtml(html, limits))).toEqual(outcome(() => reference(html, limits)));
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("on a real receipt's HTML and on deep nesting", () => {
    const receipt = `<html><body><table>${"<tr><td><b>Item</b><br/></td><td>1</td></tr>".repeat(100)}</table><hr></body></html>`;
    expect(scanHtml(receipt)).toEqual(reference(receipt, HTML_LIMITS));
    const deep = "<div>".repeat(70);
    expect(outcome(() => scanHtml(deep))).toEqual(outcome(() => reference(deep, HTML_LIMITS)));
    expect(outcome(() => scanHtml(deep))).toEqual({ refused: "html nests elements more than 64 deep" });
  });
});
