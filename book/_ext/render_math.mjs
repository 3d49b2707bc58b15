// TeX to MathJax SVG, for book/_ext/mathsvg.py: a small server that lives as long as the
// Sphinx process (or worker) that started it, so MathJax loads once per build.
//
// One JSON request per line on stdin, one JSON answer per line on stdout:
//   {"equations": [{"tex": "...", "display": true}, ...], "cache": "page" | "self",
//    "flatten": true (default; false: MathJax's own nesting, for the tests)}
//   -> {"html": ["<mjx-container ...>" | null, ...],
//       "errors": [{"index": 3, "message": "Undefined control sequence \\foo"}],
//       "defs": "<svg id=MJX-SVG-global-cache ...>"}
//   {"css": true} -> {"css": "<the SVG output's stylesheet>"}
// Each formula becomes an <mjx-container> holding an SVG (hidden from screen readers) and
// the same formula as MathML (mjx-assistive-mml) for screen readers. Glyphs are SVG paths:
// the browser runs no math JavaScript and fetches no font.
// cache "page": the request is one page's formulas; each glyph is written once, in "defs"
//   (to be put once in that page), and the formulas <use> it.
// cache "self": each formula carries its own glyphs (formulas outside a page's body).
// A formula MathJax cannot parse is reported in "errors", never drawn as red text.
// The server exits when stdin closes (its Sphinx process ended).
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { SVG } = require("mathjax-full/js/output/svg.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
const { AssistiveMmlHandler } = require("mathjax-full/js/a11y/assistive-mml.js");
const { AllPackages } = require("mathjax-full/js/input/tex/AllPackages.js");

const adaptor = liteAdaptor();
AssistiveMmlHandler(RegisterHTMLHandler(adaptor));
// "noundefined"/"noerrors" would turn mistakes into red text on the page: leave them out
// so that a bad formula is an error the build reports.
const packages = AllPackages.filter((name) => !["noundefined", "noerrors", "autoload", "require"].includes(name));
const newDocument = (fontCache) => {
  const tex = new TeX({ packages, formatError: (_jax, err) => { throw err; } });
  const svg = new SVG({ fontCache });
  return { svg, doc: mathjax.document("", { InputJax: tex, OutputJax: svg }) };
};
// MathJax wraps every MathML node's drawing in a <g data-mml-node="...">: nine <g> per
// formula in chapter 5, a fifth of the page's elements, each styled and laid out by the
// browser; no script reads them (the page runs no MathJax). A wrapper with no attribute
// but data-mml-node is replaced by its children: the same drawing with fewer elements
// (tests/test_render.py compares the pixels). Chapter 5: 1,891 <g> become 1,284, the
// page's elements 8,895 become 8,368 (-6 %), its HTML 456 KB becomes 430 KB. Wrappers with a transform stay: moving it
// onto a glyph changed Chromium's antialiasing of a \big delimiter by a pixel or two.
// MathJax's stylesheet keys a few rules on data-mml-node (errors, tables, actions):
// those subtrees are left exactly as they are.
const KEEP = new Set(["merror", "mtable", "maction"]);
const elements = (node) => adaptor.childNodes(node).filter((child) => adaptor.kind(child) !== "#text");
const flatten = (node) => {
  const mml = adaptor.kind(node) === "g" ? adaptor.getAttribute(node, "data-mml-node") : null;
  if (KEEP.has(mml)) return;
  elements(node).forEach(flatten);
  if (mml == null) return; // not MathJax's wrapper (the outer group: stroke, fill, scale)
  adaptor.removeAttribute(node, "data-mml-node");
  if (adaptor.allAttributes(node).length === 0) {
    adaptor.childNodes(node).slice().forEach((kid) => adaptor.insert(kid, node));
    adaptor.remove(node);
  }
};

const page = newDocument("global");
const self = newDocument("local");

const convert = ({ svg, doc }, equations, errors, flat = true) => equations.map(({ tex, display }, index) => {
  try {
    // a TeX macro defined by one formula (\def, \newcommand) must not leak into the next
    doc.inputJax[0].parseOptions.tags.reset?.();
    const node = doc.convert(tex, { display, em: 16, ex: 8, containerWidth: 80 * 16 });
    if (flat) flatten(node);
    return adaptor.outerHTML(node);
  } catch (err) {
    errors.push({ index, message: String(err.message || err) });
    return null;
  }
});

const answer = (request) => {
  if (request.css) return { css: adaptor.textContent(page.svg.styleSheet(page.doc)) };
  const errors = [];
  const flat = request.flatten !== false; // tests/test_render.py compares both
  if (request.cache === "self") {
    return { html: convert(self, request.equations, errors, flat), errors, defs: "" };
  }
  page.svg.clearFontCache();
  const html = convert(page, request.equations, errors, flat);
  return { html, errors, defs: adaptor.outerHTML(page.svg.pageElements(page.doc)) };
};

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let reply;
  try {
    reply = answer(JSON.parse(line));
  } catch (err) {
    reply = { fatal: String(err.stack || err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
