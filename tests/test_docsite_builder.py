"""The docs-site builder (tools/docsite.py), on a throwaway nbdev project with the cases that matter: front matter from a
`# Title` cell and from a YAML raw cell, an exported function (so nbdev adds a `show_doc` cell), a hidden cell, an
`echo: false` cell, an `output: asis` cell, a test flag, maths, a figure, and a tutorial in a subfolder whose slider
flips through the frames of a `Stack` in the browser. Needs npm (the site's scripts) and a python3 Jupyter kernel."""
import base64, contextlib, copy, io, json, os, re, shutil, subprocess, sys
from pathlib import Path
from unittest import mock

import execnb.nbio, nbformat, pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from tools import docsite as ds

ROOT = Path(__file__).resolve().parents[1]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAAABJRU5ErkJggg==")
DEMO_NBS = [Path("01_api.ipynb"), Path("index.ipynb"), Path("tutorials/demo.ipynb")]
# the site definition nbdev writes for a new project (nbdev.quarto's template), as the repo's _quarto.yml has it
QUARTO_YML = """project:
  type: website

format:
  html:
    theme: cosmo
    css: styles.css
    toc: true
    keep-md: true
  commonmark: default

website:
  twitter-card: true
  open-graph: true
  repo-actions: [issue]
  navbar:
    background: primary
    search: true
  sidebar:
    style: floating

metadata-files: [nbdev.yml, sidebar.yml]
"""


def _code(src, *outs): return new_code_cell(src, outputs=list(outs))
def _stream(text): return new_output("stream", name="stdout", text=text)


def _demo_project(root: Path) -> Path:
    "Write a minimal nbdev project (settings, package, three notebooks) into `root`."
    (root / "demolib").mkdir(parents=True); (root / "demolib" / "__init__.py").write_text("")
    settings = dict(repo="demo", lib_name="demolib", lib_path="demolib", nbs_path="nbs", doc_path="_docs", version="0.0.1",
                    recursive="True", title="Demo site", description="A demo", branch="main", user="demo", author="demo",
                    author_email="demo@demo.invalid", copyright="demo", license="apache2", min_python="3.11", status="3",
                    keywords="demo", language="English", git_url="https://github.com/demo/demo", doc_host="https://demo.github.io",
                    doc_baseurl="/demo", custom_sidebar="False", jupyter_hooks="False", clean_ids="True", tst_flags="slow")
    (root / "settings.ini").write_text("[DEFAULT]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    nbs = root / "nbs"; (nbs / "tutorials").mkdir(parents=True)
    (nbs / "_quarto.yml").write_text(QUARTO_YML); (nbs / "styles.css").write_text(".demo-css { color: red; }")
    (nbs / "dot.png").write_bytes(PNG)
    api = new_notebook(cells=[
        new_markdown_cell("# Demo API\n\n> Functions with *docs*."),
        _code("#| default_exp api"),
        _code('#| export\ndef twice(x: int) -> int:\n    "Double `x`."\n    return 2 * x'),
        new_markdown_cell("## Maths, and more\n\nBack [home](https://demo.github.io/demo/index.html); the maths $a^2 + b^2$."),
        # doc links as nbdev writes them: to a private helper (no anchor anywhere) and to a method without its own show_doc
        new_markdown_cell("Uses [`_helper`](https://demo.github.io/demo/api.html#_helper) like "
                          "[`twice.method`](https://demo.github.io/demo/api.html#twice.method)."),
        _code('#| hide\nprint("HIDDEN-CELL")', _stream("HIDDEN-CELL\n")),
        _code('#| echo: false\nmarker = "SOURCE-HIDDEN"\nprint("only-output")', _stream("only-output\n")),
        _code('#| echo: false\n#| output: asis\nprint("**ASIS-BOLD**")', _stream("**ASIS-BOLD**\n")),
        _code("#| slow\ntwice(21)", new_output("execute_result", data={"text/plain": "42"}, execution_count=1)),
        _code("#| hide\nimport nbdev; nbdev.nbdev_export()")])
    index = new_notebook(cells=[
        new_raw_cell("---\ntitle: Demo home\ndescription: The demo in one line\n---"),
        new_markdown_cell("## Install\n\nWelcome to the demo. ![a dot](dot.png)"),
        # links between notebooks, as they work in Jupyter (Quarto makes them links to the pages)
        new_markdown_cell("Read [the API](01_api.ipynb#twice), [its maths](01_api.ipynb#maths-and-more) and "
                          "[the demo](tutorials/demo.ipynb)."),
        _code("#| echo: false\nprint('ready')", _stream("ready\n")),
        _code("plot()", new_output("display_data", data={"image/png": base64.b64encode(PNG).decode(), "text/plain": "<Figure>"}))])
    demo = new_notebook(cells=[
        new_markdown_cell("# Widgets demo\n\n> A slider that flips frames."),
        _code("import ipywidgets as widgets"),   # imports in a cell of their own: nbdev runs such cells while processing
        _code('frames = widgets.Stack([widgets.HTML(f"<b>frame {i}</b>") for i in range(3)], selected_index=0)\n'
              'slider = widgets.IntSlider(0, 0, 2, description="frame")\n'
              'widgets.jslink((slider, "value"), (frames, "selected_index"))\n'
              'widgets.VBox([slider, frames])'),
        new_markdown_cell("Back to [the API](../01_api.ipynb#Maths,-and-more).")])
    for nb, name in [(api, "01_api.ipynb"), (index, "index.ipynb"), (demo, "tutorials/demo.ipynb")]:
        nb.metadata = {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}
        nbformat.write(nb, nbs / name)
    return root


# Fixtures: one demo project per module, worked on in the order the site is built -------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return _demo_project(tmp_path_factory.mktemp("site") / "demo")


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    return tmp_path_factory.mktemp("empty")


@pytest.fixture(scope="module")
def executed(demo):
    "The demo tutorial, run: its slider, the `Stack` and the link between them are stored in the notebook."
    tut = demo / "nbs" / "tutorials" / "demo.ipynb"
    with ds._in_project(demo): ds.execute_notebooks([tut], timeout=120)
    return tut


@pytest.fixture(scope="module")
def processed(demo, executed):
    "nbdev's processing of the demo in this process, with a stray slider alive that must not reach any page."
    import ipywidgets
    stray = ipywidgets.IntSlider(description="stray")
    in_test = os.environ.get("IN_TEST")
    with ds._in_project(demo): proc = ds._process_nbs(n_workers=0)
    assert os.environ.get("IN_TEST") == in_test   # the environment is left as it was
    yield proc, stray
    stray.close()


@pytest.fixture(scope="module")
def proc(processed): return processed[0]


@pytest.fixture(scope="module")
def site(proc): return ds._site(proc, DEMO_NBS)


@pytest.fixture(scope="module")
def built(demo, proc):
    with ds._in_project(demo): return ds.build_docs(n_workers=0)


@pytest.fixture(scope="module")
def readme(demo, proc):
    with ds._in_project(demo): return ds.build_readme(n_workers=0)


# Finding the project ----------------------------------------------------------------------------------------------------------

def test_project_root(monkeypatch, empty):
    monkeypatch.chdir(ROOT / "tests")
    assert ds._project_root() == ROOT                      # found from a subfolder upwards
    with pytest.raises(ds.SiteError, match="no settings.ini"): ds._in_project(empty).__enter__()
    assert Path.cwd().resolve() != empty.resolve()          # a failed entry does not leave us in the wrong folder
    assert ds._project_root() == ROOT


def test_in_project_returns(demo):
    old = Path.cwd()
    with ds._in_project(demo) as root: assert root == demo.resolve()
    assert Path.cwd() == old


# Pinned versions --------------------------------------------------------------------------------------------------------------

def test_pins_match_the_installed_versions():
    ds._check_pins()                                        # nbdev 2.4.14, execnb 0.1.14 are installed
    assert ds.PINS == {"nbdev": "2.4.14", "execnb": "0.1.14"}


@pytest.mark.parametrize("installed, named", [({"nbdev": "2.5.0", "execnb": "0.1.14"}, "nbdev 2.5.0"),
                                              ({"nbdev": "2.4.14", "execnb": "0.2.0"}, "execnb 0.2.0"),
                                              ({"execnb": "0.1.14"}, "nbdev None")])
def test_other_versions_stop_the_build(installed, named):
    with pytest.raises(ds.SiteError) as e: ds._check_pins(installed)
    assert named in str(e.value) and "PINNED section" in str(e.value)
    pkg = named.split()[0]
    assert f"{pkg}=={ds.PINS[pkg]}" in str(e.value)


def test_process_checks_the_pins(demo):
    with ds._in_project(demo), mock.patch.object(ds, "version", lambda pkg: "9.9"):
        with pytest.raises(ds.SiteError, match="nbdev 9.9"): ds._process_nbs(n_workers=0)


# Executing notebooks ------------------------------------------------------------------------------------------------------------

def test_execute_keeps_widget_state_and_cleans(executed):
    nb = json.loads(executed.read_text())
    state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert {"IntSliderModel", "StackModel", "LinkModel"} <= {s["model_name"] for s in state.values()}
    cells = nb["cells"]
    assert [c["execution_count"] for c in cells if c["cell_type"] == "code"] == [None, None]   # cleaned
    assert "application/vnd.jupyter.widget-view+json" in cells[2]["outputs"][0]["data"]


def test_execute_refuses_what_is_not_a_notebook(demo):
    with pytest.raises(ds.SiteError, match="not an existing .ipynb"): ds.execute_notebooks([demo / "nbs" / "missing.ipynb"])
    with pytest.raises(ds.SiteError, match="not an existing .ipynb"): ds.execute_notebooks([demo / "settings.ini"])


# nbdev's processing, without Quarto -------------------------------------------------------------------------------------------

LINK_STATE = {"metadata": {"widgets": {"state": {"m1": {"state": {"source": ["IPY_MODEL_a", "value"]}}}}},
              "cells": [{"source": "x = 1\ny = 2"}]}


def test_execnb_splits_widget_link_sources():
    "The execnb bug `_nb2dict` works around: if this stops failing, execnb fixed it and the copy can go."
    with pytest.raises(AttributeError, match="splitlines"): execnb.nbio.nb2dict(LINK_STATE)


def test_nb2dict_splits_only_string_sources(demo):
    assert ds._nb2dict(LINK_STATE)["metadata"]["widgets"]["state"]["m1"]["state"]["source"] == ["IPY_MODEL_a", "value"]
    assert ds._nb2dict(LINK_STATE)["cells"][0]["source"] == ["x = 1\n", "y = 2"]
    plain = execnb.nbio.read_nb(demo / "nbs" / "01_api.ipynb")
    assert ds._nb2dict(plain) == execnb.nbio.nb2dict(plain)   # notebooks without widget links: as execnb writes them


def test_processing(proc, processed):
    stray = processed[1]
    files = {str(p.relative_to(proc)) for p in proc.rglob("*") if p.is_file()}
    assert {"01_api.ipynb", "index.ipynb", "tutorials/demo.ipynb", "sidebar.yml", "nbdev.yml", "_quarto.yml", "styles.css"} <= files
    api = ds._read_nb(proc / "01_api.ipynb")
    assert api.cells[0].cell_type == "raw"                                 # nbdev turned `# Demo API` into front matter
    assert any("show_doc(twice)" in c.source for c in api.cells)           # and documented the exported function
    assert not any("HIDDEN-CELL" in c.source for c in api.cells)           # hidden cells are gone
    assert "LinkModel" in (proc / "tutorials" / "demo.ipynb").read_text()  # the widget link survived
    assert not any(stray.model_id in p.read_text() for p in proc.rglob("*.ipynb"))   # the stray slider did not


def test_processing_reuses_unchanged_notebooks(demo, proc):
    api = proc / "01_api.ipynb"
    before = api.stat().st_mtime_ns
    with ds._in_project(demo), mock.patch.object(ds, "_proc_one") as one: ds._process_nbs(n_workers=0)
    one.assert_not_called()                                                # nothing changed: nothing processed
    assert api.stat().st_mtime_ns == before


def test_worker_processes_write_the_same(demo, proc, tmp_path):
    "Spawned workers (the default) import the builder by name and write what in-process processing writes."
    copy = tmp_path / "demo"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("_proc", "_docs", "README*"))
    with ds._in_project(copy): wproc = ds._process_nbs(n_workers=2)
    for rel in DEMO_NBS: assert (wproc / rel).read_text() == (proc / rel).read_text(), rel


# Quarto's cell options ------------------------------------------------------------------------------------------------------------

def test_directives():
    assert ds._directives("#| echo: false\n#| output: asis\nshow_doc(f)") == ({"echo": "false", "output": "asis"}, "show_doc(f)")
    assert ds._directives("#| slow\nx = 1") == ({"slow": ""}, "x = 1")
    assert ds._directives('#|code-summary: "Exported source"\ny') == ({"code-summary": "exported source"}, "y")
    assert ds._directives("x = 1\n#| echo: false") == ({}, "x = 1\n#| echo: false")   # only leading lines are options
    assert ds._directives("") == ({}, "")


def test_pandoc_links():
    "A link alone on its line becomes an HTML paragraph (kept whole by the renderer); one inside text a Markdown link."
    md = ds._pandoc_links('---\n\n[source](https://x.org/a.py#L3){target="_blank" style="float:right; font-size:smaller"}\n\n### f')
    assert md == '---\n\n<p><a href="https://x.org/a.py#L3" target="_blank" style="float:right; font-size:smaller">source</a></p>\n\n### f'
    assert ds._pandoc_links('see [a](b.html){.x} here') == "see [a](b.html) here"
    assert ds._pandoc_links("[a](b) and {braces}") == "[a](b) and {braces}"
    # as the page's renderer sees it (embedding images, it re-parses each inline HTML tag alone): the word stays in its link
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    html = MarkdownWithMath(renderer=IPythonRenderer(escape=False, embed_images=True)).render(md)
    assert re.search(r'<a href="https://x.org/a.py#L3"[^>]*>source</a>', html), html
    inline = MarkdownWithMath(renderer=IPythonRenderer(escape=False, embed_images=True)).render(
        '<a href="https://x.org" target="_blank">source</a> inline')
    assert re.search(r'<a [^>]*></a>source', inline)   # what an inline tag would have become: an empty link


def test_apply_directives():
    sd = _code("#| echo: false\n#| output: asis\nshow_doc(f)",
               new_output("execute_result", data={"text/markdown": "### f\n\n*Doc.*", "text/plain": "f"}))
    assert [(c.cell_type, c.source) for c in ds._apply_directives(sd)] == [("markdown", "### f\n\n*Doc.*")]
    assert ds._apply_directives(sd)[0].metadata.tags == ["af-doc"]          # marked for the search index
    nbdev_sd = copy.deepcopy(sd); nbdev_sd.source = "#| echo: false\n#| output: asis\ndoc(f)"; nbdev_sd["has_sd"] = True
    assert ds._apply_directives(nbdev_sd)[0].metadata.tags == ["af-doc"]    # nbdev's own, known by its mark
    assert sd.source.startswith("#| echo: false") and len(sd.outputs) == 1   # the input cell is not changed
    echo = ds._apply_directives(_code("#| echo: false\nprint(1)", _stream("1\n")))
    assert len(echo) == 1 and echo[0].metadata.transient == {"remove_source": True} and echo[0].source == "print(1)"
    assert ds._apply_directives(_code("#| include: false\nx = 1", _stream("x"))) == []
    assert ds._apply_directives(_code("#| output: false\nx", _stream("x")))[0].outputs == []
    assert ds._apply_directives(_code("#| echo: false\nx = 1")) == []           # no code, no output: nothing left
    shown = ds._apply_directives(_code("#| output: asis\nprint('**b**')", _stream("**b**")))
    assert [(c.cell_type, c.source) for c in shown] == [("code", "print('**b**')"), ("markdown", "**b**")]
    assert "tags" not in shown[1].metadata                                 # not a show_doc: not marked
    md = new_markdown_cell("#| not an option"); assert ds._apply_directives(md) == [md]   # markdown is left alone
    marked = _code("show_doc(f)"); marked["has_sd"] = True
    assert "has_sd" not in ds._apply_directives(marked)[0] and marked.has_sd
    assert ds._asis_markdown([new_output("display_data", data={"text/html": "<b>x</b>", "text/plain": "x"})]) == "<b>x</b>"


def test_page_cells(proc):
    api = ds._read_nb(proc / "01_api.ipynb")
    pnb, fm = ds._page_cells(api)
    assert fm["title"] == "Demo API" and fm["output-file"] == "api.html"
    assert not any(c.cell_type == "raw" for c in pnb.cells)
    assert not any("#|" in c.source for c in pnb.cells if c.cell_type == "code")
    assert "widgets" not in pnb.metadata                                   # an empty widget state is dropped
    assert not any("has_sd" in c for c in pnb.cells) and any("has_sd" in c for c in api.cells)
    assert all("id" in c for c in pnb.cells) and not all("id" in c for c in api.cells)
    assert api.cells[0].cell_type == "raw"                                 # the input notebook is left as it was


def test_front_matter():
    assert ds._front_matter(new_notebook(cells=[new_markdown_cell("# T")])) == {}
    nb = new_notebook(cells=[new_raw_cell("---\ntitle: A - B\ndescription: ends with a dash -\n---\n\n"), new_markdown_cell("x")])
    assert ds._front_matter(nb) == {"title": "A - B", "description": "ends with a dash -"} and len(nb.cells) == 1
    assert ds._front_matter(new_notebook(cells=[new_raw_cell("--- not front matter")])) == {}


# The site's structure -------------------------------------------------------------------------------------------------------------

def test_site_config(proc, empty):
    cfg = ds._site_config(proc)
    assert cfg["website"]["title"] == "Demo site"
    assert cfg["website"]["sidebar"]["contents"] == ["index.ipynb", "01_api.ipynb",
                                                     {"section": "tutorials", "contents": ["tutorials/demo.ipynb"]}]
    assert cfg["format"]["html"]["css"] == "styles.css"                   # from _quarto.yml itself
    assert ds._deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    with pytest.raises(ds.SiteError, match="_quarto.yml is missing"): ds._site_config(empty)


def test_page_paths():
    assert ds._page_path(Path("tutorials/quickstart.ipynb"), {"output-file": "quickstart.html"}) == Path("tutorials/quickstart.html")
    assert ds._page_path(Path("00_core.ipynb"), {}) == Path("00_core.html")
    assert ds._rel(Path("index.html"), Path("tutorials/quickstart.html")) == "../index.html"
    assert ds._rel(Path("tutorials/quickstart.html"), Path("core.html")) == "tutorials/quickstart.html"
    assert ds._rel(Path("."), Path("core.html")) == "."


def test_nav_html():
    pages = {"index.ipynb": (Path("index.html"), "Home"), "tutorials/demo.ipynb": (Path("tutorials/demo.html"), "A <demo>")}
    nav = ds._nav_html(["index.ipynb", "gone.ipynb", {"section": "tutorials", "contents": ["tutorials/demo.ipynb"]}],
                       pages, Path("tutorials/demo.html"))
    assert nav == ('<ul><li><a href="../index.html">Home</a></li><li class="af-section"><span>tutorials</span>'
                   '<ul><li><a class="active" href="demo.html">A &lt;demo&gt;</a></li></ul></li></ul>')
    assert ds._nav_html([], pages, Path("index.html")) == "<ul></ul>"


def test_site(site):
    s, _ = site
    assert s["pages"] == {"01_api.ipynb": (Path("api.html"), "Demo API"), "index.ipynb": (Path("index.html"), "Demo home"),
                          "tutorials/demo.ipynb": (Path("tutorials/demo.html"), "Widgets demo")}
    assert (s["title"], s["url"], s["css"]) == ("Demo site", "https://demo.github.io/demo", "styles.css")


# JavaScript from npm -------------------------------------------------------------------------------------------------------------

def test_site_libs(tmp_path, empty):
    libs = ds._site_libs(tmp_path / "site_libs")
    assert {k: ds._npm_version(ds._npm_dir() / "node_modules" / k) for k in ds._NPM} == ds._NPM
    for f in ["requirejs/require.js", "@jupyter-widgets/html-manager/dist/embed-amd.js", "mathjax/MathJax.js", "mathjax/config/Safe.js",
              "minisearch/dist/umd/index.js"]:
        assert (libs / f).is_file(), f
    assert list(libs.rglob("*.map")) == []
    assert ds._npm_version(empty / "nothing") is None
    with mock.patch("shutil.which", return_value=None):
        with pytest.raises(ds.SiteError, match="npm not found"): ds._npm_install(empty)


# Pages -------------------------------------------------------------------------------------------------------------------------

def test_local_links():
    assert ds._local_links('<a href="https://x.io/p/core.html#f">f</a>', "https://x.io/p", "../") == '<a href="../core.html#f">f</a>'
    assert (ds._local_links('<h3 id="AnomalyResult.cat">x<a class="anchor-link" href="#AnomalyResult.cat">¶</a></h3>', "", "")
            == '<h3 id="anomalyresult.cat">x<a class="anchor-link" href="#anomalyresult.cat">¶</a></h3>')
    assert ds._local_links('<a href="https://other.io/a">', "https://x.io/p", "") == '<a href="https://other.io/a">'


def test_api_page(site):
    """Title block from the front matter, the `show_doc` as markdown, only the output of the `echo: false` cell, the `asis`
    output as bold text, no hidden cell, no option lines, and the sidebar with the page marked."""
    s, pages = site
    html = ds._render_page(*pages["01_api.ipynb"], s)
    for want in ['<title>Demo API - Demo site</title>', '<h1 class="title">Demo API</h1>', "Functions with <em>docs</em>",
                 'data-root="" id="af-search" placeholder="Search" spellcheck="false" type="search"/>',   # nbconvert sorts attributes
                 '<nav class="af-navbar">', '<nav class="af-sidebar" id="af-sidebar">',
                 'src="site_libs/minisearch/dist/umd/index.js"', 'src="site_libs/afsite/search.js"',
                 '<a class="af-site-title" href="index.html">Demo site</a>',
                 '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput celltag_af-doc"',   # the show_doc, marked
                 '<a class="active" href="api.html">Demo API</a>', '<a href="tutorials/demo.html">Widgets demo</a>',
                 '<h3 id="twice">', "<strong>ASIS-BOLD</strong>", "only-output", '<a href="index.html">home</a>', 'href="styles.css"',
                 'src="site_libs/requirejs/require.js"', "site_libs/mathjax/MathJax.js"]:
        assert want in html, want
    for unwanted in ["HIDDEN-CELL", "SOURCE-HIDDEN", "**ASIS-BOLD**", "#|", "In&nbsp;[", "https://demo.github.io", "cdnjs", "unpkg", "jsdelivr"]:
        assert unwanted not in html, unwanted
    text = re.sub(r"<[^>]+>", "", html)   # the page without tags: highlighted code is split into spans
    assert "twice(21)" in text and "#| slow" not in text                  # the `#| slow` cell is shown, without its flag
    assert "widget-state+json" not in html                                # no widgets here, so no widget manager
    # MiniSearch loads before require.js, which would reject its UMD wrapper's anonymous define()
    assert html.index("site_libs/minisearch/dist/umd/index.js") < html.index("site_libs/requirejs/require.js")


def test_widget_page(site):
    "A page in a subfolder links back up, and a page with widgets carries their state and loads the manager from the site."
    s, pages = site
    html = ds._render_page(*pages["tutorials/demo.ipynb"], s)
    for want in ['href="../index.html"', 'src="../site_libs/requirejs/require.js"', 'data-root="../"', "<title>Widgets demo - Demo site</title>",
                 "../site_libs/@jupyter-widgets/html-manager/dist/embed-amd.js", "application/vnd.jupyter.widget-state+json",
                 "application/vnd.jupyter.widget-view+json", "LinkModel", '<a class="active" href="demo.html">']:
        assert want in html, want
    assert "unpkg" not in html and "jsdelivr" not in html


# The whole site ------------------------------------------------------------------------------------------------------------------

def test_build_docs(built):
    assert sorted(str(p.relative_to(built)) for p in built.rglob("*.html")) == ["api.html", "index.html", "tutorials/demo.html"]
    assert (built / "styles.css").read_text() == ".demo-css { color: red; }"
    assert (built / "site_libs" / "@jupyter-widgets" / "html-manager" / "dist" / "embed-amd.js").is_file()
    index = (built / "index.html").read_text()
    for want in ['<h1 class="title">Demo home</h1>', "The demo in one line", '<a class="active" href="index.html">Demo home</a>',
                 '<img alt="a dot" src="data:image/png;base64,', 'class="" src="data:image/png;base64,']:   # markdown image, figure
        assert want in index, want
    assert "print(&#39;ready&#39;)" not in index and "print('ready')" not in index


def test_build_docs_keeps_a_folder_that_is_not_a_site(demo, built):
    (demo / "notes").mkdir(); (demo / "notes" / "keep.txt").write_text("mine")
    with ds._in_project(demo):
        with pytest.raises(ds.SiteError, match="not a docs site"): ds.build_docs(out="notes", n_workers=0)
    assert (demo / "notes" / "keep.txt").read_text() == "mine"


def test_build_docs_finds_every_numbered_notebook(demo, built):
    "No list of notebooks: any name nbdev globs (lettered numbers too) becomes a page, and a deleted one disappears."
    extra = demo / "nbs" / "03a_extra.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Extra page\n\n> Added later.")], metadata={"kernelspec": {
        "display_name": "python3", "language": "python", "name": "python3"}}), extra)
    try:
        with ds._in_project(demo): out = ds.build_docs(n_workers=0)
        assert (out / "extra.html").is_file()
        assert '<a href="extra.html">Extra page</a>' in (out / "index.html").read_text()
    finally: extra.unlink()
    with ds._in_project(demo): out = ds.build_docs(n_workers=0)
    assert not (out / "extra.html").exists()                               # its leftover in _proc/ is not rendered


def test_build_docs_links_notebooks_to_pages(built):
    "Links between notebooks point at the pages, anchors included (Jupyter's and Quarto's spellings); no link names a notebook."
    index, api, demo = ((built / p).read_text() for p in ("index.html", "api.html", "tutorials/demo.html"))
    for want in ['<a href="api.html#twice">the API</a>', '<a href="api.html#maths,-and-more">its maths</a>',
                 '<a href="tutorials/demo.html">the demo</a>']:
        assert want in index, want
    assert '<a href="../api.html#maths,-and-more">the API</a>' in demo
    # nbdev's doc links: to a private helper without an anchor, the text stays; a method's goes to its function's entry
    assert "Uses <code>_helper</code> like" in api and "#_helper" not in api
    assert '<a href="api.html#twice"><code>twice.method</code></a>' in api
    for page in built.rglob("*.html"): assert ".ipynb" not in "".join(re.findall(r'href="([^"]*)"', page.read_text())), page


def test_build_docs_writes_the_search_index(built):
    js = (built / "search-index.js").read_text()
    assert js.startswith("window.afSearchIndex = ") and js.endswith(";\n")
    docs = json.loads(js[len("window.afSearchIndex = "):-2])
    assert [d["id"] for d in docs] == list(range(len(docs)))
    assert all(set(d) == {"id", "url", "title", "page", "kind", "summary", "text"} for d in docs)
    by_url = {d["url"]: d for d in docs}
    assert {"index.html", "api.html", "api.html#twice", "api.html#maths,-and-more", "tutorials/demo.html", "index.html#install"} <= set(by_url)
    assert (by_url["api.html#twice"]["kind"], by_url["api.html#twice"]["title"]) == ("doc", "twice")
    assert by_url["tutorials/demo.html"]["page"] == "Widgets demo"
    assert (built / "site_libs" / "afsite" / "search.js").read_text() == ds._SEARCH_JS
    assert (built / "site_libs" / "minisearch" / "dist" / "umd" / "index.js").is_file()


# Links between pages --------------------------------------------------------------------------------------------------------------

IDS = {Path("core.html"): {"anomalyresult", "anomalyresult.cat", "where-weights-live,-and-whether-the-hub-answers"},
       Path("patchknn.html"): {"patchknn", "scores"}, Path("tutorials/quickstart.html"): {"first-fit"}}
NB_PAGES = {"00_core.ipynb": Path("core.html"), "05_patchknn.ipynb": Path("patchknn.html"),
            "tutorials/quickstart.ipynb": Path("tutorials/quickstart.html")}


def _fix(html, page="index.html"): return ds._fix_links(html, Path(page), NB_PAGES, IDS)


def test_fix_links_points_notebooks_at_their_pages():
    assert _fix('<a href="05_patchknn.ipynb">k</a>') == '<a href="patchknn.html">k</a>'           # the number goes, as in nbdev
    assert _fix('<a href="tutorials/quickstart.ipynb">q</a>') == '<a href="tutorials/quickstart.html">q</a>'
    assert _fix('<a href="05_patchknn.ipynb#Scores">s</a>') == '<a href="patchknn.html#scores">s</a>'
    assert _fix('<a href="../00_core.ipynb">c</a>', "tutorials/quickstart.html") == '<a href="../core.html">c</a>'
    assert _fix('<a href="quickstart.ipynb#first-fit">f</a>', "tutorials/quickstart.html") == '<a href="quickstart.html#first-fit">f</a>'
    assert (_fix('<p>A <a class="x" href="./05_patchknn.ipynb" title="t">k</a> and <a href="00_core.ipynb">c</a>.</p>')
            == '<p>A <a class="x" href="patchknn.html" title="t">k</a> and <a href="core.html">c</a>.</p>')
    gone = '<a href="99_gone.ipynb">g</a>'
    assert _fix(gone) == gone                              # no such notebook: left for the site test to report


def test_fix_links_anchors():
    quarto = '<a href="core.html#where-weights-live-and-whether-the-hub-answers">w</a>'   # Quarto's spelling of the id
    assert _fix(quarto) == '<a href="core.html#where-weights-live,-and-whether-the-hub-answers">w</a>'
    assert _fix('<a href="core.html#AnomalyResult">r</a>') == '<a href="core.html#anomalyresult">r</a>'
    assert _fix('<a href="core.html#anomalyresult.score"><code>AnomalyResult.score</code></a>') == \
        '<a href="core.html#anomalyresult"><code>AnomalyResult.score</code></a>'          # a method without its own entry
    assert _fix('<a href="core.html#_compose"><code>_compose</code></a> done') == "<code>_compose</code> done"
    assert _fix('<a href="#nowhere">n</a>', "core.html") == "n"
    for same in ['<a href="#anomalyresult.cat">c</a>', '<a class="anchor-link" href="#anomalyresult">¶</a>', '<a href="core.html">c</a>',
                 '<a href="https://github.com/x/y/blob/main/00_core.ipynb#L3">s</a>', '<a href="mailto:a@b.c">m</a>',
                 '<a href="other.html#x">o</a>', '<a name="here"></a>', '<abbr title="x">ab</abbr>',
                 '<script type="application/json">{"h": "<a href=\\"05_patchknn.ipynb\\">"}</script>',
                 '<script>x = \'<a href="05_patchknn.ipynb">k</a>\'</script>']:
        assert _fix(same, "core.html") == same, same


def test_anchor():
    ids = {"f", "cls", "cls.m", "my-heading,-yes"}
    assert [ds._anchor(a, ids) for a in ["f", "F", "cls.m", "CLS.other", "my-heading-yes", "My-heading,-yes", "_private", "a.b"]] == \
        ["f", "f", "cls.m", "cls", "my-heading,-yes", "my-heading,-yes", None, None]
    assert ds._page_ids('<h2 id="a">x</h2><div id="b"><a name="c"></a><span name="d"></span></div>') == {"a", "b", "c"}


# The search index -----------------------------------------------------------------------------------------------------------------

def test_search_entries(built):
    "A page's entries: the page, each heading's section, each documented name; prose and code, not outputs, sidebar or navbar."
    entries = ds._search_entries((built / "api.html").read_text(), Path("api.html"), "Demo API")
    by_url = {e["url"]: e for e in entries}
    assert list(by_url) == ["api.html", "api.html#twice", "api.html#maths,-and-more"]
    page, twice, maths = by_url.values()
    assert (page["kind"], page["title"], page["summary"]) == ("page", "Demo API", "Functions with docs.")
    assert (twice["kind"], twice["title"], twice["page"], twice["summary"]) == ("doc", "twice", "Demo API", "Double x.")
    assert "def twice(" in twice["text"].replace("\n", " ") and "source" not in twice["text"]   # signature, not the source link
    assert maths["kind"] == "section" and maths["title"] == "Maths, and more"
    text = " ".join(e["text"] for e in entries)
    assert "twice(21)" in text and "Uses _helper like" in text      # code and prose
    for unwanted in ["only-output", "42", "Widgets demo", "Demo site", "¶", "HIDDEN-CELL"]:
        assert unwanted not in text, unwanted
    long = ds._search_entries("<main><h1 class='title'>T</h1><p>" + "word " * 2000 + "</p></main>", Path("t.html"), "T")
    assert len(long) == 1 and len(long[0]["text"]) == ds._TEXT_CHARS and long[0]["summary"].endswith("…")
    assert len(long[0]["summary"]) <= ds._SUMMARY_CHARS


def test_search_index_js():
    js = ds._search_index_js([{"url": "a.html", "title": "A </script> é"}])
    assert js == 'window.afSearchIndex = [{"id":0,"url":"a.html","title":"A </script> é"}];\n'


def test_html_title():
    assert ds._html_title("Core", "anomalyforge") == "Core - anomalyforge"
    assert ds._html_title("anomalyforge", "anomalyforge") == "anomalyforge"     # the home page
    assert ds._html_title("Core", "") == "Core" and ds._html_title("", "site") == "site"


# README.md -------------------------------------------------------------------------------------------------------------------------

def test_readme(demo, readme):
    md = readme.read_text()
    assert md.startswith("# Demo home\n\n> The demo in one line\n\n")
    assert not ("---" in md.splitlines()[:3] or "#|" in md or "title:" in md)
    assert "print('ready')" not in md and "ready" in md
    figs = re.findall(r"\]\((README_files/[^)]+)\)", md)
    assert len(figs) == 1 and (demo / figs[0]).read_bytes() == PNG


def test_readme_leaves_widgets_out():
    wnb = new_notebook(cells=[_code("w", new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "m"}, "text/plain": "IntSlider()"}))])
    assert "IntSlider" not in ds._readme_md(wnb, {})[0]


def test_readme_needs_the_index(tmp_path):
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nlib_name = x\n")
    with ds._in_project(tmp_path):
        with pytest.raises(ds.SiteError, match="index.ipynb is missing"): ds.build_readme()


# Command line -----------------------------------------------------------------------------------------------------------------------

def _exit_code(argv):
    try:
        with contextlib.redirect_stderr(io.StringIO()): ds.main(argv)   # argparse prints its usage there
    except SystemExit as e: return e.code


def test_main(demo, readme):
    md = readme.read_text()
    with ds._in_project(demo), contextlib.redirect_stdout(io.StringIO()): ds.main(["readme", "--workers", "0"])
    assert (demo / "README.md").read_text() == md
    with pytest.raises(ds.SiteError, match="not an existing .ipynb"): ds.main(["execute", str(demo / "nope.ipynb")])
    assert _exit_code(["publish"]) == 2      # argparse rejects an unknown command
    assert _exit_code([]) == 2


def test_script_with_worker_processes(demo, readme, tmp_path):
    "`python tools/docsite.py`: run as a script, its spawned workers find the processing by name and do not rerun the command."
    copy = tmp_path / "demo"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("_proc", "_docs", "README*"))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "docsite.py"), "readme", "--workers", "2"], cwd=copy,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == str(copy.resolve() / "README.md")           # the command ran once
    assert (copy / "README.md").read_text() == readme.read_text()


def test_execute_keep_slow_leaves_flagged_cells_with_their_outputs(demo):
    "With keep_slow, a `#| slow` cell is not run and keeps what it showed; the other cells run."
    path = demo / "nbs" / "02_slow.ipynb"
    slow = new_code_cell("#| slow\nprint('ran now')", outputs=[new_output("stream", name="stdout", text="stored earlier\n")])
    nbformat.write(new_notebook(cells=[new_code_cell("print(6 * 7)"), slow]), path)
    try:
        with ds._in_project(demo): ds.execute_notebooks([path], timeout=120, keep_slow=True)
        cells = json.loads(path.read_text())["cells"]
        assert "".join(cells[0]["outputs"][0]["text"]) == "42\n"
        assert "".join(cells[1]["outputs"][0]["text"]) == "stored earlier\n"
        assert "tags" not in cells[1]["metadata"]
        with ds._in_project(demo): ds.execute_notebooks([path], timeout=120)          # without it, the slow cell runs
        assert "".join(json.loads(path.read_text())["cells"][1]["outputs"][0]["text"]) == "ran now\n"
    finally: path.unlink()


def test_execute_drops_widget_state_a_run_does_not_make(demo):
    "Widget state left from an earlier run (say, its progress bars) goes when a run makes no widgets."
    path = demo / "nbs" / "03_plain.ipynb"
    nb = new_notebook(cells=[new_code_cell("print(1)")])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"stale": {"model_name": "FloatProgressModel"}}, "version_major": 2, "version_minor": 0}}
    nbformat.write(nb, path)
    try:
        with ds._in_project(demo): ds.execute_notebooks([path], timeout=120)
        assert "widgets" not in json.loads(path.read_text())["metadata"]
    finally: path.unlink()
