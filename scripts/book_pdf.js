// The book as one page (Sphinx's singlehtml output), rearranged for paper by
// scripts/build_pdf.py before Chromium prints it: see that script's docstring.
// prepare(parts) -> {entries: [{dest, title, level}], ...}; number({dest: page}) fills in
// the contents' page numbers; settle() waits for images and fonts.
window.bookPdf = (() => {
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    node.append(...children);
    return node;
  };
  const text = (node) => (node ? node.textContent.replace(/[#¶]\s*$/, "").trim() : "");
  // the heading's own text, without its permalink ("#")
  const headingText = (h) => {
    const copy = h.cloneNode(true);
    copy.querySelectorAll(".headerlink").forEach((a) => a.remove());
    return copy.textContent.trim();
  };
  const isGoingFurther = (details) =>
    /^going further/i.test(details.querySelector(":scope > summary")?.textContent.trim() || "");

  // Demote/promote headings so that each chapter's title is an <h1> (the PDF's outline).
  const retag = (section, shift) => {
    section.querySelectorAll("h1, h2, h3, h4, h5, h6").forEach((h) => {
      const level = Math.min(6, Math.max(1, Number(h.tagName[1]) + shift));
      const copy = el(`h${level}`);
      for (const attr of h.attributes) copy.setAttribute(attr.name, attr.value);
      copy.append(...h.childNodes);
      h.replaceWith(copy);
    });
  };

  function prepare({ parts, site, commit }) {
    document.documentElement.dataset.theme = "light";
    document.documentElement.dataset.mode = "light";
    // The site's print rules are for printing one page from a browser (the cheat sheet's
    // fit it on one side of A4): book_pdf.css is this book's print stylesheet instead.
    for (const sheet of document.styleSheets) {
      if (sheet.ownerNode?.id === "book-pdf-css") continue;
      const rules = sheet.cssRules;
      for (let i = rules.length - 1; i >= 0; i--) {
        if (rules[i] instanceof CSSMediaRule && /\bprint\b/.test(rules[i].media.mediaText)) sheet.deleteRule(i);
      }
    }
    const article = document.querySelector("article.bd-article");
    const badge = article.querySelector("p.byhand-badge .byhand-badge-meta");
    // Each page of the TOC: the section right after Sphinx's marker <span id="document-...">.
    const root = article.querySelector(":scope > section");
    const subtitle = root.querySelector(":scope > p > em")?.textContent.trim() || "";
    const docs = {};
    for (const marker of article.querySelectorAll('span[id^="document-"]')) {
      const section = marker.nextElementSibling;
      if (section?.tagName === "SECTION") docs[marker.id.slice("document-".length)] = section;
    }
    article.querySelectorAll(".toctree-wrapper").forEach((w) => w.remove());
    article.querySelectorAll("a.bh-book-pdf").forEach((a) => a.closest("p").remove());
    docs[parts[0].docs[0]] = root;
    const missing = parts.flatMap((p) => p.docs).filter((d) => !docs[d]);
    if (missing.length) throw new Error(`pages missing from the one-page book: ${missing}`);

    const book = el("main", { class: "pdf-book" });
    const entries = [];
    const goingFurther = el("section", { class: "pdf-chapter pdf-appendix", id: "pdf-going-further" });
    const solutions = el("section", { class: "pdf-chapter pdf-appendix", id: "pdf-solutions" });
    let moved = 0;
    const pointer = (what, target, id) =>
      el("p", { class: "pdf-moved" }, `${what}: `, el("a", { href: `#${id}` }, target),
        ", page ", el("span", { class: "pdf-page", "data-dest": id }, "0"));

    parts.forEach((part, p) => {
      part.docs.forEach((doc, d) => {
        const section = docs[doc];
        const title = section.querySelector("h1, h2");
        retag(section, 1 - Number(title.tagName[1]));
        const h1 = section.querySelector("h1");
        const id = section.id;
        const chapter = el("section", { class: "pdf-chapter", id: `pdf-${id}` });
        if (d === 0 && part.caption) chapter.append(el("p", { class: "pdf-part" }, part.caption));
        chapter.append(...section.childNodes);
        const name = headingText(h1);
        entries.push({ dest: chapter.id, title: name, part: d === 0 ? part.caption : "" });
        let goneHere = null;
        let solvedHere = null;

        // "Going further" folds (and the folded code cell right after one) -> appendix A
        for (const fold of chapter.querySelectorAll("details.sd-dropdown")) {
          const summary = fold.querySelector(":scope > summary");
          const heading = summary.textContent.trim();
          if (!isGoingFurther(fold)) {
            // any other fold (the gallery's "Why it fails"): opened where it is
            const open = el("div", { class: "pdf-opened" }, el("p", { class: "pdf-fold-title" }, heading));
            summary.remove();
            open.append(...fold.querySelector(".sd-summary-content, .sd-card-body")?.childNodes || fold.childNodes);
            fold.replaceWith(open);
            continue;
          }
          if (!goneHere) {
            goneHere = el("section", { class: "pdf-appendix-chapter" }, el("h2", {}, name));
            goingFurther.append(goneHere);
          }
          const aid = `pdf-gf-${++moved}`;
          const body = fold.querySelector(".sd-summary-content, .sd-card-body") || fold;
          const item = el("section", { id: aid }, el("h3", {}, heading.replace(/^going further:\s*/i, "")));
          summary.remove();
          item.append(...body.childNodes);
          const next = fold.nextElementSibling;
          if (next?.matches(".cell.tag_hide-cell")) item.append(next);
          goneHere.append(item);
          fold.replaceWith(pointer(heading, "appendix A", aid));
          entries.push({ dest: aid, title: heading, level: 2, hidden: true });
        }
        // exercise solutions -> appendix B, under the exercise's title
        for (const cell of chapter.querySelectorAll(".cell.tag_solution")) {
          if (!solvedHere) {
            solvedHere = el("section", { class: "pdf-appendix-chapter" }, el("h2", {}, name));
            solutions.append(solvedHere);
          }
          const exercise = cell.closest("section")?.querySelector(":scope > h2, :scope > h3");
          const aid = `pdf-sol-${++moved}`;
          const item = el("section", { id: aid }, el("h3", {}, exercise ? headingText(exercise) : "Solution"));
          const placeholder = pointer("Solution", "appendix B", aid);
          cell.replaceWith(placeholder);
          item.append(cell);
          solvedHere.append(item);
          entries.push({ dest: aid, title: "Solution", level: 2, hidden: true });
        }
        book.append(chapter);
      });
    });
    goingFurther.prepend(el("h1", {}, "Appendix A · Going further"),
      el("p", {}, "The tangents each chapter folds away on the site, in the order they appear."));
    solutions.prepend(el("h1", {}, "Appendix B · Solutions to the exercises"));
    for (const [appendix, title] of [[goingFurther, "Appendix A · Going further"], [solutions, "Appendix B · Solutions to the exercises"]]) {
      if (appendix.querySelector(".pdf-appendix-chapter")) {
        book.append(appendix);
        entries.push({ dest: appendix.id, title, part: "" });
      }
    }

    // What stays folded on paper: folded code of a cell whose output is shown (plotting
    // code), the remaining folded cells, and the "How close?" numbers under each check.
    let left = { code: 0, cells: 0, close: 0 };
    book.querySelectorAll(".cell.tag_solution details.hide.above-input").forEach((d) => {
      // a solution's code is the point: shown, open
      d.replaceWith(...d.querySelectorAll(":scope > :not(summary)"));
    });
    book.querySelectorAll(".cell.tag_hide-cell").forEach((c) => {
      if (!c.closest("#pdf-going-further")) { c.remove(); left.cells++; }
    });
    book.querySelectorAll("details.hide.above-input").forEach((d) => {
      if (d.closest(".tag_hide-cell")) {
        d.replaceWith(...d.querySelectorAll(":scope > :not(summary)"));
      } else { d.remove(); left.code++; }
    });
    book.querySelectorAll("details.hide.below-input").forEach((d) => {
      d.replaceWith(...d.querySelectorAll(":scope > :not(summary)"));
    });
    book.querySelectorAll(".grad-check details").forEach((d) => { d.remove(); left.close++; });
    book.querySelectorAll("details").forEach((d) => { d.open = true; });

    // Title page and contents
    const meta = badge ? badge.textContent.replace(/^\s*·\s*/, "").trim() : "";
    const titlePage = el("section", { class: "pdf-title-page" },
      el("h1", { class: "pdf-title" }, document.querySelector("h1")?.textContent.replace(/#\s*$/, "").trim() || "Backprop by Hand"),
      el("p", { class: "pdf-subtitle" }, subtitle),
      el("p", { class: "pdf-built" }, `Built ${meta.replace(/^PyTorch ([^·]+)·\s*/, "on ")} with PyTorch ${(meta.match(/PyTorch ([^·]+)/) || ["", "?"])[1].trim()}. Every check on these pages ran in that build.`),
      el("p", { class: "pdf-note" },
        "On paper: the \u201cGoing further\u201d folds are in appendix A and the exercises\u2019 solutions in appendix B; ",
        `${left.code} folded code cells whose output is shown (plotting code), ${left.cells} folded cells and the `,
        `${left.close} \u201cHow close?\u201d tables under the checks are left out. `,
        "The site and the notebooks have all of them; the interactive figures are in their first state."),
      el("p", { class: "pdf-note" }, `The book online: ${site}` + (commit ? ` (this PDF: commit ${commit})` : "")));
    const toc = el("nav", { class: "pdf-toc" }, el("h1", { id: "pdf-contents" }, "Contents"));
    const list = el("ol");
    for (const entry of entries.filter((e) => !e.hidden)) {
      if (entry.part) list.append(el("li", { class: "pdf-toc-part" }, entry.part));
      list.append(el("li", {}, el("a", { href: `#${entry.dest}` }, entry.title),
        el("span", { class: "pdf-page", "data-dest": entry.dest }, "0")));
    }
    toc.append(list);
    book.prepend(titlePage, toc);
    // Links to the hidden entries make their named destinations in the PDF
    document.body.replaceChildren(...[...document.body.children].filter((c) => c.id === "MJX-SVG-global-cache"), book);
    document.title = titlePage.querySelector("h1").textContent;
    book.querySelectorAll("img").forEach((img) => { img.loading = "eager"; });
    return { entries, left, moved };
  }

  function number(pages) {
    document.querySelectorAll(".pdf-page[data-dest]").forEach((span) => {
      span.textContent = String(pages[span.dataset.dest] ?? "?");
    });
  }

  async function settle() {
    await Promise.all([...document.images].map((i) => i.decode().catch(() => null)));
    await document.fonts.ready;
  }

  // What would be clipped or scaled down on paper: any box of the book whose content is
  // wider than the box (a code line that does not wrap), or that reaches past the text's
  // right edge. The page is laid out at the paper's text width when this runs.
  const SLACK = 4; // px
  function overflowing() {
    const book = document.querySelector("main.pdf-book") || document.body;
    const right = book.getBoundingClientRect().right;
    const found = [];
    for (const e of [book, ...book.querySelectorAll("*")]) {
      if (e.closest("svg, mjx-assistive-mml") && e.tagName !== "svg") continue;
      const style = getComputedStyle(e);
      // inline boxes (a formula, a code word) are measured by the line they sit in: a
      // glyph's overhang past its own box is not text past the margin
      if (style.display === "none" || style.display.startsWith("inline")) continue;
      // a few pixels are a glyph's overhang past its formula's box (italic letters), not a
      // clipped character (5 px and more in code)
      const over = Math.max(e.scrollWidth - e.clientWidth, e.getBoundingClientRect().right - right);
      if (e.clientWidth > 0 && over > SLACK) {
        found.push(`${e.tagName.toLowerCase()}.${[...e.classList].join(".")} (${Math.round(over)} px): ${e.textContent.trim().slice(0, 80)}`);
      }
    }
    return found;
  }

  return { prepare, number, settle, overflowing };
})();
