// Chapter 2's interactive figures. book/figures.py writes each figure's markup (every cell
// and value, so it reads without this script) and its numbers and texts as a JSON island,
// after checking them against autograd. This script only shows them: it computes nothing.
// Loaded only on pages that have a figure (book/_ext/pages.py).
(() => {
  "use strict";

  // Paths of one weight: select an element of W, X or b (pointer, tap, focus, keyboard).
  function paths(fig, d) {
    const cells = new Map();
    fig.querySelectorAll("td[data-k]").forEach((c) => cells.set(c.dataset.k, c));
    const why = fig.querySelector(".bh-why");
    const terms = fig.querySelectorAll(".bh-term");
    const readout = fig.querySelector(".bh-readout");
    let current = d.start;
    let lit = [...fig.querySelectorAll(".bh-sel, .bh-path, .bh-res")];

    function select(key) {
      const s = d.sel[key];
      if (!s || key === current) return;
      lit.forEach((c) => c.classList.remove("bh-sel", "bh-path", "bh-res"));
      cells.get(current).setAttribute("aria-selected", "false");
      lit = [];
      const mark = (k, cls) => {
        const c = cells.get(k);
        c.classList.add(cls);
        lit.push(c);
      };
      mark(key, "bh-sel");
      s.path.forEach((k) => mark(k, "bh-path"));
      mark(s.res, "bh-res");
      cells.get(key).setAttribute("aria-selected", "true");
      why.textContent = s.why;
      terms.forEach((t, n) => {
        t.textContent = n < s.terms.length ? s.terms[n] : "\u00a0";
      });
      readout.textContent = s.readout;
      current = key;
    }

    const selectable = (target) => {
      const c = target instanceof Element ? target.closest("td[data-k]") : null;
      return c && d.sel[c.dataset.k] ? c : null;
    };
    // One cell per matrix is in the Tab order: the last one focused.
    const rove = (c) => {
      c.closest("table").querySelectorAll('td[tabindex="0"]').forEach((o) => { o.tabIndex = -1; });
      c.tabIndex = 0;
    };
    fig.addEventListener("pointerover", (e) => {
      const c = selectable(e.target);
      if (c) select(c.dataset.k);
    });
    fig.addEventListener("click", (e) => {
      const c = selectable(e.target);
      if (c) select(c.dataset.k);
    });
    fig.addEventListener("focusin", (e) => {
      const c = selectable(e.target);
      if (!c) return;
      rove(c);
      select(c.dataset.k);
    });
    const moves = {
      ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1],
      Home: [0, -Infinity], End: [0, Infinity],
    };
    fig.addEventListener("keydown", (e) => {
      const c = selectable(e.target);
      if (!c || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        select(c.dataset.k);
        return;
      }
      const move = moves[e.key];
      if (!move) return;
      e.preventDefault();
      const [m, r, col] = c.dataset.k.split(":");
      const rows = c.closest("tbody").rows.length;
      const cols = c.parentElement.querySelectorAll("td[data-k]").length;
      const clamp = (v, n) => Math.max(0, Math.min(n - 1, v));
      const next = cells.get(`${m}:${clamp(+r + move[0], rows)}:${clamp(+col + move[1], cols)}`);
      if (next) next.focus();
    });
  }

  // The sum that makes w.g: a slider over n adds sample n's outer product.
  function sum(fig, d) {
    const input = fig.querySelector('input[type="range"]');
    const out = fig.querySelector("output");
    const readout = fig.querySelector(".bh-readout");
    const rows = fig.querySelectorAll("tr[data-n]");
    const cap = fig.querySelector(".bh-cap");
    const set = (k, text, value) => {
      const c = fig.querySelector(`[data-k="${k}"]`);
      c.textContent = text;
      c.dataset.v = String(value);
    };

    function show(n) {
      const s = d.steps[n];
      rows.forEach((tr) => {
        const m = +tr.dataset.n;
        tr.classList.toggle("bh-added", m < n);
        tr.classList.toggle("bh-current", m === n);
      });
      s.x.forEach((t, i) => set(`x:${i}`, t, d.X[n][i]));
      s.g.forEach((t, j) => set(`g:${j}`, t, d.G[n][j]));
      s.outer.forEach((row, i) => row.forEach((t, j) => set(`o:${i}:${j}`, t, d.outer[n][i][j])));
      s.running.forEach((row, i) => row.forEach((t, j) => set(`r:${i}:${j}`, t, d.running[n][i][j])));
      cap.textContent = s.outer_cap;
      out.value = s.out;
      input.setAttribute("aria-valuetext", s.valuetext);
      readout.textContent = s.readout;
      fig.classList.toggle("bh-at-end", n === d.N - 1);
    }

    input.addEventListener("input", () => show(+input.value));
    // A browser may restore the slider's position when the reader comes back to the page.
    if (+input.value !== d.N - 1) show(+input.value);
  }

  function init() {
    document.querySelectorAll("[data-byhand-figure]").forEach((fig) => {
      const island = fig.querySelector("script.bh-data");
      if (!island) return;
      const d = JSON.parse(island.textContent);
      if (d.kind === "paths") paths(fig, d);
      else if (d.kind === "sum") sum(fig, d);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
