// TeX to MathJax SVG, for book/_ext/mathsvg.py: a small server that lives as long as the
// Sphinx process (or worker) that started it, so MathJax loads once per build.
//
// One JSON request per line on stdin, one JSON answer per line on stdout:
//   {"equations": [{"tex": "...", "display": true}, ...], "cache": "page" | "self"}
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
const page = newDocument("global");
const self = newDocument("local");

const convert = ({ svg, doc }, equations, errors) => equations.map(({ tex, display }, index) => {
  try {
    // a TeX macro defined by one formula (\def, \newcommand) must not leak into the next
    doc.inputJax[0].parseOptions.tags.reset?.();
    return adaptor.outerHTML(doc.convert(tex, { display, em: 16, ex: 8, containerWidth: 80 * 16 }));
  } catch (err) {
    errors.push({ index, message: String(err.message || err) });
    return null;
  }
});

const answer = (request) => {
  if (request.css) return { css: adaptor.textContent(page.svg.styleSheet(page.doc)) };
  const errors = [];
  if (request.cache === "self") {
    return { html: convert(self, request.equations, errors), errors, defs: "" };
  }
  page.svg.clearFontCache();
  const html = convert(page, request.equations, errors);
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
