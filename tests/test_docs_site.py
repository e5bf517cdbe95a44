"""The docs site in a real browser: build it without Quarto, serve it on 127.0.0.1, and use it in headless Chromium (no
internet needed: every script comes from the site itself): the Quickstart's slider, the explorers, the navbar's search
box, the titles, code that scrolls, the sidebar in a narrow window; and a crawl of every page for broken links."""
import functools, http.server, os, shutil, socketserver, tempfile, threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1000"]

NO_BROWSER = "needs chromium and chromium-driver: `make browser` (or apt-get install -y chromium chromium-driver)"


@pytest.fixture(scope="session", autouse=True)   # session: before the site is built or the browser started
def _browser():
    "Skip without a browser when run by hand; fail when `make test` runs (it sets ANOMALYFORGE_REQUIRE_BROWSER), so a missing browser is never a silent pass."
    if CHROMIUM is None or not CHROMEDRIVER.exists():
        if os.environ.get("ANOMALYFORGE_REQUIRE_BROWSER", "").strip() not in ("", "0"): pytest.fail(f"the docs-site tests {NO_BROWSER}")
        pytest.skip(NO_BROWSER)

# What the visible part of a widget area shows, leaving sliders out: image pixels, HTML and label text.
SHOWN_JS = """
const root = arguments[0], out = [];
const visible = e => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
for (const e of root.querySelectorAll('img, canvas, .widget-html-content, .widget-label')) {
  if (!visible(e) || e.closest('.widget-slider')) continue;
  if (e.tagName === 'IMG') {
    const c = document.createElement('canvas'); c.width = e.naturalWidth; c.height = e.naturalHeight;
    c.getContext('2d').drawImage(e, 0, 0); out.push('img:' + c.toDataURL());
  } else if (e.tagName === 'CANVAS') out.push('canvas:' + e.toDataURL());
  else out.push('html:' + e.innerHTML);
}
return out;
"""


@pytest.fixture(scope="session")
def site():
    "The docs site, built once from the committed notebooks (no example is executed)."
    from tools.docsite import build_docs   # the dev-only builder (tests/conftest.py puts the repo root on sys.path)
    old = Path.cwd()
    os.chdir(ROOT)
    # nbdev's processing runs in worker processes: in this one, it would re-register the notebooks' classes
    # (detectors) under other tests' feet
    try: return build_docs()
    finally: os.chdir(old)


@pytest.fixture(scope="session")
def base_url(site):
    "The site served over HTTP on a free local port."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown(); srv.server_close()


@pytest.fixture(scope="session")
def browser():
    "Headless Chromium driven by the system chromedriver (no Selenium Manager download)."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"]: opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    yield driver
    driver.quit()


def _open(browser, site, base_url, page, wait_for=None):
    "Load `page`, wait for `wait_for` (a CSS selector) if given, and return its SEVERE console messages so far."
    from selenium.webdriver.support.ui import WebDriverWait
    assert (site / page).is_file(), f"{page} was not built: is its notebook in nbs/?"
    browser.get_log("browser")  # drop messages of earlier pages
    browser.get(base_url + page)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    if wait_for: WebDriverWait(browser, 30).until(lambda d: d.find_elements("css selector", wait_for))
    return [m["message"] for m in browser.get_log("browser") if m["level"] == "SEVERE"]


def _external_requests(browser, base_url):
    "Resources the page loaded from anywhere but the site (CDNs would fail offline)."
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith((base_url, "data:", "blob:"))]


def _check_sidebar(browser):
    links = {a.get_attribute("href").rsplit("/", 1)[-1] for a in browser.find_elements("css selector", "nav.af-sidebar a")}
    assert {"index.html", "core.html", "quickstart.html"} <= links, links
    assert browser.find_element("css selector", "header.af-title-block h1").text.strip()


def _output_area(element):
    "The notebook output area that holds `element` (a widget part)."
    return element.find_element("xpath", "ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")


def _changes_shown(browser, area, before, timeout=5) -> bool:
    "Whether what `area` shows differs from `before` within `timeout` seconds."
    from selenium.webdriver.support.ui import WebDriverWait
    try: WebDriverWait(browser, timeout).until(lambda d: d.execute_script(SHOWN_JS, area) != before)
    except Exception: return False
    return True


def _slider_switches(browser, slider) -> bool:
    "Whether stepping `slider` with the arrow keys changes what its output area shows."
    from selenium.webdriver.common.keys import Keys
    area, handle = _output_area(slider), slider.find_element("css selector", ".noUi-handle")
    before = browser.execute_script(SHOWN_JS, area)
    handle.click()
    for key in (Keys.ARROW_RIGHT, Keys.ARROW_LEFT, Keys.ARROW_LEFT):   # one step, or back if it was at the end
        handle.send_keys(key)
        if _changes_shown(browser, area, before): return True
    return False


def _dropdown_switches(browser, select) -> bool:
    "Whether picking another option of the `select` element changes what its output area shows."
    from selenium.webdriver.support.ui import Select
    area, menu = _output_area(select), Select(select)
    if len(menu.options) < 2: return False
    before = browser.execute_script(SHOWN_JS, area)
    menu.select_by_index(1 if menu.first_selected_option.get_attribute("index") == "0" else 0)
    return _changes_shown(browser, area, before)


def test_quickstart_slider_switches_frames(site, base_url, browser):
    severe = _open(browser, site, base_url, "tutorials/quickstart.html", wait_for=".jupyter-widgets .widget-slider")
    _check_sidebar(browser)
    sliders = browser.find_elements("css selector", ".jupyter-widgets .widget-slider")
    assert sliders, "the Quickstart page shows no slider widget"
    switched = [s for s in sliders if _slider_switches(browser, s)]
    assert switched, "no slider on the Quickstart page changes what is shown: link it to the frames on the client (jslink)"
    os.makedirs(site / "_screenshots", exist_ok=True)
    browser.save_screenshot(str(site / "_screenshots" / "quickstart.png"))
    severe += [m["message"] for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    assert severe == [], severe
    assert _external_requests(browser, base_url) == []


# pages whose explorers (a slider and a dropdown, on the one skeleton of `widgets`) must render and respond without a kernel
EXPLORER_PAGES = {"clip.html", "inctrl.html", "synthesis.html", "widgets.html"}


def _check_explorer(browser, page):
    "The page's map explorer renders a slider and an image dropdown, and both change the frames shown."
    from selenium.webdriver.support.ui import WebDriverWait
    try: WebDriverWait(browser, 30).until(lambda d: d.find_elements("css selector", ".jupyter-widgets .widget-slider"))
    except Exception: pass   # widgets render after the page loads; if none comes, the assert below says so
    sliders = browser.find_elements("css selector", ".jupyter-widgets .widget-slider")
    selects = browser.find_elements("css selector", ".jupyter-widgets .widget-dropdown select")
    assert sliders and selects, f"{page} shows no map explorer (slider: {len(sliders)}, dropdown: {len(selects)})"
    assert any(_slider_switches(browser, s) for s in sliders), f"no slider on {page} changes what is shown"
    assert any(_dropdown_switches(browser, s) for s in selects), f"no dropdown on {page} changes the image shown"


@pytest.mark.parametrize("page", ["index.html", "core.html", "checkpoint.html", "synthesis.html", "contrastive_flow.html", "clip.html", "inctrl.html", "widgets.html"])
def test_pages_render_with_sidebar(site, base_url, browser, page):
    severe = _open(browser, site, base_url, page)
    _check_sidebar(browser)
    assert browser.find_elements("css selector", ".jp-Cell"), f"{page} shows no notebook cells"
    if page in EXPLORER_PAGES:
        _check_explorer(browser, page)
        severe += [m["message"] for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    assert severe == [], severe
    assert _external_requests(browser, base_url) == []
    if page == "core.html":   # show_doc output is rendered, with the lowercase anchors nbdev's doc links use
        assert browser.find_elements("css selector", "h3#anomalyresult")


# Links, search, titles and layout ----------------------------------------------------------------------------------------

class _Page(HTMLParser):
    "The ids of a page and the links it makes: (tag, attribute, URL) of every a/link href and script/img/iframe src."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        if tag == "a" and a.get("name"): self.ids.add(a["name"])
        for attr in ("href", "src"):
            if a.get(attr) is not None and tag in ("a", "link", "script", "img", "iframe", "source"):
                self.links.append((tag, attr, a[attr]))


def _parse(path: Path) -> _Page:
    p = _Page(); p.feed(path.read_text(encoding="utf-8")); p.close()
    return p


def test_every_internal_link_and_anchor_resolves(site):
    "Crawl every page: each link into the site names a file that exists, and each #anchor an id in the page it names."
    site = Path(site).resolve()
    pages = {p.resolve(): _parse(p) for p in site.rglob("*.html") if "_screenshots" not in p.parts}
    assert len(pages) > 20, sorted(pages)
    broken, reached, todo = [], set(), [site / "index.html"]
    for page, parsed in pages.items():
        for tag, attr, url in parsed.links:
            u = urlsplit(url)
            if u.scheme or u.netloc or url.startswith("//"): continue   # out of the site (source links on GitHub, data:)
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            where = f"{page.relative_to(site)}: <{tag} {attr}={url!r}>"
            if not target.is_file(): broken.append(f"{where} names no file"); continue
            if site not in target.parents: broken.append(f"{where} leaves the site"); continue
            if u.fragment and target.suffix == ".html" and unquote(u.fragment) not in pages[target].ids:
                broken.append(f"{where}: no id {unquote(u.fragment)!r} in {target.relative_to(site)}")
    assert broken == [], f"{len(broken)} broken internal links:\n" + "\n".join(broken)
    while todo:   # and every page can be reached from the home page by following links
        page = todo.pop()
        if page in reached: continue
        reached.add(page)
        for tag, _, url in pages[page].links:
            u = urlsplit(url)
            if tag == "a" and not (u.scheme or u.netloc) and u.path.endswith(".html"):
                todo.append((page.parent / unquote(u.path)).resolve())
    assert set(pages) - reached == set(), sorted(str(p.relative_to(site)) for p in set(pages) - reached)


def _search(browser, query):
    "Type `query` into the navbar's search box; return the result links shown (href, text)."
    from selenium.webdriver.support.ui import WebDriverWait
    box = browser.find_element("css selector", "nav.af-navbar input#af-search")
    box.clear(); box.send_keys(query)
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(
        "const b = document.getElementById('af-search-results'); return !b.hidden && b.getAttribute('data-query')") == query)
    return box, [(a.get_attribute("href"), a.text) for a in browser.find_elements("css selector", "#af-search-results a.af-hit")]


@pytest.mark.parametrize("start, query, lands_on", [("index.html", "create_detector", "core.html#create_detector"),
                                                    ("tutorials/quickstart.html", "fit_evaluate", "evaluation.html#fit_evaluate")])
def test_search_box_finds_a_function(site, base_url, browser, start, query, lands_on):
    "Typing a public function's name into the search box lists its entry first; Enter lands on its documentation."
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    severe = _open(browser, site, base_url, start)
    box, hits = _search(browser, query)
    assert hits[0][0] == base_url + lands_on, hits[:3]
    box.send_keys(Keys.ENTER)
    WebDriverWait(browser, 20).until(lambda d: d.current_url == base_url + lands_on)
    anchor = lands_on.split("#")[1]
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    heading = browser.find_element("id", anchor)
    assert query in heading.text
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", heading)
    navbar = browser.execute_script("return document.querySelector('nav.af-navbar').getBoundingClientRect().bottom")
    assert navbar <= top < 400, (navbar, top)   # scrolled to, and not hidden under the fixed navbar
    severe += [m["message"] for m in browser.get_log("browser") if m["level"] == "SEVERE"]
    assert severe == [], severe
    assert _external_requests(browser, base_url) == []


def test_search_finds_page_text_and_methods(site, base_url, browser):
    _open(browser, site, base_url, "core.html")
    _, hits = _search(browser, "ClipBackbone.encode_image")
    assert hits[0][0] == base_url + "backbones.html#clipbackbone.encode_image", hits[:3]
    _, hits = _search(browser, "Quickstart")
    assert any(h.endswith("tutorials/quickstart.html") for h, _ in hits), hits
    _, hits = _search(browser, "zzqqxxnotaword")
    assert hits == [] and browser.find_element("css selector", "#af-search-results .af-none").text == "No results"


@pytest.mark.parametrize("page, title", [("index.html", "anomalyforge"), ("core.html", "Core - anomalyforge"),
                                         ("tutorials/quickstart.html", "Quickstart - anomalyforge")])
def test_page_titles(site, base_url, browser, page, title):
    _open(browser, site, base_url, page)
    assert browser.title == title


# what clips a pre: it, or an ancestor up to the page's <main>, that hides its overflow while narrower than the pre's content
OVERFLOW_JS = """
const out = [];
for (const pre of document.querySelectorAll('main .jp-Cell pre')) {
  if (!pre.getClientRects().length) continue;
  const wide = pre.scrollWidth > pre.clientWidth + 1, ox = getComputedStyle(pre).overflowX;
  let clipped = wide && !['auto', 'scroll'].includes(ox);
  for (let e = pre.parentElement; e && e.tagName !== 'MAIN'; e = e.parentElement)
    if (getComputedStyle(e).overflowX !== 'visible' && e.clientWidth + 1 < pre.getBoundingClientRect().width) clipped = true;
  out.push({wide: wide, clipped: clipped, overflowX: ox, scrollable: wide && ['auto', 'scroll'].includes(ox),
            text: pre.textContent.slice(0, 60)});
}
return out;
"""


@pytest.mark.parametrize("page", ["core.html", "evaluation.html", "cli.html", "tutorials/quickstart.html"])
def test_long_code_lines_scroll(site, base_url, browser, page):
    "No code block is cut off: one wider than the page scrolls sideways (the lab css clips input areas)."
    _open(browser, site, base_url, page)
    pres = browser.execute_script(OVERFLOW_JS)
    assert pres, f"{page} shows no code"
    assert [p for p in pres if p["clipped"]] == []
    if page == "core.html":   # the page has lines longer than its column: they scroll
        wide = [p for p in pres if p["wide"]]
        assert wide and all(p["scrollable"] for p in wide), wide[:3]
        pre = browser.execute_script("return [...document.querySelectorAll('main .jp-Cell pre')].find(p => p.scrollWidth > p.clientWidth + 1)")
        browser.execute_script("arguments[0].scrollLeft = 80", pre)
        assert browser.execute_script("return arguments[0].scrollLeft", pre) > 0


def test_narrow_window_folds_the_sidebar(site, base_url, browser):
    "At 800 px the sidebar leaves the page its whole width, and the navbar's menu button shows and hides it."
    size = browser.get_window_size()
    browser.set_window_size(800, 900)
    try:
        _open(browser, site, base_url, "core.html")
        rect = lambda sel: browser.execute_script("const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                                                  "return [r.left, r.right, r.width, r.height]", sel)
        main_left, main_right, main_width, _ = rect("main")
        assert main_left < 10 and main_width > 700, rect("main")
        sidebar = browser.find_element("css selector", "nav.af-sidebar")
        assert not sidebar.is_displayed()
        menu = browser.find_element("css selector", "nav.af-navbar button.af-menu")
        menu.click()
        assert sidebar.is_displayed() and menu.get_attribute("aria-expanded") == "true"
        assert {"index.html", "core.html"} <= {a.get_attribute("href").rsplit("/", 1)[-1]
                                                for a in sidebar.find_elements("css selector", "a") if a.is_displayed()}
        menu.click()
        assert not sidebar.is_displayed()
        assert browser.find_element("id", "af-search").is_displayed()
    finally:
        browser.set_window_size(size["width"], size["height"])
    _open(browser, site, base_url, "core.html")   # wide again: the sidebar is beside the page
    assert browser.find_element("css selector", "nav.af-sidebar").is_displayed()
    assert not browser.find_element("css selector", "nav.af-navbar button.af-menu").is_displayed()


def test_widget_labels_use_the_page_font(site, base_url, browser):
    _open(browser, site, base_url, "widgets.html", wait_for=".jupyter-widgets .widget-label")
    font = "return getComputedStyle(document.querySelector(arguments[0])).fontFamily"
    page_font = browser.execute_script(font, "main .jp-RenderedMarkdown p")
    assert "sans-serif" in page_font, page_font
    for sel in [".jupyter-widgets .widget-label", ".jupyter-widgets .widget-readout"]:
        if browser.find_elements("css selector", sel): assert browser.execute_script(font, sel) == page_font, sel
