"""The docs site in a real browser: build it without Quarto, serve it on 127.0.0.1, and use the Quickstart's
slider in headless Chromium (no internet needed: every script comes from the site itself)."""
import functools, http.server, os, shutil, socketserver, tempfile, threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,1000"]

pytestmark = pytest.mark.skipif(CHROMIUM is None or not CHROMEDRIVER.exists(),
                                reason="needs chromium and chromium-driver: apt-get install -y chromium chromium-driver")

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
