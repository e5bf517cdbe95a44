"""The docs site (`_docs/`) and README.md, rendered from the notebooks without Quarto; and notebooks executed in place.

    python tools/docsite.py build   [--out _docs] [--workers N]   render every notebook under nbs/ into the static site
    python tools/docsite.py readme  [--workers N]                 write README.md from nbs/index.ipynb
    python tools/docsite.py execute [NB ...] [--timeout S] [--keep-slow]   run notebooks in place, keeping widget state, then clean them

A development tool: it lives outside the anomalyforge package, and nothing in the package imports it.

The site is defined by `_quarto.yml`, and wherever Quarto is installed `nbdev_docs` renders it. Where Quarto is missing
(PyPI's `quarto-cli` downloads a binary at install time, Debian has no package, and nbdev's own commands try to install
it) this module renders the same site:

1. nbdev processes the notebooks exactly as for Quarto (`_proc/`: `show_doc` cells, hidden cells removed, front matter),
2. nbconvert's HTML exporter (lab template) turns each processed notebook into a page, with the sidebar from the same
   `sidebar.yml`,
3. the ipywidgets HTML manager, require.js, MathJax and MiniSearch come from npm, pinned, and are served from the site
   itself, so pages work offline and widgets respond in the browser without a kernel,
4. links between notebooks (`05_patchknn.ipynb#...`) become links to their pages, as Quarto makes them, doc links to
   names without an anchor are dropped (their text stays), and a search index of every page, heading and documented
   name is written for the navbar's search box (MiniSearch, in the browser).

The same processed `index.ipynb` becomes README.md. `execute_notebooks` runs notebooks so that their committed outputs,
and widget state, are what the site shows. Every notebook under nbs/ is found by globbing: no list of notebooks is kept.

The tests are in tests/test_docsite_builder.py.
"""
from __future__ import annotations

import argparse, copy, json, os, re, shutil, subprocess, sys
from contextlib import contextmanager
from html import escape, unescape
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

import nbformat, nbformat.reader, yaml
from execnb.nbio import read_nb
from fastcore.parallel import defaults, parallel
from jinja2 import DictLoader
from nbclient import NotebookClient
from nbconvert import HTMLExporter, MarkdownExporter
from nbdev.clean import nbdev_clean
from nbdev.config import get_config
from nbdev.doclinks import nbglob
from nbdev.processors import FilterDefaults
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbformat.v4 import new_markdown_cell
from tqdm.auto import tqdm

from anomalyforge.core import atomic_write   # the library's own: readers never see half a file

__all__ = ["SiteError", "execute_notebooks", "build_docs", "build_readme", "main"]


class SiteError(Exception):
    "The site, the README or a notebook run cannot be made from what is on disk (the message says what to fix)."


# ----------------------------------------------------------------------------------------------------------------------
# PINNED TO nbdev 2.4.14 AND execnb 0.1.14: the only place that reaches into their internals or copies their behaviour.
# - `nbdev.doclinks._build_modidx` (private) refreshes the package's _modidx.py before processing, as `nbdev_docs` does;
#   there is no public function that does only this (`nbdev_export` also rewrites every module).
# - `_nb2dict` is execnb's `nb2dict` (the dict that `write_nb` saves) with one bug fixed: execnb splits *every* value
#   stored under a key named `source` into lines, and a `jslink`'s widget state has a `source` that is a list (model,
#   attribute), so nbdev's processing crashes on any notebook with a linked slider, with Quarto as without.
# - `_process_nbs` (below this section) does what `nbdev.serve.proc_nbs` and its worker `nbdev.serve_drv.main` do, with
#   public pieces (nbglob, FilterDefaults, execnb's read_nb), so that it can write with `_nb2dict` and keep only the
#   widgets each notebook made. Its cache rules are those of nbdev 2.4.14.
# A different nbdev or execnb may change any of these: `_check_pins` stops the build, naming the version, until this
# section has been checked against it and PINS updated.
PINS = {"nbdev": "2.4.14", "execnb": "0.1.14"}

def _check_pins(installed: dict[str, str] | None = None) -> None:
    "Raise `SiteError` unless the `installed` versions ({package: version}; default: the installed ones) are `PINS`."
    installed = installed or {pkg: version(pkg) for pkg in PINS}
    for pkg, pinned in PINS.items():
        if installed.get(pkg) != pinned:
            raise SiteError(f"{pkg} {installed.get(pkg)} is installed, but tools/docsite.py is written against {pkg} {pinned}: "
                            f"install {pkg}=={pinned} (pip install -e '.[dev]'), or check the PINNED section of "
                            f"tools/docsite.py against {pkg} {installed.get(pkg)} and update PINS")

def _refresh_modidx() -> None:
    "Rewrite the package's `_modidx.py` (nbdev's index of names, used for the docs' links) from its modules."
    import nbdev.doclinks
    _check_pins()
    nbdev.doclinks._build_modidx()

def _nb2dict(d, k=None):
    "execnb's `nb2dict`, except that only string `source`s are split into lines (widget link state has `source` lists)."
    if k == "source" and isinstance(d, str): return d.splitlines(keepends=True)
    if isinstance(d, list): return [_nb2dict(o) for o in d]
    if not isinstance(d, dict): return d
    return {k: _nb2dict(v, k) for k, v in d.items() if k[-1] != "_"}
# END OF THE PINNED SECTION --------------------------------------------------------------------------------------------


# Finding the project ----------------------------------------------------------------------------------------------------
# Every step starts from the repo root, found the way nbdev finds it: the nearest settings.ini at or above the working
# directory. nbdev caches `get_config()`, so the cache is cleared whenever we look.

def _project_root() -> Path:
    "The repo root: the folder of nbdev's settings.ini, searched from the working directory upwards."
    get_config.cache_clear()
    cfg = get_config()
    if not cfg.config_file.exists():
        raise SiteError(f"no settings.ini in {Path.cwd()} or above it: run this inside the anomalyforge repo")
    return cfg.config_path

@contextmanager
def _in_project(root: str | os.PathLike) -> Iterator[Path]:
    "Work inside project `root` (nbdev finds its settings.ini there), then return to the previous folder."
    old = Path.cwd()
    os.chdir(root)
    try: yield _project_root()
    finally: os.chdir(old); get_config.cache_clear()


# Executing notebooks, widgets included ----------------------------------------------------------------------------------
# Pages show the outputs committed in the notebooks: while the site is built, nbdev runs only imports, exported
# definitions and `show_doc` cells (which is why imports belong in cells of their own).

_KEEP_FLAGS = re.compile(r"^#\|\s*(slow|bench)\b", re.M)

def execute_notebooks(paths, timeout: int = 600, keep_slow: bool = False) -> list[Path]:
    "Run each notebook in `paths` in place (cwd = its folder), keeping widget state, then `nbdev_clean` it; `keep_slow`: cells flagged slow/bench keep their stored outputs unrun."
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.suffix != ".ipynb" or not p.is_file(): raise SiteError(f"{p} is not an existing .ipynb notebook")
    for p in tqdm(paths, desc="executing", unit="nb"):
        nb = nbformat.read(p, as_version=4)
        kept = [c for c in nb.cells if keep_slow and c.cell_type == "code" and _KEEP_FLAGS.search(c.source)]
        if not kept: nb.metadata.pop("widgets", None)   # a run that makes no widgets must not keep the last run's (stale bars)
        for c in kept: c.metadata.setdefault("tags", []).append("skip-execution")
        NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True, skip_cells_with_tag="skip-execution",
                       extra_arguments=["--IPKernelApp.log_level=ERROR"],   # no kernel start-up warnings in outputs
                       resources={"metadata": {"path": str(p.parent.resolve())}}).execute()
        for c in kept: c.metadata["tags"].remove("skip-execution")
        with atomic_write(p) as tmp: nbformat.write(nb, tmp)   # written back only if every cell ran
        nbdev_clean(fname=str(p))
    return paths


# nbdev's processing, without Quarto -------------------------------------------------------------------------------------
# `nbdev_proc_nbs` would first try to install Quarto, so its pieces are called here: `refresh_quarto_yml` (writes
# nbdev.yml, keeps our _quarto.yml), the doc-link index, `nbdev_sidebar` (writes sidebar.yml), then each notebook is
# processed into `_proc/` (only those that changed) by nbdev's own processors (`FilterDefaults`).
# When processing runs inside an existing process (`n_workers=0`), nbdev would store in every processed notebook the
# state of *all* widgets alive in the process (a stray progress bar or slider would reach every page); a worker process
# serving several notebooks would do the same with the widgets of the notebooks before. `_proc_one` keeps only the
# widgets made while processing its notebook, as a fresh process per notebook would.

_WIDGETS = "application/vnd.jupyter.widget-state+json"
_PROC_SKIP = ("_proc", "_docs", "_site", "settings.ini")

def _widget_ids() -> set[str]:
    "Model ids of the ipywidgets alive in this process."
    try: from ipywidgets import Widget
    except ImportError: return set()
    return set(Widget.get_manager_state()["state"])

def _proc_one(job: tuple[Path, Path]) -> Path:
    "Process notebook `src` into `dst` as nbdev's docs worker does, keeping only the widgets made meanwhile."
    src, dst = job
    alive = _widget_ids()
    nb = read_nb(src)
    own = set(((nb.metadata.get("widgets") or {}).get(_WIDGETS) or {}).get("state") or {})
    in_test = os.environ.get("IN_TEST")
    os.environ["IN_TEST"] = "1"   # as in nbdev's worker: notebooks skip `nbdev_export()` and other work flagged so
    try: FilterDefaults()(nb)
    finally:
        if in_test is None: os.environ.pop("IN_TEST", None)
        else: os.environ["IN_TEST"] = in_test
    state = ((nb.metadata.get("widgets") or {}).get(_WIDGETS) or {}).get("state")
    for model_id in (alive - own) if state else ():
        state.pop(model_id, None)
    text = json.dumps(_nb2dict(nb), sort_keys=True, indent=1, ensure_ascii=False) + "\n"   # execnb's `write_nb` format
    if not dst.exists() or dst.read_text(encoding="utf-8") != text: dst.write_text(text, encoding="utf-8")
    return dst

def _proc_jobs(path: Path, cache: Path) -> list[tuple[Path, Path]]:
    "Copy the changed non-notebook files under `path` into `cache`; return the (notebook, processed copy) pairs to redo."
    cfg = get_config()
    import nbdev.processors
    changed = max(cfg.config_file.stat().st_mtime, Path(__file__).stat().st_mtime, Path(nbdev.processors.__file__).stat().st_mtime)
    cache.mkdir(parents=True, exist_ok=True)
    cache_mtime = cache.stat().st_mtime
    if cache_mtime < changed: shutil.rmtree(cache)   # settings, nbdev's processors or this builder changed: redo all
    files = nbglob(path, func=Path, file_glob="", file_re="")
    files += [path / name for name in ("_quarto.yml", "_brand.yml") if (path / name).exists()]
    jobs = []
    for src in files:
        rel = src.relative_to(path)
        if not src.is_file() or any(p.startswith(".") or p in _PROC_SKIP for p in rel.parts): continue
        dst = cache / rel
        if dst.exists() and src.stat().st_mtime <= max(dst.stat().st_mtime, cache_mtime): continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".ipynb": jobs.append((src, dst))
        else: shutil.copy2(src, dst)
    return jobs

def _process_nbs(n_workers: int | None = None) -> Path:
    "Run nbdev's docs processing of the current project without Quarto; return the `_proc` folder."
    _check_pins()   # before anything is written
    cfg = get_config()
    refresh_quarto_yml()
    _refresh_modidx()
    nbdev_sidebar(path=cfg.nbs_path)
    cache = cfg.config_path / "_proc"
    jobs = _proc_jobs(cfg.nbs_path, cache)
    workers = defaults.cpus if n_workers is None else n_workers
    # worker processes are spawned (not forked: torch and threads), as nbdev does; they import this module by name
    if jobs: parallel(_proc_one, jobs, n_workers=min(workers, len(jobs)), pause=0.01, method="spawn")
    cache.touch()
    return cache

def _read_nb(path: Path):
    "A processed notebook, read without validation: nbdev's added cells have no ids and carry a `has_sd` mark."
    return nbformat.reader.reads(Path(path).read_text(encoding="utf-8"))


# Quarto's cell options ----------------------------------------------------------------------------------------------------
# nbconvert knows nothing of Quarto, so the processed notebooks still carry what Quarto would interpret: a YAML front
# matter cell (title, description, `output-file`) and `#|` option lines at the top of code cells. nbdev uses
# `echo: false` (show only the output), `output: asis` (the output is markdown to splice into the page: every
# `show_doc`), and test flags such as `#| slow` that Quarto simply does not show.

_re_directive = re.compile(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")

def _directives(source: str) -> tuple[dict[str, str], str]:
    "Split a code cell's leading `#| key: value` lines from its code: ({key: value}, code)."
    lines, opts = source.splitlines(), {}
    while lines and (m := _re_directive.match(lines[0])):
        opts[m[1]] = m[2].strip("'\"").lower()
        lines.pop(0)
    return opts, "\n".join(lines)

# nbdev's `show_doc` writes its *source* link with Pandoc's attribute syntax, `[source](url){target="_blank" ...}`,
# which Quarto understands and plain Markdown shows as text. A link alone on its line becomes an HTML paragraph (a block:
# nbconvert's markdown renderer re-parses each *inline* HTML tag on its own, which would close `<a ...>` before its text
# and leave an empty link beside the word); a link inside text becomes a plain Markdown link, without the attributes.
_re_pandoc_link = re.compile(r'\[([^\]]+)\]\(([^)\s]+)\)\{([^}]*)\}')
_re_pandoc_line = re.compile(r'^[ \t]*' + _re_pandoc_link.pattern + r'[ \t]*$', re.M)

def _pandoc_links(md: str) -> str:
    "Markdown `md` with Pandoc-attributed links `[text](url){k=\"v\" ...}` made links that plain Markdown renders."
    md = _re_pandoc_line.sub(lambda m: f'<p><a href="{m[2]}" {m[3].strip()}>{m[1]}</a></p>', md)
    return _re_pandoc_link.sub(lambda m: f'[{m[1]}]({m[2]})', md)

_ASIS_MIMES = ("text/markdown", "text/html", "text/plain")

def _asis_markdown(outputs) -> str:
    "The markdown that `output: asis` splices into the page, from a cell's outputs."
    parts = []
    for o in outputs:
        if o.output_type == "stream": parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            mime = next((m for m in _ASIS_MIMES if m in o.data), None)
            if mime: parts.append(o.data[mime])
    return _pandoc_links("\n\n".join(parts))

_CELL_KEYS = {"id", "cell_type", "metadata", "source", "outputs", "execution_count", "attachments"}
_DOC_TAG = "af-doc"   # a `show_doc` output's tag: its cell gets the class `celltag_af-doc` on the page

def _apply_directives(cell) -> list:
    "The cells a page shows for `cell` (left unchanged), honouring Quarto's `include`, `echo`, `output` and `output: asis`."
    cell = copy.deepcopy(cell)
    doc = bool(cell.get("has_sd"))
    for k in set(cell) - _CELL_KEYS: del cell[k]   # nbdev marks its show_doc cells with `has_sd`, which nbformat rejects
    if cell.cell_type != "code": return [cell]
    opts, cell.source = _directives(cell.source)
    if opts.get("include") == "false": return []
    if opts.get("output") == "false": cell.outputs = []
    shown = [cell]
    if opts.get("output") == "asis":
        md = new_markdown_cell(_asis_markdown(cell.outputs))
        if doc or cell.source.lstrip().startswith("show_doc("):   # nbdev's and a notebook's own (methods) `show_doc`
            md.metadata["tags"] = [_DOC_TAG]                        # the page marks it: the search index lists its names
        shown.append(md)
        cell.outputs = []
    if opts.get("echo") == "false" or not cell.source.strip():
        if cell.outputs: cell.metadata.setdefault("transient", {})["remove_source"] = True
        else: shown.pop(0)
    return shown

# The front matter cell becomes the page's title block.
_re_front_matter = re.compile(r"^---\s*\n(.*?)\n---\s*$", re.DOTALL)

def _front_matter(nb) -> dict:
    "Remove the YAML front matter cell that nbdev puts first in `nb`; return its keys (title, description, output-file)."
    for i, c in enumerate(nb.cells):
        if c.cell_type == "raw" and (m := _re_front_matter.match(c.source.strip())):
            del nb.cells[i]
            return yaml.safe_load(m[1]) or {}
    return {}

def _page_cells(nb) -> tuple:
    "A copy of the processed notebook `nb` as its page shows it, and its front matter."
    nb = copy.copy(nb); nb.cells, nb.metadata = list(nb.cells), copy.deepcopy(nb.metadata)
    fm = _front_matter(nb)
    nb.cells = [shown for cell in nb.cells for shown in _apply_directives(cell)]
    for i, c in enumerate(nb.cells): c.setdefault("id", f"af-{i}")   # nbdev's added cells have none
    nb.metadata.setdefault("language_info", {"name": "python"})
    # an empty widget state is dropped, so that pages without widgets do not load the widget manager
    if not nb.metadata.get("widgets", {}).get(_WIDGETS, {}).get("state"): nb.metadata.pop("widgets", None)
    return nb, fm


# The site's structure -------------------------------------------------------------------------------------------------------
# Read as Quarto does: _quarto.yml merged with the metadata files it names (nbdev.yml for the title and URL, sidebar.yml
# for the navigation). A notebook's page goes where Quarto puts it: beside the notebook, named by the front matter's
# `output-file` (nbdev drops the number: `00_core.ipynb` becomes `core.html`). Links between pages are relative, so the
# site works from any folder or URL.

def _deep_merge(a: dict, b: dict) -> dict:
    "`a` updated with `b`, merging nested dicts."
    out = dict(a)
    for k, v in b.items(): out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out

def _site_config(folder: Path) -> dict:
    "`_quarto.yml` in `folder` merged with the metadata files it names (nbdev.yml, sidebar.yml)."
    q = Path(folder) / "_quarto.yml"
    if not q.exists(): raise SiteError(f"{q} is missing: restore the repo's _quarto.yml (nbs/_quarto.yml links to it)")
    cfg = yaml.safe_load(q.read_text()) or {}
    for name in cfg.get("metadata-files", []):
        if (q.parent / name).exists(): cfg = _deep_merge(cfg, yaml.safe_load((q.parent / name).read_text()) or {})
    return cfg

def _page_path(nb_rel: Path, fm: dict) -> Path:
    "The site path of the page of notebook `nb_rel` (relative to nbs/): front matter `output-file`, else NAME.html."
    return Path(nb_rel).parent / fm.get("output-file", Path(nb_rel).with_suffix(".html").name)

def _rel(target: Path, page: Path) -> str:
    "The relative link from site page `page` to site file `target` (both relative to the site root)."
    return Path(os.path.relpath(target, Path(page).parent)).as_posix()

def _nav_html(contents: list, pages: dict, current: Path) -> str:
    "Sidebar `<ul>` from sidebar.yml `contents`; `pages` maps a notebook path to (page path, title)."
    items = []
    for entry in contents:
        if isinstance(entry, dict):
            sub = _nav_html(entry.get("contents", []), pages, current)
            items.append(f'<li class="af-section"><span>{escape(str(entry.get("section", "")))}</span>{sub}</li>')
        elif str(entry) in pages:
            page, title = pages[str(entry)]
            active = 'class="active" ' if Path(page) == Path(current) else ""
            items.append(f'<li><a {active}href="{escape(_rel(page, current))}">{escape(title)}</a></li>')
    return "<ul>" + "".join(items) + "</ul>"


# JavaScript from npm, served by the site --------------------------------------------------------------------------------
# A static page has no kernel: the ipywidgets HTML manager (`embed-amd.js`, loaded with require.js) draws the widgets
# from the state stored in the notebook, MathJax typesets the maths, and MiniSearch runs the navbar's search. nbconvert
# would load the first three from CDNs; pinned versions are installed with npm into the virtual environment (never into
# the repo) and what the pages load is copied into `site_libs/`. MathJax stays at version 2 because the widget manager
# calls MathJax 2's API.

_NPM = {"@jupyter-widgets/html-manager": "1.0.15", "requirejs": "2.3.8", "mathjax": "2.7.9", "minisearch": "7.2.0"}
_SITE_LIBS = ["requirejs/require.js", "@jupyter-widgets/html-manager/dist", "minisearch/dist/umd/index.js",
              *(f"mathjax/{p}" for p in ["MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "extensions",
                                         "jax/input/TeX", "jax/output/CommonHTML", "jax/element", "fonts/HTML-CSS/TeX/woff"])]
_SKIP_LIBS = shutil.ignore_patterns("*.map", "*.txt", "embed.js", "libembed-amd.js", "a11y")

def _npm_dir() -> Path:
    "Where the site's npm packages are installed: inside the active virtual environment."
    return Path(sys.prefix) / "share" / "anomalyforge-site"

def _npm_version(pkg: Path) -> str | None:
    "The version of the npm package installed in folder `pkg`, or None."
    f = Path(pkg) / "package.json"
    return json.loads(f.read_text()).get("version") if f.exists() else None

def _npm_install(prefix: Path) -> Path:
    "The `node_modules` under `prefix` holding the pinned site packages, installed with npm if missing."
    mods = Path(prefix) / "node_modules"
    if all(_npm_version(mods / k) == v for k, v in _NPM.items()): return mods
    npm = shutil.which("npm")
    if npm is None: raise SiteError("npm not found: install Node.js 20 and npm (apt-get install nodejs npm) to build the docs site")
    r = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *(f"{k}@{v}" for k, v in _NPM.items())],
                       capture_output=True, text=True)
    if r.returncode: raise SiteError(f"npm install failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    return mods

def _site_libs(dest: Path) -> Path:
    "Copy require.js, the ipywidgets HTML manager and MathJax from npm into `dest` (the site's `site_libs`)."
    mods = _npm_install(_npm_dir())
    for lib in _SITE_LIBS:
        src, dst = mods / lib, Path(dest) / lib
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir(): shutil.copytree(src, dst, dirs_exist_ok=True, ignore=_SKIP_LIBS)
        else: shutil.copy2(src, dst)
    return Path(dest)


# Pages ------------------------------------------------------------------------------------------------------------------------
# nbconvert's lab template with a small extension: a navbar (the site's title, and the search box that `_quarto.yml`'s
# `navbar: search: true` asks for), the sidebar, the title block from the front matter, the site's css, and no mermaid
# loader (it would come from a CDN; the notebooks draw no mermaid diagrams). Input and output prompts are left out, as on
# a Quarto page, and images in markdown are embedded. Code and text outputs too wide for the page scroll sideways (the lab
# css clips them); below 900 px the sidebar folds away behind the navbar's menu button; widgets use the page's font.
# MiniSearch is loaded before require.js: its UMD wrapper would otherwise register it as an anonymous AMD module, which
# require.js rejects.

_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{% block html_head_js_requirejs %}
<script src="{{ resources.site.root }}site_libs/minisearch/dist/umd/index.js"></script>
<script defer src="{{ resources.site.root }}site_libs/afsite/search.js"></script>
{{ super() }}
{% endblock html_head_js_requirejs %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block extra_css %}
<link rel="icon" href="data:,">
{%- if resources.site.css %}<link rel="stylesheet" href="{{ resources.site.css }}">{% endif %}
<style>
:root { --af-navbar-height: 3.2rem; --af-primary: #2780e3; }
html { scroll-padding-top: calc(var(--af-navbar-height) + 0.5rem); }
body.jp-Notebook { padding: 0; }
nav.af-navbar { position: fixed; top: 0; left: 0; right: 0; height: var(--af-navbar-height); z-index: 1000; display: flex;
  align-items: center; gap: 0.8rem; padding: 0 1rem; box-sizing: border-box; background: var(--af-primary); color: #fff;
  font-family: var(--jp-ui-font-family); font-size: 14px; }
nav.af-navbar a.af-site-title { color: #fff; font-size: 1.2rem; font-weight: bold; text-decoration: none; white-space: nowrap; }
nav.af-navbar button.af-menu { display: none; background: none; border: 1px solid rgba(255,255,255,0.6); border-radius: 4px;
  color: #fff; font-size: 1.1rem; line-height: 1; padding: 0.3rem 0.5rem; cursor: pointer; }
.af-search { margin-left: auto; position: relative; }
.af-search input { width: 18rem; max-width: 45vw; box-sizing: border-box; padding: 0.35rem 0.6rem; border: 0; border-radius: 4px;
  font: inherit; color: #222; background: #fff; }
.af-search-results { position: absolute; right: 0; top: calc(100% + 6px); width: 34rem; max-width: calc(100vw - 2rem);
  max-height: 70vh; overflow-y: auto; background: #fff; color: #222; border: 1px solid #ccd; border-radius: 4px;
  box-shadow: 0 4px 16px rgba(0,0,0,0.18); }
.af-search-results[hidden] { display: none; }
.af-search-results a.af-hit { display: block; padding: 0.45rem 0.7rem; color: inherit; text-decoration: none;
  border-bottom: 1px solid #eee; }
.af-search-results a.af-hit:hover, .af-search-results a.af-hit.af-active { background: #e8f1fc; }
.af-hit-title { font-weight: 600; }  .af-hit-doc .af-hit-title { font-family: var(--jp-code-font-family); }
.af-hit-page { color: #666; font-size: 0.85em; margin-left: 0.4rem; }
.af-hit-text { display: block; color: #555; font-size: 0.85em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.af-search-results .af-none { padding: 0.5rem 0.7rem; color: #666; }
nav.af-sidebar { position: fixed; top: var(--af-navbar-height); bottom: 0; left: 0; width: 15rem; overflow-y: auto;
  padding: 1rem; border-right: 1px solid #ddd; background: #fff; font-family: var(--jp-ui-font-family); font-size: 14px;
  line-height: 1.6; z-index: 900; }
nav.af-sidebar ul { list-style: none; padding-left: 0.8rem; margin: 0; }
nav.af-sidebar > ul { padding-left: 0; }
nav.af-sidebar a { text-decoration: none; }  nav.af-sidebar a.active { font-weight: bold; }
nav.af-sidebar .af-section > span { color: #666; text-transform: capitalize; }
main { margin-left: 17rem; padding: calc(var(--af-navbar-height) + 1rem) 2rem 1rem; max-width: 60rem; min-width: 0; }
header.af-title-block { font-family: var(--jp-content-font-family); }
header.af-title-block .description { font-size: 1.1rem; color: #555; }
.jp-RenderedMarkdown pre { background: var(--jp-layout-color2); padding: 0.5em; }
main pre, .jp-OutputArea-output pre { overflow-x: auto; }
.jupyter-widgets, .jupyter-widgets .widget-label, .jupyter-widgets .widget-readout, .jupyter-widgets .widget-html-content,
.jupyter-widgets .widget-inline-hbox, .jupyter-widgets select, .jupyter-widgets button, .jupyter-widgets input {
  font-family: var(--jp-content-font-family); }
@media (max-width: 900px) {
  nav.af-navbar button.af-menu { display: inline-block; }
  nav.af-sidebar { display: none; width: min(18rem, 85vw); bottom: auto; max-height: calc(100vh - var(--af-navbar-height));
    box-sizing: border-box; box-shadow: 0 4px 16px rgba(0,0,0,0.18); }
  body.af-nav-open nav.af-sidebar { display: block; }
  main { margin-left: 0; padding: calc(var(--af-navbar-height) + 1rem) 1rem 1rem; }
  .af-search input { width: 12rem; }
}
</style>
{% endblock extra_css %}
{% block body_header %}
<body class="jp-Notebook" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<nav class="af-navbar">
<button class="af-menu" type="button" aria-label="Pages" aria-controls="af-sidebar" aria-expanded="false"
  onclick="this.setAttribute('aria-expanded', document.body.classList.toggle('af-nav-open'))">&#9776;</button>
<a class="af-site-title" href="{{ resources.site.home }}">{{ resources.site.title | escape_html }}</a>
<div class="af-search" role="search">
<input id="af-search" type="search" placeholder="Search" autocomplete="off" spellcheck="false" aria-label="Search the docs"
  aria-controls="af-search-results" data-root="{{ resources.site.root }}">
<div id="af-search-results" class="af-search-results" role="listbox" hidden></div>
</div>
</nav>
<nav class="af-sidebar" id="af-sidebar">{{ resources.site.nav }}</nav>
<main>
<header class="af-title-block"><h1 class="title">{{ resources.site.page_title | escape_html }}</h1>
{%- if resources.site.description %}
<div class="description">{{ resources.site.description | markdown2html }}</div>
{%- endif %}
</header>
{% endblock body_header %}
"""

def _exporter() -> HTMLExporter:
    "nbconvert's HTML exporter with the site template."
    return HTMLExporter(extra_loaders=[DictLoader({"afsite.html.j2": _TEMPLATE})], template_file="afsite.html.j2",
                        exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True)

# nbdev links names in backticks to their docs at the site's public URL, and Quarto gives headings lowercase ids (the
# links' anchors): on the local site, links into the site become relative and heading ids lowercase.
def _local_links(html: str, site_url: str, root: str) -> str:
    "`html` with links to `site_url` made relative to the site root `root`, and lowercase heading ids."
    if site_url: html = html.replace(f'href="{site_url.rstrip("/")}/', f'href="{root}')
    html = re.sub(r'(<h[1-6] id=")([^"]+)"', lambda m: m[1] + m[2].lower() + '"', html)
    return re.sub(r'(<a class="anchor-link" href="#)([^"]+)"', lambda m: m[1] + m[2].lower() + '"', html)

def _html_title(page_title: str, site_title: str) -> str:
    "The browser's title of a page, as Quarto writes it: 'page - site', or the site's title alone where they are the same."
    if not site_title or page_title == site_title: return page_title or site_title
    return f"{page_title} - {site_title}" if page_title else site_title

def _render_page(nb, fm: dict, page: Path, site: dict, exporter: HTMLExporter | None = None, src_dir: Path | None = None) -> str:
    "HTML of site page `page` for notebook `nb` as `_page_cells` returns it (`site` from `_site`; `src_dir`: its images' folder)."
    ex = exporter or _exporter()
    root = _rel(Path("."), page)
    root = "" if root == "." else root + "/"
    ex.require_js_url = f"{root}site_libs/requirejs/require.js"
    ex.widget_renderer_url = f"{root}site_libs/@jupyter-widgets/html-manager/dist/embed-amd.js"
    ex.mathjax_url = f"{root}site_libs/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    title = str(fm.get("title", Path(page).stem))
    nb.metadata["title"] = _html_title(title, site["title"])
    res = {"site": {"title": site["title"], "home": f"{root}index.html", "root": root, "page_title": title,
                    "description": str(fm.get("description", "")), "nav": _nav_html(site["contents"], site["pages"], page),
                    "css": f"{root}{site['css']}" if site.get("css") else None},
           "metadata": {"name": title, "path": str(src_dir or Path.cwd())}}
    html, _ = ex.from_notebook_node(nb, resources=res)
    return _local_links(html, site.get("url", ""), root)

def _site(proc: Path, nbs: list[Path]) -> tuple[dict, dict]:
    "Site settings and the pages {notebook: (page cells, front matter, page path)} for notebooks `nbs` in `proc`."
    cfg = _site_config(proc)
    web, html_fmt = cfg.get("website", {}), cfg.get("format", {}).get("html", {}) or {}
    pages = {}
    for rel in nbs:
        nb, fm = _page_cells(_read_nb(proc / rel))
        pages[Path(rel).as_posix()] = (nb, fm, _page_path(rel, fm))
    css = html_fmt.get("css")
    site = {"title": str(web.get("title", "")), "url": web.get("site-url", ""),
            "contents": (web.get("sidebar") or {}).get("contents", []),
            "pages": {k: (page, str(fm.get("title", Path(k).stem))) for k, (nb, fm, page) in pages.items()},
            "css": css if isinstance(css, str) and (proc / css).is_file() else None}
    return site, pages


# Links between pages ----------------------------------------------------------------------------------------------------------
# Notebooks link to each other by file name (`[the core](00_core.ipynb#section)`), which Quarto rewrites to the page it
# writes for that notebook (nbdev drops the number: `core.html`); nbdev links names in backticks to their `show_doc`
# anchors, also where there is none (a private helper, a method without a `show_doc` of its own). Once every page is
# rendered, each internal link is checked against the pages and the ids they hold: a link to a notebook points at its
# page, an anchor is matched as Jupyter and Quarto spell heading ids (they differ in case and punctuation), a method's
# anchor falls back to its class's, and a link to an anchor that exists nowhere is dropped, leaving its text.
# Links inside scripts (widget state) and links out of the site are left alone.

class _IdParser(HTMLParser):
    "Collects the ids of an HTML page, and the names of its `<a name>` anchors."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if v and (k == "id" or (k == "name" and tag == "a")): self.ids.add(v)

def _page_ids(html: str) -> set[str]:
    "The ids in `html` (and `<a name>`s): what a `#anchor` into that page can point at."
    p = _IdParser(); p.feed(html); p.close()
    return p.ids

def _slug(s: str) -> str:
    "Heading id `s` without what Jupyter's and Quarto's spellings of it disagree on (case, spaces, punctuation)."
    return re.sub(r"[^\w.-]", "", s.lower().replace(" ", "-"))

def _anchor(frag: str, ids: set[str]) -> str | None:
    "The id among `ids` that the link anchor `frag` means: itself, its lowercase, the same slug, a method's class; or None."
    if frag in ids: return frag
    if frag.lower() in ids: return frag.lower()
    want = _slug(frag)
    same = sorted(i for i in ids if _slug(i) == want)
    if same: return same[0]
    if "." in frag.strip("."): return _anchor(frag.rsplit(".", 1)[0], ids)   # `Class.method`, documented with its class
    return None

_re_script = re.compile(r"(<script\b.*?</script>)", re.S | re.I)
_re_link = re.compile(r"<a\b([^>]*)>(.*?)</a>", re.S)
_re_href = re.compile(r'\shref="([^"]*)"')

def _fix_links(html: str, page: Path, nb_pages: dict[str, Path], ids: dict[Path, set[str]]) -> str:
    """`html` of site page `page` with its internal links fixed: links to notebooks (`nb_pages`: {notebook path relative
    to nbs/: page path}) point at their pages, and anchors at ids of the target page (`ids`: {page path: its ids});
    a link whose anchor is in no page is replaced by its text."""
    page = Path(page)

    def fix(m: re.Match) -> str:
        h = _re_href.search(m[1])
        if not h: return m[0]
        u = urlsplit(unescape(h[1]))
        if u.scheme or u.netloc or not (u.path or u.fragment): return m[0]
        target = Path(os.path.normpath(page.parent / unquote(u.path))) if u.path else page
        path = u.path
        if target.suffix == ".ipynb":
            if target.as_posix() not in nb_pages: return m[0]   # no page for it: the site test names the broken link
            target = nb_pages[target.as_posix()]
            path = _rel(target, page)
        frag = unquote(u.fragment)
        if frag and target in ids:
            frag = _anchor(frag, ids[target])
            if frag is None: return m[2]
        href = urlunsplit(("", "", path, u.query, frag or ""))
        if href == unescape(h[1]): return m[0]
        attrs = m[1][:h.start(1)] + escape(href) + m[1][h.end(1):]
        return f"<a{attrs}>{m[2]}</a>"

    parts = _re_script.split(html)
    return "".join(part if i % 2 else _re_link.sub(fix, part) for i, part in enumerate(parts))


# The search index -----------------------------------------------------------------------------------------------------------
# The navbar's search box searches in the browser with MiniSearch (from npm, pinned, served by the site): no server, and
# no request outside the site. What it searches is written at build time into `search-index.js`: one entry per page (its
# title and description), per heading (its text up to the next heading) and per documented name (every `show_doc`:
# function, class, method), each with the page#anchor it links to. Prose and code are indexed; outputs are not. The index
# is a script rather than JSON so that it loads from `file://` as well; pages load it when the search box is first used.

_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_UNSEARCHED = {"script", "style", "template", "svg", "nav", "button", "select", "textarea"}
_UNSEARCHED_CLASSES = {"anchor-link", "jp-OutputArea", "jp-Cell-outputWrapper"}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

class _SectionParser(HTMLParser):
    "Splits a rendered page into its searchable sections: [{anchor, title, kind, text, summary}]."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool, bool]] = []   # (tag, unsearched, in a show_doc, in <main>)
        self.sections: list[dict] = []
        self.heading: list[str] | None = None                 # the text of the heading being read
        self.para: list[str] | None = None                    # the text of a section's first paragraph, while read

    def _state(self) -> tuple[bool, bool, bool]:
        return self.stack[-1][1:] if self.stack else (False, False, False)

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS: return
        a = dict(attrs)
        cls = set((a.get("class") or "").split())
        skip, doc, main = self._state()
        skip = skip or tag in _UNSEARCHED or bool(cls & _UNSEARCHED_CLASSES) or a.get("target") == "_blank"   # `source` links
        doc = doc or f"celltag_{_DOC_TAG}" in cls
        main = main or tag == "main"
        self.stack.append((tag, skip, doc, main))
        if not main or skip: return
        if tag in _HEADINGS and (a.get("id") or "title" in cls):
            kind = "page" if "title" in cls and not self.sections else "doc" if doc and tag != "h1" else "section"
            self.sections.append({"anchor": a.get("id") or "", "title": "", "kind": kind, "text": [], "summary": ""})
            self.heading = []
        elif tag == "p" and self.sections and not self.sections[-1]["summary"] and self.heading is None:
            self.para = []

    def handle_endtag(self, tag):
        if tag in _VOID_TAGS or not any(t == tag for t, *_ in self.stack): return
        while self.stack:
            t, *_ = self.stack.pop()
            if t == tag: break
        if tag in _HEADINGS and self.heading is not None:
            self.sections[-1]["title"] = " ".join("".join(self.heading).split())
            self.heading = None
        elif tag == "p" and self.para is not None:
            self.sections[-1]["summary"] = " ".join("".join(self.para).split())
            self.para = None

    def handle_data(self, data):
        skip, _, main = self._state()
        if not main or skip or not self.sections: return
        if self.heading is not None: self.heading.append(data); return
        if self.para is not None: self.para.append(data)
        self.sections[-1]["text"].append(data)

_SUMMARY_CHARS, _TEXT_CHARS = 160, 5000

def _search_entries(html: str, page: Path, page_title: str) -> list[dict]:
    "The search index's entries for site page `page` (rendered as `html`): {url, title, page, kind, summary, text}."
    p = _SectionParser(); p.feed(html); p.close()
    out = []
    for s in p.sections:
        text = " ".join("".join(s["text"]).split())
        summary = s["summary"] or text
        if len(summary) > _SUMMARY_CHARS: summary = summary[:_SUMMARY_CHARS - 1].rsplit(" ", 1)[0] + "…"
        url = Path(page).as_posix() + (f"#{s['anchor']}" if s["anchor"] else "")
        out.append({"url": url, "title": s["title"] or page_title, "page": page_title, "kind": s["kind"],
                    "summary": summary, "text": text[:_TEXT_CHARS]})
    return out

def _search_index_js(entries: list[dict]) -> str:
    "`search-index.js`: the entries, numbered, as the script that search.js loads."
    docs = [{"id": i, **e} for i, e in enumerate(entries)]
    return "window.afSearchIndex = " + json.dumps(docs, ensure_ascii=False, separators=(",", ":")) + ";\n"

# The search box's script, written to site_libs/afsite/search.js. Names are found whole and by their parts
# (`create_detector`, `create`, `detector`; `ClipBackbone.encode_image`, ...); a result whose title is the query comes first.
_SEARCH_JS = r"""/* anomalyforge docs: the navbar's search box. MiniSearch indexes search-index.js (written at build time) on first use. */
(function () {
  "use strict";
  var input = document.getElementById("af-search"), box = document.getElementById("af-search-results");
  if (!input || !box || !window.MiniSearch) return;
  var root = input.getAttribute("data-root") || "", engine = null, pending = [], hits = [], active = -1, timer = null,
      shownFor = null;

  function tokenize(text) {
    var out = [];
    (String(text).match(/[\p{L}\p{N}_.]+/gu) || []).forEach(function (w) {
      w = w.replace(/^\.+|\.+$/g, "");
      if (!w) return;
      out.push(w);
      w.split(/[._]+/).forEach(function (part) { if (part && part !== w) out.push(part); });
    });
    return out;
  }

  function load(then) {
    if (engine) { then(); return; }
    pending.push(then);
    if (pending.length > 1) return;
    var s = document.createElement("script");
    s.src = root + "search-index.js";
    s.onload = function () {
      engine = new MiniSearch({
        fields: ["title", "page", "text"], storeFields: ["url", "title", "page", "kind", "summary"], tokenize: tokenize,
        searchOptions: {tokenize: tokenize, prefix: true, fuzzy: 0.1, combineWith: "AND", boost: {title: 5, page: 1.5},
                        boostDocument: function (id, term, stored) { return stored && stored.kind === "doc" ? 2 : 1; }}});
      engine.addAll(window.afSearchIndex || []);
      var waiting = pending; pending = [];
      waiting.forEach(function (f) { f(); });
    };
    s.onerror = function () { show([], "The search index could not be loaded."); pending = []; };
    document.head.appendChild(s);
  }

  function mark() {
    Array.prototype.forEach.call(box.children, function (a, i) {
      a.classList.toggle("af-active", i === active);
      a.setAttribute("aria-selected", i === active ? "true" : "false");
    });
    if (active >= 0 && box.children[active]) box.children[active].scrollIntoView({block: "nearest"});
  }

  function show(results, message) {
    box.textContent = "";
    hits = results;
    if (!results.length) {
      var none = document.createElement("div");
      none.className = "af-none"; none.textContent = message || "No results";
      box.appendChild(none);
    }
    results.forEach(function (r) {
      var a = document.createElement("a"), t = document.createElement("span"), x = document.createElement("span");
      a.className = "af-hit af-hit-" + r.kind; a.href = root + r.url; a.setAttribute("role", "option");
      t.className = "af-hit-title"; t.textContent = r.title; a.appendChild(t);
      if (r.kind !== "page") {
        var p = document.createElement("span");
        p.className = "af-hit-page"; p.textContent = r.page; a.appendChild(p);
      }
      x.className = "af-hit-text"; x.textContent = r.summary || ""; a.appendChild(x);
      a.addEventListener("click", hide);
      box.appendChild(a);
    });
    active = results.length ? 0 : -1;
    mark();
    box.hidden = false;
  }

  function hide() { box.hidden = true; active = -1; shownFor = null; box.removeAttribute("data-query"); }

  function search() {
    var q = input.value.trim();
    if (!q) { hide(); return; }
    load(function () {
      if (input.value.trim() !== q) return;
      var lq = q.toLowerCase();
      var results = engine.search(q).map(function (r, i) { return {r: r, i: i, exact: String(r.title).toLowerCase() === lq}; });
      results.sort(function (a, b) { return (b.exact - a.exact) || (a.i - b.i); });
      show(results.slice(0, 12).map(function (o) { return o.r; }));
      shownFor = q;
      box.setAttribute("data-query", q);   // what the results shown are for
    });
  }

  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(search, 60); });
  input.addEventListener("focus", function () { load(function () {}); if (input.value.trim()) search(); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (box.hidden || !hits.length) return;
      e.preventDefault();
      active = (active + (e.key === "ArrowDown" ? 1 : hits.length - 1)) % hits.length;
      mark();
    } else if (e.key === "Enter") {
      e.preventDefault();
      clearTimeout(timer);
      var q = input.value.trim();
      if (!q) return;
      load(function () {
        if (box.hidden || shownFor !== q) search();
        var a = box.children[active >= 0 ? active : 0];
        if (a && a.tagName === "A") a.click();
      });
    } else if (e.key === "Escape") { hide(); input.blur(); }
  });
  box.addEventListener("mousedown", function (e) { e.preventDefault(); });   // keep the focus while a result is clicked
  document.addEventListener("click", function (e) { if (!e.target.closest || !e.target.closest(".af-search")) hide(); });
}());
"""


# The whole site -----------------------------------------------------------------------------------------------------------

def build_docs(out: str | os.PathLike = "_docs", n_workers: int | None = None) -> Path:
    """Render every notebook under nbs/ (subfolders included) into the static site `out` (relative to the repo root).
    `_proc/` may hold leftovers of deleted notebooks, which are not rendered. An older build is replaced, but a folder
    that is not a site (no `site_libs/`) is never emptied, in case `out` is mistyped."""
    root = _project_root()
    cfg = get_config()
    out = Path(out) if Path(out).is_absolute() else root / out
    if out.exists() and any(out.iterdir()) and not (out / "site_libs").is_dir():
        raise SiteError(f"{out} is not empty and holds no site_libs/: not a docs site, so it is not replaced; choose another out")
    nbs = sorted(Path(p).relative_to(cfg.nbs_path) for p in nbglob(cfg.nbs_path, file_glob="*.ipynb"))
    if not nbs: raise SiteError(f"no notebooks in {cfg.nbs_path}")
    proc = _process_nbs(n_workers)
    site, pages = _site(proc, nbs)
    shutil.rmtree(out, ignore_errors=True)
    _site_libs(out / "site_libs")
    if site["css"]: shutil.copy2(proc / site["css"], out / site["css"])
    ex = _exporter()
    html = {page: _render_page(nb, fm, page, site, ex, src_dir=proc / page.parent)
            for nb, fm, page in tqdm(pages.values(), desc="pages", unit="page")}
    ids = {page: _page_ids(h) for page, h in html.items()}
    nb_pages = {k: page for k, (page, _) in site["pages"].items()}
    entries = []
    for (nb, fm, page) in pages.values():
        h = _fix_links(html[page], page, nb_pages, ids)
        entries += _search_entries(h, page, str(fm.get("title", page.stem)))
        (out / page).parent.mkdir(parents=True, exist_ok=True)
        (out / page).write_text(h, encoding="utf-8")
    (out / "search-index.js").write_text(_search_index_js(entries), encoding="utf-8")
    (out / "site_libs" / "afsite").mkdir(parents=True, exist_ok=True)
    (out / "site_libs" / "afsite" / "search.js").write_text(_SEARCH_JS, encoding="utf-8")
    return out


# README.md ------------------------------------------------------------------------------------------------------------------
# The processed index.ipynb as markdown: the title and summary from the front matter, the same cell options honoured,
# widgets left out (a README has no JavaScript), and figures written beside it in README_files/.

def _readme_md(nb, fm: dict) -> tuple[str, dict]:
    "Markdown for README.md from a notebook as `_page_cells` returns it, and the figure files {path: bytes} it refers to."
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = [o for o in c.outputs if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    head = f"# {fm['title']}\n\n" if fm.get("title") else ""
    if fm.get("description"): head += f"> {fm['description']}\n\n"
    md, res = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(
        nb, resources={"output_files_dir": "README_files", "unique_key": "README"})
    return head + md.strip() + "\n", res.get("outputs", {})

def build_readme(n_workers: int | None = None) -> Path:
    "Write README.md at the repo root from nbs/index.ipynb, processed as for the site; return its path."
    root = _project_root()
    cfg = get_config()
    index = cfg.nbs_path / cfg.get("readme_nb", "index.ipynb")
    if not index.is_file(): raise SiteError(f"{index} is missing: README.md is made from it")
    proc = _process_nbs(n_workers)
    md, files = _readme_md(*_page_cells(_read_nb(proc / index.relative_to(cfg.nbs_path))))
    shutil.rmtree(root / "README_files", ignore_errors=True)
    for name, data in files.items():
        with atomic_write(root / name) as tmp: tmp.write_bytes(data)
    with atomic_write(root / "README.md") as tmp: tmp.write_text(md, encoding="utf-8")
    return root / "README.md"


# Command line ---------------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    "Command line: `python tools/docsite.py build|readme|execute [nb ...]`."
    p = argparse.ArgumentParser(prog="python tools/docsite.py", description="The docs site and README.md, without Quarto.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render the notebooks into the static site")
    b.add_argument("--out", default="_docs", help="site folder, relative to the repo root (default: _docs)")
    r = sub.add_parser("readme", help="write README.md from nbs/index.ipynb")
    for q in (b, r): q.add_argument("--workers", type=int, default=None, help="processes for nbdev's processing (default: one per core; 0: none)")
    e = sub.add_parser("execute", help="run notebooks in place, keeping widget state, then nbdev_clean them")
    e.add_argument("nbs", nargs="*", help="notebooks (default: every notebook under nbs/)")
    e.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    e.add_argument("--keep-slow", action="store_true", help="leave cells flagged #| slow or #| bench unrun, with their stored outputs")
    a = p.parse_args(argv)
    if a.cmd == "build": print(build_docs(a.out, n_workers=a.workers))
    elif a.cmd == "readme": print(build_readme(n_workers=a.workers))
    else:
        _project_root()
        execute_notebooks(a.nbs or sorted(nbglob(get_config().nbs_path, file_glob="*.ipynb")), timeout=a.timeout, keep_slow=a.keep_slow)


# Run as a script (or with -m), this file is `__main__`. The command runs `main` from the same file imported under its
# own name (`docsite`, or `tools.docsite`), because spawned worker processes find `_proc_one` by module name, and in a
# worker `__main__` stops being this file once nbdev has processed a notebook (IPython's shell takes `__main__` over).
if __name__ == "__main__":
    import importlib
    importlib.import_module(__spec__.name if __spec__ else Path(__file__).stem).main()
