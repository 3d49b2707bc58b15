"""Chapter 2's interactive figures in a real browser (book/figures.py writes them,
book/_static/byhand-figures.js only displays their numbers).

Uses tests/test_browser.py's fixtures: the book built once for the session, served on
loopback, Debian's Chromium through Playwright. Expected values are computed here from
the numbers in each figure's JSON island (the tensors the chapter checked at build time),
never taken from the script.
"""

from __future__ import annotations

import itertools
import re

import pytest

from figures import _fmt as fmt
from test_browser import (  # noqa: F401  (fixtures)
    AXE,
    PAGES,
    PHONE,
    browser,
    paint_with_fonts_held,
    shared_context,
    site,
    visit,
)

pytestmark = [pytest.mark.build, pytest.mark.browser]

PAGE = "book/02-batched-backprop.html"
PATHS, SUM = "figure.bh-paths", "figure.bh-sum"
TOUCH = dict(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)

DATA = "sel => JSON.parse(document.querySelector(sel + ' script.bh-data').textContent)"
STATE = """sel => {
  const fig = document.querySelector(sel);
  const keys = (cls) => [...fig.querySelectorAll('.' + cls)].map((c) => c.dataset.k);
  return {
    sel: keys('bh-sel'), path: keys('bh-path'), res: keys('bh-res'),
    ariaSelected: [...fig.querySelectorAll('[aria-selected="true"]')].map((c) => c.dataset.k),
    why: fig.querySelector('.bh-why').textContent,
    terms: [...fig.querySelectorAll('.bh-term')].map((t) => t.textContent.trim()).filter(Boolean),
    readout: fig.querySelector('.bh-readout').textContent,
    focused: document.activeElement.dataset.k || document.activeElement.tagName,
    cells: Object.fromEntries([...fig.querySelectorAll('td[data-k]')].map((c) => [c.dataset.k, [c.textContent, +c.dataset.v]])),
  };
}"""


def paren(v: str) -> str:
    return f"({v})" if v.startswith("−") else v


def plus(values) -> str:
    return " + ".join(paren(fmt(v)) for v in values)


def matmul_t(X, G):
    """X.t() @ G in plain Python, from the JSON's numbers."""
    return [
        [sum(X[n][i] * G[n][j] for n in range(len(X))) for j in range(len(G[0]))]
        for i in range(len(X[0]))
    ]


@pytest.fixture
def chapter(site, visit):
    v = visit(site.url(PAGE))
    assert not v.console, v.console
    return v


def test_hovering_a_weight_lights_its_column_of_X_and_of_G(chapter):
    page = chapter.page
    d = page.evaluate(DATA, PATHS)
    X, G, dW = d["X"], d["G"], d["dW"]
    N = len(X)
    # the figure's dL/dW is X.t() @ G of its own X and G
    for (i, j), want in zip(
        itertools.product(range(d["n_in"]), range(d["n_out"])), itertools.chain(*matmul_t(X, G))
    ):
        assert abs(dW[i][j] - want) < 1e-12
    for i, j in itertools.product(range(d["n_in"]), range(d["n_out"])):
        page.locator(f'{PATHS} td[data-k="W:{i}:{j}"]').hover()
        s = page.evaluate(STATE, PATHS)
        assert s["sel"] == s["ariaSelected"] == [f"W:{i}:{j}"]
        assert sorted(s["path"]) == sorted(
            [f"X:{n}:{i}" for n in range(N)] + [f"G:{n}:{j}" for n in range(N)]
        )
        assert s["res"] == [f"dW:{i}:{j}"]
        text, value = s["cells"][f"dW:{i}:{j}"]
        assert abs(value - dW[i][j]) < 1e-12 and text == fmt(dW[i][j])
        products = [X[n][i] * G[n][j] for n in range(N)]
        assert (
            s["readout"]
            == f"∂L/∂W[{i},{j}] = Σ_n X[n,{i}]·G[n,{j}] = {plus(products)} = {fmt(dW[i][j])}"
        )
        assert s["terms"] == [
            f"X[{n},{i}]·G[{n},{j}] = {fmt(X[n][i])} × {paren(fmt(G[n][j]))} = {fmt(products[n])}"
            for n in range(N)
        ]
        assert "sums over n" in s["why"]


def test_keyboard_reaches_the_figure_and_arrow_keys_move_the_selection(chapter):
    page = chapter.page
    d = page.evaluate(DATA, PATHS)
    X, W, G, dX = d["X"], d["W"], d["G"], d["dX"]
    # Tab from just before the figure lands in X, and focus selects
    page.evaluate(f"""() => {{ const b = document.createElement('button'); b.id = 'before-figure';
        b.textContent = 'before'; document.querySelector('{PATHS}').before(b); b.focus(); }}""")
    page.keyboard.press("Tab")
    s = page.evaluate(STATE, PATHS)
    assert s["focused"] == "X:0:0" and s["sel"] == ["X:0:0"]
    for key, want in [
        ("ArrowRight", "X:0:1"),
        ("ArrowDown", "X:1:1"),
        ("End", "X:1:2"),
        ("ArrowRight", "X:1:2"),
        ("Home", "X:1:0"),
        ("ArrowUp", "X:0:0"),
        ("ArrowUp", "X:0:0"),
        ("ArrowDown", "X:1:0"),
        ("ArrowRight", "X:1:1"),
        ("ArrowRight", "X:1:2"),
    ]:
        page.keyboard.press(key)
        s = page.evaluate(STATE, PATHS)
        assert s["focused"] == want and s["sel"] == [want], (
            f"after {key}: {s['focused']}, {s['sel']}"
        )
    n, i = 1, 2
    products = [G[n][j] * W[i][j] for j in range(d["n_out"])]
    assert abs(sum(products) - dX[n][i]) < 1e-12
    assert sorted(s["path"]) == sorted(
        [f"G:{n}:{j}" for j in range(2)] + [f"W:{i}:{j}" for j in range(2)]
    )
    assert s["res"] == [f"dX:{n}:{i}"] and "sums over j" in s["why"]
    assert (
        s["readout"]
        == f"∂L/∂X[{n},{i}] = Σ_j G[{n},j]·W[{i},j] = {plus(products)} = {fmt(dX[n][i])}"
    )
    live = page.locator(f"{PATHS} .bh-readout")
    assert live.get_attribute("aria-live") == "polite"
    # Tab goes on to W (one stop per matrix), then to b; Enter and Space select
    page.keyboard.press("Tab")
    s = page.evaluate(STATE, PATHS)
    assert s["focused"] == d["start"] and s["sel"] == [d["start"]]
    _, i, j = d["start"].split(":")
    assert sorted(s["path"]) == sorted(
        [f"X:{n}:{i}" for n in range(len(X))] + [f"G:{n}:{j}" for n in range(len(X))]
    )
    assert s["res"] == [f"dW:{i}:{j}"]
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Tab")
    s = page.evaluate(STATE, PATHS)
    assert s["focused"] == "b:0:0" and s["sel"] == ["b:0:0"]
    page.locator(f'{PATHS} td[data-k="X:3:0"]').hover()
    page.keyboard.press("Enter")
    assert page.evaluate(STATE, PATHS)["sel"] == ["b:0:0"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")
    scroll = page.evaluate("window.scrollY")
    s = page.evaluate(STATE, PATHS)
    assert s["sel"] == ["b:0:1"] and s["path"] == [f"G:{n}:1" for n in range(len(X))]
    assert page.evaluate("window.scrollY") == scroll, "Space scrolled the page"
    # back into X with Shift+Tab twice: the cell focused last is the one in the Tab order
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(STATE, PATHS)["focused"] == "X:1:2"


def test_a_tap_on_a_phone_selects(site, visit):
    v = visit(site.url(PAGE), **TOUCH)
    page = v.page
    d = page.evaluate(DATA, PATHS)
    G, db = d["G"], d["db"]
    page.locator(f'{PATHS} td[data-k="b:0:1"]').tap()
    s = page.evaluate(STATE, PATHS)
    assert (
        s["sel"] == ["b:0:1"]
        and s["path"] == [f"G:{n}:1" for n in range(len(G))]
        and s["res"] == ["db:0:1"]
    )
    assert (
        s["readout"]
        == f"∂L/∂b[1] = Σ_n G[n,1] = {plus(G[n][1] for n in range(len(G)))} = {fmt(db[1])}"
    )
    page.locator(f'{PATHS} td[data-k="X:3:2"]').tap()
    assert page.evaluate(STATE, PATHS)["sel"] == ["X:3:2"]
    # the slider moves with a tap on its track too
    slider = page.locator(f"{SUM} input[type=range]")
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.touchscreen.tap(box["x"] + 4, box["y"] + box["height"] / 2)
    assert page.locator(f"{SUM} output").text_content() == "n = 0"


SUM_STATE = """sel => {
  const fig = document.querySelector(sel);
  const input = fig.querySelector('input[type=range]');
  const grid = (p) => [...fig.querySelectorAll(`[data-k^="${p}:"]`)].map((c) => [c.dataset.k, c.textContent, +c.dataset.v]);
  return {
    value: +input.value, valuetext: input.getAttribute('aria-valuetext'),
    out: fig.querySelector('output').textContent, readout: fig.querySelector('.bh-readout').textContent,
    running: grid('r'), outer: grid('o'), x: grid('x'), g: grid('g'),
    current: [...fig.querySelectorAll('tr.bh-current')].map((r) => r.dataset.n),
    added: [...fig.querySelectorAll('.bh-m-X tr.bh-added')].map((r) => +r.dataset.n),
    label: input.labels[0].textContent,
  };
}"""


def check_sum_state(s, X, G, n):
    """The slider at n shows x_n, g_n, their outer product, and samples 0 to n added."""
    N, n_in, n_out = len(X), len(X[0]), len(G[0])
    running = matmul_t(X[: n + 1], G[: n + 1])
    for k, text, value in s["running"]:
        i, j = map(int, k.split(":")[1:])
        assert abs(value - running[i][j]) < 1e-12, (k, value, running[i][j])
        assert text == fmt(running[i][j])
    for k, text, value in s["outer"]:
        i, j = map(int, k.split(":")[1:])
        assert abs(value - X[n][i] * G[n][j]) < 1e-12 and text == fmt(X[n][i] * G[n][j])
    assert [t for _, t, _ in s["x"]] == [fmt(v) for v in X[n]] and [t for _, t, _ in s["g"]] == [
        fmt(v) for v in G[n]
    ]
    assert (
        len(s["running"]) == n_in * n_out
        and s["current"] == [str(n), str(n)]
        and s["added"] == list(range(n))
    )
    assert (
        s["value"] == n and s["out"] == f"n = {n}" and s["valuetext"] == f"samples 0 to {n} added"
    )
    assert s["label"] == "samples 0 to n added"
    if n == N - 1:
        assert re.search(
            r"all \d+: this running sum is ∂L/∂W, (exactly )?autograd's W\.grad", s["readout"]
        ), s["readout"]
    else:
        assert "this running sum is" not in s["readout"] and "not yet ∂L/∂W" in s["readout"], s[
            "readout"
        ]


def test_the_slider_at_its_end_shows_X_transpose_G(chapter):
    page = chapter.page
    d = page.evaluate(DATA, SUM)
    X, G, N = d["X"], d["G"], d["N"]
    check_sum_state(page.evaluate(SUM_STATE, SUM), X, G, N - 1)  # as the page loads
    slider = page.locator(f"{SUM} input[type=range]")
    slider.focus()
    page.keyboard.press("Home")
    check_sum_state(page.evaluate(SUM_STATE, SUM), X, G, 0)
    for n in range(1, N):
        page.keyboard.press("ArrowRight")
        check_sum_state(page.evaluate(SUM_STATE, SUM), X, G, n)
    page.keyboard.press("ArrowRight")  # already at the end
    check_sum_state(page.evaluate(SUM_STATE, SUM), X, G, N - 1)


# Every selection of the paths figure, every slider position: the figures keep their size.
SIZES = """() => {
  const figs = ['figure.bh-paths', 'figure.bh-sum'].map((s) => document.querySelector(s));
  const shifts = window.loadShifts.filter((e) => e.sources.some((s) => s.node && figs.some((f) => f.contains(s.node))));
  const size = () => figs.map((f) => { const r = f.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; });
  const seen = [JSON.stringify(size())];
  figs[0].querySelectorAll('table[role=grid] td[data-k]').forEach((c) => {
    c.dispatchEvent(new PointerEvent('pointerover', {bubbles: true}));
    seen.push(JSON.stringify(size()));
  });
  const input = figs[1].querySelector('input[type=range]');
  for (let n = +input.min; n <= +input.max; n++) {
    input.value = n;
    input.dispatchEvent(new Event('input', {bubbles: true}));
    seen.push(JSON.stringify(size()));
  }
  return {sizes: [...new Set(seen)], count: seen.length, shifts: shifts.length};
}"""


@pytest.mark.parametrize("width", [320, 390])
def test_figures_fit_a_small_phone(site, visit, width):
    """Nothing in either figure runs past its box on a 320 px phone (the paths figure's
    terms did, by 24 px), with every hidden alternative of its texts counted too."""
    v = visit(site.url(PAGE), **{**TOUCH, "viewport": {"width": width, "height": 700}})
    over = v.page.evaluate("""(sels) => sels.flatMap((sel) => {
        const fig = document.querySelector(sel);
        return [fig, ...fig.querySelectorAll('*')]
          .filter((e) => getComputedStyle(e).display !== 'inline' && e.scrollWidth > e.clientWidth + 1)
          .map((e) => `${sel} ${e.tagName.toLowerCase()}.${[...e.classList].join('.')}: ${e.scrollWidth} > ${e.clientWidth}`);
      })""", [PATHS, SUM])  # fmt: skip
    assert not over, f"at {width} px, the figures overflow: {over}"


@pytest.mark.parametrize("device", ["laptop", "phone"])
def test_no_layout_shift(site, visit, device):
    v = visit(site.url(PAGE), **(TOUCH if device == "phone" else {"own_context": True}))
    page = v.page
    page.evaluate("""() => new Promise((done) => {  // the layout shifts since the page began to load
        window.loadShifts = [];
        new PerformanceObserver((list) => window.loadShifts.push(...list.getEntries()))
          .observe({type: 'layout-shift', buffered: true});
        setTimeout(done, 300); })""")
    result = page.evaluate(SIZES)
    assert result["count"] > 20
    assert len(result["sizes"]) == 1, (
        f"{device}: the figures change size as they change: {result['sizes']}"
    )
    assert result["shifts"] == 0, (
        f"{device}: layout shifts inside the figures while the page loaded"
    )


def test_the_chapter_does_not_shift_as_it_loads(site, browser):
    """A first visit on a slow phone (no theme chosen yet, CPU slowed down as Lighthouse
    does): nothing on the page moves while it loads, the figures included (CLS 0). The
    icon fonts are held back until the page has painted, as on a slow network (whether
    they came in time used to depend on the machine's load; test_browser.py checks the
    icons alone).

    "Nothing" is what Lighthouse reports as CLS 0 (three decimals), and no single shift
    above 1e-4: on a busy machine Chromium sometimes lays out an inline formula with a
    provisional ex-height and corrects it a moment later, shifts of at most 7.9e-5 (a line
    of text moving 3 px) that no reader sees. The late icon font moved the header by 2.2e-3."""
    context = browser.new_context(**TOUCH)
    try:
        page = context.new_page()
        context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 4})
        page.add_init_script(
            "window.loadShifts = []; new PerformanceObserver((l) => window.loadShifts.push("
            "...l.getEntries().map((e) => [e.value, ...e.sources.map((s) => s.node && "
            "(s.node.className || s.node.nodeName))]))).observe({type: 'layout-shift', buffered: true});"
        )
        fonts = paint_with_fonts_held(page, site.url(PAGE))
        for route in fonts:
            route.continue_()
        page.wait_for_load_state("load")
        page.wait_for_timeout(1000)
        shifts = page.evaluate("window.loadShifts")
        assert all(value < 1e-4 for value, *_ in shifts), shifts
        assert sum(value for value, *_ in shifts) < 5e-4, shifts
    finally:
        context.close()


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_selected_states_pass_axe_in_both_themes(site, visit, mode):
    """axe-core on the figures in a selected state (test_browser checks the default state
    of every page), and in dark mode the figures are on the dark page, not on a light box."""
    v = visit(site.url(PAGE), color_scheme=mode, theme=mode)
    page = v.page
    page.locator(f'{PATHS} td[data-k="X:2:1"]').click()
    slider = page.locator(f"{SUM} input[type=range]")
    slider.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => await axe.run({include: [['figure.bh-paths'], ['figure.bh-sum']]}, {resultTypes: ['violations']})"
    )
    violations = [
        f"{x['id']}: {[n['target'] for n in x['nodes'][:3]]}" for x in result["violations"]
    ]
    assert not violations, f"{mode}: {violations}"
    backgrounds = page.evaluate(
        """() => [...document.querySelectorAll('figure.bh-fig')].map((f) => {
             let e = f; while (e && getComputedStyle(e).backgroundColor === 'rgba(0, 0, 0, 0)') e = e.parentElement;
             return getComputedStyle(e || document.body).backgroundColor; })"""
    )
    page_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert all(bg == page_bg for bg in backgrounds), (
        f"{mode}: figures on {backgrounds}, page {page_bg}"
    )


def test_figures_read_without_javascript(site, visit):
    """With JavaScript off: every value, the first selection and its sum, the end of the
    sum with its statement; the slider, which would do nothing, is not shown."""
    v = visit(site.url(PAGE), java_script_enabled=False)
    page = v.page
    readout = page.locator(f"{PATHS} .bh-readout").text_content()
    assert re.match(r"∂L/∂W\[\d,\d\] = Σ_n X\[n,\d\]·G\[n,\d\] = .+ = −?\d\.\d\d$", readout), (
        readout
    )
    assert page.locator(f"{PATHS} td.bh-sel").count() == 1
    assert "this running sum is ∂L/∂W, " in page.locator(f"{SUM} .bh-readout").text_content()
    assert not page.locator(f"{SUM} input[type=range]").is_visible()
    assert not page.locator(f"{PATHS} .bh-hint").is_visible()


def test_only_the_chapter_with_figures_loads_their_script(site):
    with_figures = [
        p for p in PAGES if "data-byhand-figure=" in (site.html / p).read_text(encoding="utf-8")
    ]
    assert with_figures == [PAGE]
    loads = [
        p
        for p in PAGES
        if "_static/byhand-figures.js" in (site.html / p).read_text(encoding="utf-8")
    ]
    assert loads == [PAGE]
    assert (site.html / "_static" / "byhand-figures.js").stat().st_size < 10_000
