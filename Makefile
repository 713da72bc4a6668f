# fedakd-bench: `make reproduce` runs the default pipeline, `make test` the test suite.
# Everything runs from a local virtual environment (.venv); no conda needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch is installed first, on its own, so that a machine can pin the build it has
# (e.g. TORCH_PACKAGES="torch==2.14.1 torchvision==0.29.1" for a wheel on local disk). The flower extra (Flower
# and Ray) comes with the test extra, so that the Flower tests run (without it they are skipped, naming it).
TORCH_PACKAGES ?= torch torchvision
CORES  ?= 2
CONFIG ?= config/config.yaml
PORT   ?= 5000

.PHONY: setup test test-fast reproduce resume report report-html data ui paper bench bench-overhead gpu-check lint browser cluster-check clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PACKAGES)
	$(BIN)/python -m pip install --quiet -e ".[test,flower]"
	touch $@

# Two pytest-xdist workers: the suite mostly waits on subprocesses and servers (tests/conftest.py groups
# the tests so that each costly set-up happens once). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: setup
	$(PYTEST) --durations=15

test-fast: setup
	$(PYTEST) -m "not slow"

# Fashion-MNIST offline on Debian: the dataset-fashion-mnist package (needs root);
# elsewhere the pipeline's data rule downloads it through torchvision.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] || [ -d data/FashionMNIST/raw ]; then \
	  echo "Fashion-MNIST found"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "Fashion-MNIST not installed; the pipeline will try torchvision's download"; \
	fi

reproduce: setup data
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) --configfile $(CONFIG)

# An unfinished study published with --partial (published/$(STUDY)/) goes on here, on another machine: the
# pipeline makes the partitions, `fedakd restore` puts the finished runs back (each checked against the live
# config's job spec and its partition), and the pipeline trains only what is missing. ARGS go to that last
# Snakemake (e.g. ARGS="--until tune_select" for a tuning stage). Publish again when it stops:
#   .venv/bin/fedakd publish --config <the study's config> --partial
STUDY_CONFIG = $(shell test -f published/$(STUDY)/study.json && $(PYTHON) -c \
	"import json; print(json.load(open('published/$(STUDY)/study.json'))['config'])")
ARGS ?=
resume: setup data
	@test -n "$(STUDY_CONFIG)" || { echo "say which published study: make resume STUDY=<a folder of published/>"; exit 2; }
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) --configfile $(STUDY_CONFIG) --until partition
	$(BIN)/fedakd restore --bundle published/$(STUDY) --config $(STUDY_CONFIG)
	$(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) $(ARGS) --configfile $(STUDY_CONFIG)

# Rebuild tables, figures and report from the runs that exist, training nothing.
report: setup
	$(BIN)/snakemake report --profile workflow/profiles/default --cores $(CORES) --configfile $(CONFIG) \
	    --allowed-rules track aggregate figures write_report mlflow_summary report --forcerun aggregate figures

# Snakemake's own browsable report of the last run: tables, figures (by dataset and setting), report.md.
report-html: setup
	$(BIN)/snakemake --configfile $(CONFIG) --report reports/report.html

# A published study (published/$(STUDY)/, fedakd.publish) regenerated without training: its bundle is checked
# against its SHA-256 manifest and unpacked into build/paper/$(STUDY)/, whose results/tables, reports/figures,
# reports/report.md and reports/report.html the pipeline's own aggregate, figures and report steps rebuild.
STUDY ?=
PAPER := build/paper/$(STUDY)
PAPER_STORE = sqlite:///$(abspath $(PAPER))/mlflow.db
PAPER_SNAKEMAKE = $(BIN)/snakemake -s Snakefile --directory $(PAPER) --configfile $(PAPER)/config.yaml \
	--config published=published/$(STUDY) --cores $(CORES)

paper: setup
	@test -n "$(STUDY)" || { echo "say which study: make paper STUDY=<a folder of published/>"; exit 2; }
	rm -rf $(PAPER)/results/tables $(PAPER)/reports
	$(BIN)/fedakd unpack --bundle published/$(STUDY) --out $(PAPER)
	$(PAPER_SNAKEMAKE) --allowed-rules aggregate figures write_report --forcerun aggregate -- reports/report.md
	$(PAPER_SNAKEMAKE) --report $(abspath $(PAPER))/reports/report.html
	@echo "tables in $(PAPER)/results/tables, figures and report in $(PAPER)/reports"

# MLflow 3's UI remembers a GenAI / model-training toggle per browser and starts on GenAI: the link
# printed here opens the experiment on its training runs. With STUDY, the published study's runs (loaded into
# build/paper/$(STUDY)/mlflow.db once; loading again adds nothing).
ui: setup
ifdef STUDY
	$(BIN)/fedakd ui-import --bundle published/$(STUDY) --out $(PAPER) --tracking-uri $(PAPER_STORE)
	@$(BIN)/fedakd ui-link --config $(PAPER)/config.yaml --set tracking_uri=$(PAPER_STORE) --url http://127.0.0.1:$(PORT)
	$(BIN)/mlflow ui --backend-store-uri $(PAPER_STORE) --host 127.0.0.1 --port $(PORT) --workers 1
else
	@$(BIN)/fedakd ui-link --config $(CONFIG) --url http://127.0.0.1:$(PORT)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///results/mlflow.db --host 127.0.0.1 --port $(PORT) --workers 1
endif

# The browser test's Chromium and ChromeDriver, and PostgreSQL for the tracking test (Debian, as root);
# .ci/run does the same. Without them those tests are skipped, saying why.
browser:
	apt-get update -qq && apt-get install -y -qq chromium chromium-driver postgresql

# A single-node SLURM on this machine, and the smoke pipeline through workflow/profiles/slurm (needs root).
cluster-check: setup
	VENV=$(VENV) .ci/cluster-check

bench: setup data
	$(BIN)/python benchmarks/bench.py $(if $(BASELINE),--baseline $(BASELINE))

# Only the per-job overhead (start-up, CPU outside rounds, imports, a study's share), minutes not the whole
# benchmark; BASELINE=REV measures that commit's code beside this checkout's in the same run.
bench-overhead: setup data
	$(BIN)/python benchmarks/bench.py --overhead-only $(if $(BASELINE),--baseline $(BASELINE))

# On a machine lent a GPU: the smoke study on CUDA with jobs sharing the GPU, determinism, and the engine's
# GPU figures; one summary, written to results/bench/gpu.json. Refuses at once without CUDA.
gpu-check: setup data
	$(BIN)/python benchmarks/gpu_check.py

lint: setup
	$(BIN)/snakemake --lint --configfile $(CONFIG)

clean-results:
	rm -rf results/partitions results/runs results/tables results/data results/mlflow results/mlflow.db \
	       results/mlartifacts results/bench results/tuning results/ui-screenshots reports/figures \
	       reports/report.md reports/report.html logs .snakemake
