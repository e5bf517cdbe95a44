# anomalyforge. Two commands do all set-up on a fresh machine (README):
#   make demo   the main job: fit + evaluate on the embedded demo data (runs/demo), then build the docs site (_docs/)
#   make test   every test: all notebooks (nbdev_test) and pytest (CLI, bad input, export, docs site in Chromium)
# Other targets: make docs | make nbs (re-execute notebooks, storing outputs + widget state) | make bench | make bench-flows | make bench-real | make bench-select | make bench-ltad | make bench-speed | make bench-bf16 | make clean
#   make bench-flows DATA=/path/to/mvtec CATEGORY=bottle,cable   adds an MVTec-layout folder to the flow benchmark
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell md5sum pyproject.toml | cut -c1-8)

.PHONY: install demo docs test nbs bench bench-flows bench-real bench-select bench-ltad bench-speed bench-bf16 browser clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
	rm -f .venv/.installed-*; touch $@

install: $(STAMP)

demo: $(STAMP)
	.venv/bin/anomalyforge demo --out runs/demo
	$(MAKE) --no-print-directory docs

docs: $(STAMP)
	$(PY) tools/docsite.py build --workers 0
	$(PY) tools/docsite.py readme --workers 0

# headless Chromium for the docs-site test (Debian packages; needs root, as on CI)
browser:
	@if ! command -v chromium >/dev/null || ! test -x /usr/bin/chromedriver; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; fi

# one torch thread per notebook worker: two workers with two threads each on two cores made small-op loops (InCTRL's heads) many times slower
test: $(STAMP) browser
	OMP_NUM_THREADS=1 .venv/bin/nbdev_test --n_workers 2 --timing
	ANOMALYFORGE_REQUIRE_BROWSER=1 $(PY) -m pytest tests -q   # the docs-site tests fail, not skip, without a browser

# every numbered notebook below 90 (00_core ... 16_cli, with lettered ones such as 00a_), the index and the tutorials;
# notebooks 90 and up are the benchmarks, executed by their own targets
nbs: $(STAMP)
	$(PY) tools/docsite.py execute $$(ls nbs/[0-8][0-9]*.ipynb nbs/index.ipynb nbs/tutorials/*.ipynb)

# benchmarks against anomalib (installed from the `bench` extra); each executes its notebook and stores the outputs
bench: $(STAMP)
	.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	$(PY) tools/docsite.py execute nbs/90_benchmarks.ipynb --timeout 3000

bench-flows: $(STAMP)
	.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	BENCH_DATA="$(DATA)" BENCH_CATEGORY="$(CATEGORY)" $(PY) tools/docsite.py execute nbs/91_flow_benchmarks.ipynb --timeout 6000

# every detector on real cracks (KolektorSDD, ../shared) and the demo sets, and the study behind PatchKNN's defaults;
#   make bench-real REAL=/path/to/mvtec_layout REAL_CATEGORY=bottle   runs it on another real set instead
bench-real: $(STAMP)
	.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	BENCH_REAL="$(REAL)" BENCH_REAL_CATEGORY="$(REAL_CATEGORY)" $(PY) tools/docsite.py execute nbs/94_real_defects.ipynb --timeout 6000

# does synthetic validation choose what real defects would? a candidate grid ranked on synthetic and on real anomalies (about an hour)
#   make bench-select DATA=/path/to/mvtec CATEGORY=carpet,grid   adds an MVTec-layout folder
bench-select: $(STAMP)
	BENCH_DATA="$(DATA)" BENCH_CATEGORY="$(CATEGORY)" $(PY) tools/docsite.py execute nbs/95_synthetic_validation.ipynb --timeout 7000

# LTAD against pooled PatchKNN / FastFlow and per-class PatchKNN on the long-tailed demo, with its ablations (about half an hour)
#   make bench-ltad DATA=/path/to/mvtec CLIP=ViT-B-16:openai SPLIT=/path/to/split.json   (each optional)
bench-ltad: $(STAMP)
	BENCH_DATA="$(DATA)" BENCH_CLIP="$(CLIP)" BENCH_SPLIT="$(SPLIT)" $(PY) tools/docsite.py execute nbs/96_ltad_benchmark.ipynb --timeout 7000

# thread settings idle and beside a busy process, files vs tensors, one process vs two under torchrun (needs a quiet machine)
bench-speed: $(STAMP)
	.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,bench]"
	BENCH_REAL="$(REAL)" $(PY) tools/docsite.py execute nbs/97_speed.ipynb --timeout 4000

bench-bf16: $(STAMP)
	BENCH_REAL="$(REAL)" $(PY) tools/docsite.py execute nbs/98_bf16_accuracy.ipynb --timeout 3600

clean:
	rm -rf _docs _proc runs
