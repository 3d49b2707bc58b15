// Pre-render TeX to MathJax SVG at build time (called by scripts/postbuild.py).
//
// stdin:  JSON {"equations": [{"tex": "...", "display": true|false, "page": N}, ...]},
//         the equations of one page next to each other
// stdout: JSON {"css": "<the SVG output's stylesheet>", "html": ["<mjx-container ...>", ...],
//               "caches": {"N": "<svg id=MJX-SVG-global-cache ...>"}}
// Each equation becomes an <mjx-container> holding an SVG (hidden from screen readers)
// plus the same formula as MathML (mjx-assistive-mml) for screen readers; glyphs are
// SVG paths, so the browser runs no math JavaScript and fetches no font. Each glyph's
// path is written once per page, in that page's cache, and the formulas <use> it.
// Exits non-zero, naming the equation, if any formula fails to parse.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { SVG } = require("mathjax-full/js/output/svg.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
const { AssistiveMmlHandler } = require("mathjax-full/js/a11y/assistive-mml.js");
const { AllPackages } = require("mathjax-full/js/input/tex/AllPackages.js");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { equations } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const adaptor = liteAdaptor();
AssistiveMmlHandler(RegisterHTMLHandler(adaptor));
// "noundefined"/"noerrors" would turn mistakes into red text on the page: leave them out
// so that a bad formula raises here and fails the build.
const packages = AllPackages.filter((name) => !["noundefined", "noerrors", "autoload", "require"].includes(name));
const tex = new TeX({ packages, formatError: (_jax, err) => { throw err; } });
const svg = new SVG({ fontCache: "global" });
const doc = mathjax.document("", { InputJax: tex, OutputJax: svg });

const html = [];
const caches = {};
let page = null;
const finishPage = () => {
  if (page !== null) caches[page] = adaptor.outerHTML(svg.pageElements(doc));
};
let failed = 0;
equations.forEach(({ tex: source, display, page: next }, i) => {
  if (next !== page) {
    finishPage();
    svg.clearFontCache();
    page = next;
  }
  try {
    const node = doc.convert(source, { display, em: 16, ex: 8, containerWidth: 80 * 16 });
    html.push(adaptor.outerHTML(node));
  } catch (err) {
    failed += 1;
    html.push(null);
    process.stderr.write(`render_math: equation ${i} failed: ${err.message}\n  TeX: ${source}\n`);
  }
});
finishPage();
if (failed) process.exit(1);
const css = adaptor.textContent(svg.styleSheet(doc));
process.stdout.write(JSON.stringify({ css, html, caches }));
