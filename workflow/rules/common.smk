# Validates the config (one clear message and no job at all for a bad one), names the output paths,
# and derives from the config the target list, each job's resolved spec and the training resources.
# Parse-time imports stay light (fedakd.config); anything heavier is imported inside a function.

import math
import os
import re
import shutil
import sys
from functools import cache
from pathlib import Path

from fedakd import layout
from fedakd.config import ConfigError, job_spec, partition_spec, validate_config
from fedakd.config.study import setting_seeds, step_families

# `--config published=<bundle>` (make paper): the runs come from a published bundle's unpacked results tree, so
# the aggregate step reads them as they are, with no MLflow store to check them against (the bundle's SHA-256
# manifest and the run record's own checks did that).
PUBLISHED = config.pop("published", None)
try:
    config.update(validate_config(config))  # in place, so the scripts' snakemake.config has the defaults
except ConfigError as error:
    sources = ", ".join(map(str, workflow.overwrite_configfiles or workflow.configfiles)) or "--config"
    sys.exit(f"fedakd: invalid config ({sources}):\n{error}")
from fedakd.config.cost import cost_warnings

for warning in cost_warnings(config):  # an absurd size is said before any job starts
    print(f"fedakd: {warning}", file=sys.stderr)


# The rules' scripts run this checkout's packages, also in a rule's conda environment where only the
# dependencies are installed: the checkout comes first on their PYTHONPATH (they inherit the environment).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])))

# Every path comes from fedakd.layout (the rules' outputs; inputs refer to them: rules.<name>.output).
EXPERIMENT_FILE = layout.EXPERIMENT_FILE
SUMMARY_RUN_FILE = layout.SUMMARY_RUN_FILE
TUNING = "tune" in config  # a tuning stage before the evaluation grid (workflow/rules/tune.smk)
STEPS = any("step_of" in setting for setting in config["settings"].values())  # the verdict across step sizes
TABLE_NAMES = [*layout.TABLE_NAMES, *(["tuning"] if TUNING else []), *(["steps"] if STEPS else [])]
TABLES = expand(f"{layout.TABLES_DIR}/{{table}}.{{ext}}", table=TABLE_NAMES, ext=layout.TABLE_FORMATS)
FIGURES = layout.FIGURES_DIR
FIGURE_KINDS = ["learning_curves", "per_class_recall", "accuracy_vs_bytes", "forest", "steps"]
REPORT = layout.REPORT_FILE
PARTITION_FILES = {name: f"{layout.PARTITION_DIR}/{file}" for name, file in
                   (("manifest", layout.MANIFEST_FILE), ("indices", layout.INDICES_FILE), ("heatmap", layout.HEATMAP_FILE))}
RUN_METRICS = f"{layout.RUN_DIR}/{layout.METRICS_FILE}"
TUNING_RUN_METRICS = f"{layout.TUNING_RUN_DIR}/{layout.METRICS_FILE}"

def experiments():
    """The MLflow experiments the pipeline logs to: the config's, and its tuning stage's if any."""
    from fedakd.config.tuning import tuning_experiment

    return [config["experiment"], *([tuning_experiment(config)] if TUNING else [])]


def study():
    """The declared comparisons, metrics, ladder and convergence rule (fedakd.config.study.Study), as a dict."""
    from fedakd.config.study import Study

    return Study.from_config(config).to_dict()



def one_of(names):
    """A wildcard pattern matching exactly the configured names: none can span a '/' or catch a stray folder."""
    return "|".join(re.escape(str(name)) for name in names)


def table_outputs():
    """The aggregate rule's tables; the CSVs are marked for `snakemake --report` under Tables."""
    mark = report  # (a line may not start with `report`: Snakemake would read its keyword)
    return [
        mark(path, caption=f"../report/tables/{Path(path).stem}.rst", category="Tables",
             labels={"table": Path(path).stem})
        if path.endswith(".csv")
        else path
        for path in TABLES
    ]


def figure_patterns():
    """The figures in reports/figures/, by kind, dataset and setting (names joined by '_', so each part is
    matched against the config's own names); a figure of every setting has an empty setting (`()`: a
    wildcard that matches nothing), which figure_subcategory names."""
    datasets, settings = one_of(config["datasets"]), one_of(config["settings"])
    methods = one_of(config["methods"])
    return [
        f"{{kind,{one_of(FIGURE_KINDS)}}}_{{dataset,{datasets}}}_{{setting,{settings}}}.png",
        f"{{kind,verdict_overview|minority_vs_imbalance|critical_difference}}_{{dataset,{datasets}}}{{setting,()}}.png",
        f"{{kind,partition}}_{{dataset,{datasets}}}_{{setting,{settings}}}_seed{{seed,\\d+}}.png",
        f"{{kind,tuning_sensitivity}}_{{method,{methods}}}_{{dataset,{datasets}}}_{{setting,{settings}}}.png",
    ]


def figure_subcategory(wildcards):
    """A figure's subcategory in the HTML report: its setting, or "all settings" for one that spans them."""
    return wildcards.setting or "all settings"


def figure_labels(wildcards):
    """A figure's row in the HTML report: its kind, and which seed's partition or which method's tuning."""
    which = f"seed {wildcards.seed}" if "seed" in wildcards.keys() else wildcards.get("method", "every method")
    return {"figure": wildcards.kind, "of": which}


wildcard_constraints:
    dataset=one_of(config["datasets"]),
    setting=one_of(config["settings"]),
    method=one_of(config["methods"]),
    seed=one_of(config["seeds"] + config.get("tune", {}).get("seeds", [])),
    candidate=r"\d+",


def per_setting(pattern, settings=None, **wildcards):
    """``pattern`` expanded over the settings (all by default), each with its own seeds (a step setting may run
    fewer, fedakd.config.study.setting_seeds), and the other wildcards given."""
    return [path for setting in (settings or config["settings"])
            for path in expand(pattern, setting=setting, seed=setting_seeds(config, setting), **wildcards)]


def family_partition(name):
    """A train job's partition file ``name``: a step setting trains on its base setting's partitions."""
    return lambda wildcards: PARTITION_FILES[name].format(
        dataset=wildcards.dataset, setting=step_families(config)[wildcards.setting], seed=wildcards.seed)


def partition_manifests():
    bases = sorted(set(step_families(config).values()), key=list(config["settings"]).index)
    return per_setting(PARTITION_FILES["manifest"], bases, dataset=config["datasets"])


def run_metrics():
    return per_setting(RUN_METRICS, dataset=config["datasets"], method=config["methods"])


def tuning_choices():
    """The tuning choice (layout.TUNING_CHOICE) of every evaluation job's method (none without tuning)."""
    if not TUNING:
        return []
    return expand(
        layout.TUNING_CHOICE,
        dataset=config["datasets"],
        setting=config["settings"],
        method=config["methods"],
    )


def tracked_runs():
    """The track rule's outputs: the MLflow runs of every dataset x setting."""
    return expand(layout.TRACKED_RUNS, dataset=config["datasets"], setting=config["settings"])


def final_targets():
    tuning = tracked_tuning_runs() if TUNING else []
    return [*run_metrics(), *tracked_runs(), *tuning, *TABLES, FIGURES, REPORT, SUMMARY_RUN_FILE]


def train_job(wildcards):
    """One training job's resolved spec (as a dict); as the train rule's params, a change reruns only the
    jobs it affects."""
    return job_spec(
        config, dataset=wildcards.dataset, setting=wildcards.setting, method=wildcards.method, seed=int(wildcards.seed)
    ).to_dict()


def partition_config(wildcards):
    """Only what makes the partition: changing rounds or a method option must not remake it (and retrain all)."""
    return partition_spec(config, dataset=wildcards.dataset, setting=wildcards.setting, seed=int(wildcards.seed)).to_dict()


def train_mem_mb(wildcards):
    """torch's own footprint plus the dataset three times over as float32 (tensors, batches, client copies)."""
    from fedakd.data import DATASETS

    spec = DATASETS[wildcards.dataset]
    dataset_mb = (spec.n_train + spec.n_test) * math.prod(spec.in_shape) * 4 / 2**20
    return 1500 + math.ceil(3 * dataset_mb)


def train_runtime(wildcards):
    """A generous cluster wall-time in minutes: start-up plus the job's examples at a CPU core's pace."""
    from fedakd.config.cost import job_hours

    hours = job_hours(config, wildcards.dataset, wildcards.method, wildcards.setting)
    return 10 + math.ceil(hours * 60)


@cache
def cuda_visible():
    """torch sees a GPU here; torch is imported only where an NVIDIA driver is installed, so CPU machines pay nothing."""
    if shutil.which("nvidia-smi") is None:
        return False
    import torch

    return torch.cuda.is_available()


def train_gpus(wildcards):
    device = config["device"]
    return int(device == "cuda" or (device == "auto" and cuda_visible()))

