# The README's two commands: `make book` and `make test`. Everything else is a helper.
#   TORCH_SPEC   the torch requirement installed first (GPU users: TORCH_SPEC="torch>=2.3")
#   PYTHON       the interpreter the virtual environment is made from
SHELL := /bin/bash
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
JB_FLAGS ?= -W -n --keep-going
WIDGETS_NPM ?= @jupyter-widgets/html-manager@1.0.15
REQUIREJS_NPM ?= requirejs@2.3.8
ORT_WEB_NPM ?= onnxruntime-web@1.30.0

# Caches shared by the notebook tests and the book build (trained models, corpora).
export LMCORE_CACHE ?= $(CURDIR)/_build/lmcore_cache
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/tinyshakespeare.txt),)
export LMCORE_LOCAL_DATA ?= $(SHARED_DATA)
endif
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# No progress bars in the tests or in the HTML book (their stored outputs would show a frozen bar);
# `make lab` and notebooks run by hand show them (lmcore.progress).
book test test-portable book-instructor: export LMCORE_PROGRESS := 0
# Chapters executed for the book store the HTML fallbacks that load the book's offline plotly.js.
book book-instructor: export LMCORE_BOOK := 1

.PHONY: book test lint test-portable lab pdf assets web-assets student student-branch grade nbgrader-env book-instructor bench clean help

help:
	@echo "make book   - build the HTML book (executes every chapter) into _build/html"
	@echo "make test   - unit tests, every notebook under nbval, the book build, the browser check"
	@echo "make lint   - ruff and mypy (the first step of make test)"
	@echo "make web-assets - the in-browser explorer's files: the models as ONNX, onnxruntime-web (make book/test run it)"
	@echo "make test-portable - the notebooks under nbval again, with another CPU's floating-point kernels"
	@echo "make lab    - open the chapters in JupyterLab"
	@echo "make student OUT=DIR [CHAPTER=05] [FORCE=1] - write the student edition (solutions replaced by stubs)"
	@echo "make student-branch [BRANCH=student] - commit the student edition of HEAD onto a local branch (then git push)"
	@echo "make grade SUBMISSIONS=DIR CHAPTER=chapters/NN_x.ipynb OUT=grades [FORCE=1] - run and grade every submission"
	@echo "make nbgrader-env - nbgrader in its own environment, _build/nbgrader (tests/test_grading.py uses it)"
	@echo "make book-instructor [LAUNCH_BRANCH=student] - build the book with solutions hidden (launch buttons on that branch)"
	@echo "make pdf    - the printable PDF through LaTeX (Debian texlive packages, see setup.md)"
	@echo "make bench  - run the benchmarks (prints tables)"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Third-party JavaScript the offline book serves itself (never committed): the ipywidgets
# embed manager, require.js and plotly.js, copied into _assets/vendor/.
_assets/vendor/.installed: $(VENV)/.installed
	rm -rf _assets/vendor _build/npm && mkdir -p _assets/vendor _build/npm
	cd _build/npm && npm pack --silent $(WIDGETS_NPM) $(REQUIREJS_NPM) >/dev/null
	tar xzf _build/npm/jupyter-widgets-html-manager-*.tgz -C _build/npm
	tar xzf _build/npm/requirejs-*.tgz -C _build/npm package/require.js
	cp _build/npm/package/dist/embed-amd.js _build/npm/package/dist/*.{eot,svg,ttf,woff,woff2} _assets/vendor/ 2>/dev/null || cp _build/npm/package/dist/embed-amd.js _assets/vendor/
	cp _build/npm/package/require.js _assets/vendor/require.min.js
	$(BIN)/python -c "import plotly, pathlib, shutil; shutil.copy(pathlib.Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js', '_assets/vendor/plotly.min.js')"
	touch $@

assets: _assets/vendor/.installed

# The in-browser explorer of chapters 1 and 8 (_assets/explorer/): onnxruntime-web's wasm runtime
# (only ort.wasm.min.js and a script holding the wasm, packed by tools/export_onnx.py) into
# _assets/vendor/ort/, and the zoo models exported to ONNX into _assets/models/. Generated, never
# committed; the export is redone when the shipped weights or the exporter change.
_assets/vendor/ort/.installed: _assets/vendor/.installed tools/export_onnx.py
	rm -rf _assets/vendor/ort _build/npm/ort && mkdir -p _assets/vendor/ort _build/npm/ort
	cd _build/npm/ort && npm pack --silent $(ORT_WEB_NPM) >/dev/null
	tar xzf _build/npm/ort/onnxruntime-web-*.tgz -C _build/npm/ort package/dist/ort.wasm.min.js \
	    package/dist/ort-wasm-simd-threaded.wasm package/dist/ort-wasm-simd-threaded.mjs
	cp _build/npm/ort/package/dist/ort.wasm.min.js _assets/vendor/ort/
	$(BIN)/python tools/export_onnx.py --runtime _build/npm/ort/package/dist --out _assets/vendor/ort
	touch $@

_assets/models/.exported: $(VENV)/.installed tools/export_onnx.py lmcore/zoo/weights/manifest.json
	$(BIN)/python tools/export_onnx.py --out _assets/models toy-char
	touch $@

web-assets: _assets/vendor/ort/.installed _assets/models/.exported

# Colab's widget stack (ipywidgets 7.7.1, IPython 7.34) in its own environment, for
# tests/test_widgets_ipywidgets7.py; lmcore comes from this checkout through PYTHONPATH.
IPYW7 := _build/ipyw7
# nbgrader's own environment (the export test, tests/test_grading.py); its target is below `grade`.
NBGRADER_ENV := _build/nbgrader
$(IPYW7)/.installed:
	rm -rf $(IPYW7) && $(PYTHON) -m venv $(IPYW7)
	$(IPYW7)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(IPYW7)/bin/python -m pip install -q ipywidgets==7.7.1 ipython==7.34.0 numpy tqdm regex safetensors matplotlib scipy
	touch $@

book: assets web-assets
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# Unit tests first (fast feedback), then every chapter under nbval, then the book + browser check.
# worksteal: an idle worker takes queued tests from the busy one (the student-edition tests run
# whole chapters and would otherwise queue on one worker).
# Chapters run single-threaded (lmcore.setup), two at a time: one per core. A notebook's cells
# stay together in one worker (--dist loadfile), in order, in one fresh kernel.
PYTEST_WORKERS ?= 2
test: assets web-assets lint $(IPYW7)/.installed $(NBGRADER_ENV)/.installed
	$(BIN)/python -m pytest -q tests -m "not book and not browser" -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal
	$(BIN)/python -m pytest -q --nbval-lax chapters -p no:cacheprovider --nbval-cell-timeout=900 -n $(PYTEST_WORKERS) --dist loadfile
	$(BIN)/python -m pytest -q tests -m "book or browser" -p no:cacheprovider

# ruff (lint, configured in pyproject.toml) and mypy (types, lenient for now) on the code; seconds.
lint: $(VENV)/.installed
	$(BIN)/python -m ruff check lmcore tests benchmarks tools
	$(BIN)/python -m mypy

# Another machine on this one: PyTorch's plain (non-vectorised) kernels, oneDNN limited to SSE4.1 and
# numpy without its AVX2 / AVX-512 code paths give other last bits, as a student's laptop or a CI
# runner would. Every checked output and every claim cell must hold under them too (contributing.md).
FOREIGN_KERNELS := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 \
                   NPY_DISABLE_CPU_FEATURES=X86_V3,X86_V4,AVX512_ICL,AVX512_SPR
test-portable: assets
	$(FOREIGN_KERNELS) $(BIN)/python -c "import torch; print('CPU kernels:', torch.backends.cpu.get_cpu_capability())"
	$(FOREIGN_KERNELS) $(BIN)/python -m pytest -q --nbval-lax chapters -p no:cacheprovider --nbval-cell-timeout=900 -n $(PYTEST_WORKERS) --dist loadfile

# OUT is refused if it is, lies in or holds the chapters, or is a non-empty folder the tool did not
# write, unless FORCE=1 (then same-named files are overwritten; nothing is deleted).
student: $(VENV)/.installed
	$(BIN)/python tools/course.py student --out "$(or $(OUT),student)" $(if $(CHAPTER),--chapter "$(CHAPTER)") $(if $(FORCE),--force)

# The student edition of the committed chapters as a branch with main's layout, for the launch buttons
# (git plumbing in a temporary index: the working tree and the current branch are not touched).
student-branch: $(VENV)/.installed
	$(BIN)/python tools/course.py student-branch --branch "$(or $(BRANCH),student)"

# Each submission (SUBMISSIONS/<student>.ipynb or SUBMISSIONS/<student>/) runs in a fresh kernel and the
# grader calls the source CHAPTER's checks itself (tools/grading.py); the report is OUT.csv and OUT.json.
grade: $(VENV)/.installed
	$(BIN)/python tools/course.py grade "$(SUBMISSIONS)" --chapter "$(CHAPTER)" --out "$(or $(OUT),grades)" $(if $(FORCE),--force)

# nbgrader, for the export (tools/nbgrader_export.py), in its own environment: in the project's, its Lab
# and server extensions would change what `make lab` shows. Notebooks it runs use the project's kernel
# (tests/test_grading.py puts a kernelspec on JUPYTER_PATH). About 40 s.
$(NBGRADER_ENV)/.installed:
	rm -rf $(NBGRADER_ENV) && $(PYTHON) -m venv $(NBGRADER_ENV)
	$(NBGRADER_ENV)/bin/python -m pip install -q "nbgrader==0.9.6" "jupyterlab>=4.1,<4.6"
	touch $@
nbgrader-env: $(NBGRADER_ENV)/.installed

# The book with every solution removed, for publishing before a deadline: built from the
# chapters' stored outputs (run `make book` or `make test` first so they are current).
# A folder built before the tool marked its output folders (.lmcore-course-output) is make's own
# build output like the rest of _build/ (`make clean`), so it is removed rather than refused.
book-instructor: assets web-assets
	test -e _build/instructor_src/.lmcore-course-output || rm -rf _build/instructor_src
	$(BIN)/python tools/course.py instructor-book --out _build/instructor_src $(if $(LAUNCH_BRANCH),--launch-branch "$(LAUNCH_BRANCH)")
	$(BIN)/jupyter-book build _build/instructor_src $(JB_FLAGS)
	@echo "The book without solutions is at $(CURDIR)/_build/instructor_src/_build/html/index.html"

# The printable PDF, through LaTeX, from the notebooks' stored outputs (run `make book` first so they
# are current); needs Debian's texlive-xetex texlive-latex-recommended texlive-latex-extra
# texlive-fonts-recommended texlive-fonts-extra latexmk imagemagick librsvg2-bin (setup.md). /usr/bin
# comes first on PATH because some images put a stub `convert` in /usr/local/bin.
pdf: assets
	mkdir -p _build
	sed 's/execute_notebooks: cache.*/execute_notebooks: "off"/' _config.yml > _build/pdf_config.yml
	PATH=/usr/bin:$$PATH $(BIN)/jupyter-book build . --config _build/pdf_config.yml --builder pdflatex
	@echo "The PDF is at $(CURDIR)/_build/latex/lm-book.pdf"

# JupyterLab with jupyterlab-myst (in the dev extra), so exercises, admonitions and citations render.
lab: $(VENV)/.installed
	$(BIN)/jupyter lab chapters/

bench: $(VENV)/.installed
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf _build
