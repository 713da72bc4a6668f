"""Config validation: every bad value stops before any work, with a line naming the key path and the value."""

import copy
import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from jsonschema import Draft202012Validator

import fedakd.data
from fedakd import registry
from fedakd.config import (
    ConfigError, apply_overrides, config_digest, job_spec, load_config, load_schema, partition_spec,
    validate_config, validate_method_options,
)
from fedakd.config.schema import SCHEMA_RESOURCE
from fedakd.config.spec import JobSpec, PartitionSpec
from fedakd.config.study import setting_seeds
from fedakd.method import Method

ROOT = Path(__file__).resolve().parents[1]


class FakeDistiller(Method):
    """A stand-in for a server-side method, so these tests do not depend on the real methods' options."""

    options_schema = {
        "steps": {"type": "integer", "minimum": 0, "default": 10, "description": "server steps"},
        "warm": {"type": "boolean", "default": False, "description": "warm start"},
    }

    @classmethod
    def check_options(cls, options):
        return ["steps > 50 needs warm: true"] if options["steps"] > 50 and not options["warm"] else []

    @classmethod
    def needs_transfer_set(cls, options):
        return True


@pytest.fixture(autouse=True)
def fake_method(monkeypatch):
    real_get_method = registry.get_method
    monkeypatch.setattr(registry, "get_method",
                        lambda name: FakeDistiller if name == "fake-kd" else real_get_method(name))


@pytest.fixture
def base():
    """config/smoke.yaml as written (no defaults filled), plus a fake server-side method."""
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["methods"]["kd"] = {"method": "fake-kd"}
    return config


MINIMAL = {"experiment": "e", "seeds": [0], "datasets": ["digits"],
           "settings": {"bal": {"split": {"kind": "iid"}}}, "methods": {"avg": {"method": "fedavg"}}}


def _set(path: str, value):
    """A mutation setting config[a][b]... (path 'a.b...') to value."""
    def mutate(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return mutate


def _set_step(path: str, value):
    """A mutation of config/smoke.yaml's step setting (whose name holds a '.'): settings[STEP][a][b]... = value."""
    def mutate(config):
        _set(path, value)(config["settings"]["lt10-dir1-lr0.02"])
    return mutate


def _rename_setting(new_name):
    def mutate(config):
        config["settings"][new_name] = config["settings"].pop("lt10-dir1")
    return mutate


def _rename_method(new_name):
    def mutate(config):
        config["methods"][new_name] = config["methods"].pop("fedavg")
    return mutate


SPLIT = "settings.lt10-dir1.split"
IMBALANCE = "settings.lt10-dir1.imbalance"
STEP = "settings.lt10-dir1-lr0.02"

# (mutation, the start of the problem's line: "<key.path>: <value!r>")
BAD_CONFIGS = {
    "negative alpha": (_set(f"{SPLIT}.alpha", -1.0), f"{SPLIT}.alpha: -1.0"),
    "zero alpha": (_set(f"{SPLIT}.alpha", 0), f"{SPLIT}.alpha: 0"),
    "factor below 1": (_set(f"{IMBALANCE}.factor", 0.5), f"{IMBALANCE}.factor: 0.5"),
    "fraction 0": (_set("federation.fraction", 0), "federation.fraction: 0"),
    "fraction above 1": (_set("federation.fraction", 1.5), "federation.fraction: 1.5"),
    "no clients": (_set("federation.clients", 0), "federation.clients: 0"),
    "more clients than examples": (_set("federation.clients", 100000), "federation.clients: 100000"),
    "clients as float": (_set("federation.clients", 4.0), "federation.clients: 4.0"),
    "unknown dataset": (_set("datasets", ["digits", "imagenet"]), "datasets[1]: 'imagenet'"),
    "unknown backbone": (_set("model.backbone", "vgg"), "model.backbone: 'vgg'"),
    "backbone too big for digits": (_set("model.backbone", "cnn"), "model.backbone: 'cnn'"),
    "unknown method": (_set("methods.fedavg.method", "fedsgd"), "methods.fedavg.method: 'fedsgd'"),
    "method without method key": (_set("methods.kd", {"steps": 1}), "methods.kd.method: (missing)"),
    "unknown method option": (_set("methods.kd.stepz", 1), "methods.kd.stepz: 1"),
    "method option of wrong type": (_set("methods.kd.steps", "ten"), "methods.kd.steps: 'ten'"),
    "method options the class rejects": (_set("methods.kd.steps", 60), "methods.kd: {'steps': 60, 'warm': False}"),
    "unknown top-level key": (_set("epochs", 5), "epochs: 5"),
    "unknown federation key": (_set("federation.total_rounds", 5), "federation.total_rounds: 5"),
    "unknown split key": (_set(f"{SPLIT}.beta", 1), f"{SPLIT}.beta: 1"),
    "no seeds": (_set("seeds", []), "seeds: []"),
    "duplicated seeds": (_set("seeds", [0, 0]), "seeds: [0, 0]"),
    "negative seed": (_set("seeds", [0, -1]), "seeds[1]: -1"),
    "no rounds": (_set("federation.rounds", 0), "federation.rounds: 0"),
    "rounds as bool": (_set("federation.rounds", True), "federation.rounds: True"),
    "negative lr": (_set("federation.lr", -0.1), "federation.lr: -0.1"),
    "momentum 1": (_set("federation.momentum", 1), "federation.momentum: 1"),
    "batch size as string": (_set("federation.batch_size", "64"), "federation.batch_size: '64'"),
    "eval_every 0": (_set("federation.eval_every", 0), "federation.eval_every: 0"),
    "setting name escaping its folder": (_rename_setting("../evil"), "settings.../evil: '../evil'"),
    "setting name with ..": (_rename_setting("a..b"), "settings.a..b: 'a..b'"),
    "method name with a slash": (_rename_method("a/b"), "methods.a/b: 'a/b'"),
    "unknown split kind": (_set(f"{SPLIT}.kind", "random"), f"{SPLIT}.kind: 'random'"),
    "unknown imbalance kind": (_set(f"{IMBALANCE}.kind", "zipf"), f"{IMBALANCE}.kind: 'zipf'"),
    "classes without k": (_set("settings.lt10-dir1.split", {"kind": "classes"}), f"{SPLIT}.k: (missing)"),
    "k above the classes": (_set("settings.lt10-dir1.split", {"kind": "classes", "k": 11}), f"{SPLIT}.k: 11"),
    "dirichlet without alpha": (_set("settings.lt10-dir1.split", {"kind": "dirichlet"}), f"{SPLIT}.alpha: (missing)"),
    "alpha with iid": (_set("settings.lt10-dir1.split", {"kind": "iid", "alpha": 1.0}), f"{SPLIT}.alpha: 1.0"),
    "k with dirichlet": (_set(f"{SPLIT}.k", 2), f"{SPLIT}.k: 2"),
    "longtail without factor": (_set("settings.lt10-dir1.imbalance", {"kind": "longtail"}),
                                f"{IMBALANCE}.factor: (missing)"),
    "minority_fraction with longtail": (_set(f"{IMBALANCE}.minority_fraction", 0.5),
                                        f"{IMBALANCE}.minority_fraction: 0.5"),
    "minority_fraction 0": (_set("settings.lt10-dir1.imbalance", {"kind": "step", "factor": 2, "minority_fraction": 0}),
                            f"{IMBALANCE}.minority_fraction: 0"),
    "no transfer set for a method needing it": (_set("federation.proxy_per_class", 0),
                                                "federation.proxy_per_class: 0"),
    "transfer set bigger than the data": (_set("federation.proxy_per_class", 1000),
                                          "federation.proxy_per_class: 1000"),
    "negative validation set": (_set("federation.validation_per_class", -1), "federation.validation_per_class: -1"),
    "validation set bigger than the data": (_set("federation.validation_per_class", 200),
                                            "federation.validation_per_class: 200"),
    "deterministic as a string": (_set("deterministic", "yes"), "deterministic: 'yes'"),
    "device tpu": (_set("device", "tpu"), "device: 'tpu'"),
    "amp on cpu": (lambda c: c.update(amp=True, device="cpu"), "amp: True"),
    "empty experiment name": (_set("experiment", " "), "experiment: ' '"),
    "settings not a mapping": (_set("settings", ["lt10-dir1"]), "settings: ['lt10-dir1']"),
    "comparison baseline not a method": (_set("comparisons.baseline", "fedsgd"), "comparisons.baseline: 'fedsgd'"),
    "comparison pair of unknown methods": (_set("comparisons.pairs", [["fedavg", "fedsgd"]]),
                                           "comparisons.pairs[0][1]: 'fedsgd'"),
    "comparison pair of one method": (_set("comparisons.pairs", [["fedavg", "fedavg"]]),
                                      "comparisons.pairs[0]: ['fedavg', 'fedavg']"),
    "unknown secondary metric": (_set("comparisons.secondary", ["nll"]), "comparisons.secondary[0]: 'nll'"),
    "unknown primary metric": (_set("comparisons.primary", "nll"), "comparisons.primary: 'nll'"),
    "comparison level 1": (_set("comparisons.alpha", 1), "comparisons.alpha: 1"),
    "n_max 0": (_set(f"{IMBALANCE}.n_max", 0), f"{IMBALANCE}.n_max: 0"),
    # the finite-number rule: NaN passes every bound check (it compares false both ways), inf passes minimum
    "NaN learning rate": (_set("federation.lr", math.nan), "federation.lr: nan"),
    "infinite imbalance factor": (_set(f"{IMBALANCE}.factor", math.inf), f"{IMBALANCE}.factor: inf"),
    "NaN Dirichlet alpha": (_set(f"{SPLIT}.alpha", math.nan), f"{SPLIT}.alpha: nan"),
    "infinite method option": (_set("methods.fedakd.lambda", math.inf), "methods.fedakd.lambda: inf"),
    "NaN comparison level": (_set("comparisons.alpha", math.nan), "comparisons.alpha: nan"),
    "boolean fraction": (_set("federation.fraction", True), "federation.fraction: True"),
    "unbounded retries": (_set(f"{SPLIT}.max_retries", 10**9), f"{SPLIT}.max_retries: 1000000000"),
    "a billion rounds": (_set("federation.rounds", 10**9), "federation.rounds: 1000000000"),
    # a step setting repeats a base setting at another client step (config/smoke.yaml's lt10-dir1-lr0.02)
    "step of an unknown setting": (_set_step("step_of", "lt10"), f"{STEP}.step_of: 'lt10'"),
    "step of itself": (_set_step("step_of", "lt10-dir1-lr0.02"), f"{STEP}.step_of: 'lt10-dir1-lr0.02'"),
    "step of another pool": (_set_step("split.alpha", 0.5), f"{STEP}.step_of: 'lt10-dir1'"),
    "step seed not in the study": (_set_step("seeds", [0, 7]), f"{STEP}.seeds[1]: 7"),
    "step without its step": (lambda c: c["settings"]["lt10-dir1-lr0.02"].pop("federation"),
                              f"{STEP}.federation: (missing)"),
    "a step without step_of": (_set("settings.lt10-dir1.federation", {"lr": 0.01}),
                               "settings.lt10-dir1.federation: {'lr': 0.01}"),
    "a step's momentum of 1": (_set_step("federation.momentum", 1.0), f"{STEP}.federation.momentum: 1.0"),
    # a setting's own options for a method (settings.<name>.method_options): checked as a method entry is
    "setting options of an unknown method": (_set("settings.lt10-dir1.method_options", {"fedsgd": {"lr": 1}}),
                                             "settings.lt10-dir1.method_options.fedsgd: {'lr': 1}"),
    "setting option unknown to the class": (_set("settings.lt10-dir1.method_options", {"fedakd": {"mu": 1}}),
                                            "settings.lt10-dir1.method_options.fedakd.mu: 1"),
    "setting option out of range": (_set("settings.lt10-dir1.method_options", {"fedakd": {"distill_lr": 0}}),
                                    "settings.lt10-dir1.method_options.fedakd.distill_lr: 0"),
    "setting options changing the class": (_set("settings.lt10-dir1.method_options", {"fedakd": {"method": "fedavg"}}),
                                           "settings.lt10-dir1.method_options.fedakd.method: 'fedavg'"),
    "setting options empty": (_set("settings.lt10-dir1.method_options", {"fedakd": {}}),
                              "settings.lt10-dir1.method_options.fedakd: {}"),
    "step setting options of its own": (_set_step("method_options", {"fedakd": {"distill_lr": 0.01}}),
                                        f"{STEP}.method_options: {{'fedakd': {{'distill_lr': 0.01}}}}"),
}


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_config_is_valid_and_resolves_into_specs(name):
    config = load_config(ROOT / "config" / name)
    specs = [job_spec(config, dataset=d, setting=s, method=m, seed=seed) for d in config["datasets"]
             for s in config["settings"] for m in config["methods"] for seed in setting_seeds(config, s)]
    assert len({spec.key for spec in specs}) == len(specs) > 0
    for spec in specs:  # every default filled: the spec carries the whole federation and every method option
        assert set(spec.federation) == set(load_schema()["properties"]["federation"]["properties"])
        assert spec.partition == partition_spec(config, dataset=spec.dataset, setting=spec.setting, seed=spec.seed)


@pytest.mark.parametrize("mutate, expected", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_value_stops_with_its_key_path_and_value(base, mutate, expected):
    mutate(base)
    with pytest.raises(ConfigError) as caught:
        validate_config(base)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(expected + " -- ") for line in lines), lines


def test_every_problem_is_listed_schema_problems_first(base):
    base["federation"]["rounds"] = 0
    base["seeds"] = [-1]
    base["datasets"] = ["imagenet"]
    lines = str(pytest.raises(ConfigError, validate_config, base).value).splitlines()
    assert [line.split(":")[0] for line in lines] == ["federation.rounds", "seeds[0]", "datasets[0]"]
    assert lines[0] == "federation.rounds: 0 -- an integer >= 1 and <= 100000"


def test_size_limits_are_computed_from_the_dataset(base, monkeypatch):
    # tiny: 100 training examples in 3 classes; 5 per class set aside -> 100 - 15 = 85 left for the clients.
    tiny = SimpleNamespace(name="tiny", num_classes=3, in_shape=(1, 8, 8), n_train=100, n_test=30)
    monkeypatch.setattr(fedakd.data, "DATASETS", {"tiny": tiny})
    base["datasets"] = ["tiny"]
    del base["settings"]["lt10-dir1-lr0.02"]  # a step setting would repeat the split changed below
    base["federation"].update(clients=86, proxy_per_class=5)
    base["settings"]["lt10-dir1"]["split"] = {"kind": "classes", "k": 4}
    problems = str(pytest.raises(ConfigError, validate_config, base).value).splitlines()
    assert problems == [
        "settings.lt10-dir1.split.k: 4 -- at most 3: tiny has 3 classes",
        "federation.clients: 86 -- at most 85: tiny has 100 training examples minus 15 held out "
        "(5 + 0 per class x 3 classes)",
    ]
    base["federation"]["clients"] = 85
    base["settings"]["lt10-dir1"]["split"]["k"] = 3
    validate_config(base)


def test_a_minimal_config_gets_every_default():
    assert validate_config(MINIMAL) == {
        "experiment": "e", "description": "", "seeds": [0], "datasets": ["digits"],
        "tracking_uri": "sqlite:///results/mlflow.db", "data_root": "data", "device": "auto", "amp": False,
        "deterministic": True, "tracking": {"connect_timeout": 10, "request_timeout": 10, "request_retries": 2},
        "settings": {"bal": {"imbalance": {"kind": "none", "shuffle_classes": False},
                             "split": {"kind": "iid", "min_size": 10, "max_retries": 100}}},
        "federation": {"clients": 10, "fraction": 1.0, "rounds": 20, "local_epochs": 1, "batch_size": 64,
                       "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "eval_every": 1, "proxy_per_class": 50,
                       "validation_per_class": 0},
        "model": {"backbone": "auto"},
        "methods": {"avg": {"method": "fedavg"}},
        "comparisons": {"baseline": "fedavg", "focus": "fedakd", "pairs": [], "alpha": 0.05,
                        "primary": "balanced_accuracy",
                        "secondary": ["minority_recall", "worst_class_recall", "macro_f1", "gmean"],
                        "ladder": ["fedavg", "fedavg-ft", "fedakd-noattn", "fedakd"],
                        "ladder_adds": {"fedavg-ft": "the transfer set's labels", "fedakd-noattn": "distillation",
                                        "fedakd": "attention"},
                        "convergence": {"window": 0.2, "threshold": 0.01, "reach": 0.95},
                        "final_window": 0.1, "target": 0.7},
    }


def test_kind_specific_defaults_and_method_option_defaults_are_filled():
    config = copy.deepcopy(MINIMAL)
    config["settings"]["step"] = {"imbalance": {"kind": "step", "factor": 10}, "split": {"kind": "iid"}}
    config["methods"]["kd"] = {"method": "fake-kd", "steps": 3}
    filled = validate_config(config)
    assert filled["settings"]["step"]["imbalance"]["minority_fraction"] == 0.5
    assert "minority_fraction" not in filled["settings"]["bal"]["imbalance"]
    assert filled["methods"]["kd"] == {"method": "fake-kd", "steps": 3, "warm": False}


def test_validate_method_options_fills_defaults_and_rejects_bad_ones():
    assert validate_method_options("fake-kd", {"steps": 3}) == {"steps": 3, "warm": False}
    with pytest.raises(ConfigError, match=r"methods\.fake-kd\.steps: -1 -- an integer >= 0"):
        validate_method_options("fake-kd", {"steps": -1})


def test_validate_config_does_not_mutate_its_input(base):
    before = copy.deepcopy(base)
    filled = validate_config(base)
    assert base == before
    assert filled != before  # defaults were added to the copy


def test_overrides_are_typed_by_yaml(base):
    before = copy.deepcopy(base)
    config = apply_overrides(base, ["federation.fraction=0.5", "seeds=[3, 4]", "amp=false", "federation.rounds=7",
                                    "model.backbone=mlp", "federation.lr=1e-3", "methods.kd.warm=true"])
    assert base == before
    assert config["federation"]["fraction"] == 0.5 and config["seeds"] == [3, 4] and config["amp"] is False
    assert config["federation"]["rounds"] == 7 and config["model"]["backbone"] == "mlp"
    assert config["federation"]["lr"] == 0.001  # YAML 1.2 reading; PyYAML alone would give the string '1e-3'
    assert config["methods"]["kd"]["warm"] is True


def test_overrides_create_mappings_and_match_dotted_names():
    config = copy.deepcopy(MINIMAL)
    config["settings"]["lt.10"] = {"split": {"kind": "dirichlet", "alpha": 1.0}}
    config = apply_overrides(config, ["federation.clients=3", "settings.lt.10.split.alpha=0.1"])
    assert config["federation"] == {"clients": 3}
    assert config["settings"]["lt.10"]["split"]["alpha"] == 0.1


def test_load_config_applies_overrides_then_validates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "federation: {lr: 1e-2}\n")
    config = load_config(path, ["federation.rounds=2"])
    assert config["federation"]["rounds"] == 2 and config["federation"]["lr"] == 0.01
    with pytest.raises(ConfigError, match=r"^federation\.rounds: 0 -- an integer >= 1 and <= 100000$"):
        load_config(path, ["federation.rounds=0"])


@pytest.mark.parametrize("override, expected", [
    ("federation.rounds", "override: 'federation.rounds' -- KEY.PATH=VALUE"),
    ("=5", "override: '=5' -- KEY.PATH=VALUE"),
    ("federation..rounds=5", "override: 'federation..rounds=5' -- KEY.PATH=VALUE"),
    ("seeds.first=1", "override: 'seeds.first=1' -- seeds is [0], not a mapping"),
    ("seeds=[1, 2", "override: 'seeds=[1, 2' -- a YAML value"),
])
def test_malformed_override_is_rejected(override, expected):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(MINIMAL, [override])
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize("text, expected", [
    ("experiment: e\nseeds: [0\n", "invalid YAML"),
    ("experiment: e\n\tseeds: [0]\n", "invalid YAML"),
    ("experiment: e\nexperiment: f\n", "found duplicated key 'experiment' at line 2, column 1"),
    ("- just a list\n", "['just a list'] -- a YAML mapping"),
    ("", "None -- a YAML mapping"),
])
def test_unreadable_config_file_is_named(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yaml: config file not found"):
        load_config(tmp_path / "nowhere.yaml")


def test_job_spec_is_what_a_job_depends_on(base):
    config = validate_config(base)
    avg = job_spec(config, dataset="digits", setting="lt10-dir1", method="fedavg", seed=1)
    assert avg == job_spec(config, dataset="digits", setting="lt10-dir1", method="fedavg", seed=1)
    assert avg.method_class == "fedavg" and avg.method_options == {} and avg.seed == 1
    assert avg.setting_params == config["settings"]["lt10-dir1"]
    assert avg.key == "digits/lt10-dir1/fedavg/seed1"
    kd = job_spec(config, dataset="digits", setting="lt10-dir1", method="kd", seed=1)
    assert kd.method_options == {"steps": 10, "warm": False}
    assert kd.digest != avg.digest and kd.partition == avg.partition

    # Changing one method's option changes that method's jobs only; a federation value changes all,
    # and the partition only when it depends on it.
    changed = validate_config(apply_overrides(base, ["methods.kd.steps=20"]))
    assert job_spec(changed, dataset="digits", setting="lt10-dir1", method="fedavg", seed=1) == avg
    assert job_spec(changed, dataset="digits", setting="lt10-dir1", method="kd", seed=1) != kd
    slower = validate_config(apply_overrides(base, ["federation.rounds=4"]))
    slow_avg = job_spec(slower, dataset="digits", setting="lt10-dir1", method="fedavg", seed=1)
    assert slow_avg != avg and slow_avg.partition == avg.partition
    held_out = validate_config(apply_overrides(base, ["federation.validation_per_class=3"]))
    assert partition_spec(held_out, dataset="digits", setting="lt10-dir1", seed=1).digest != avg.partition.digest


def test_partition_spec_holds_exactly_what_makes_a_partition(base):
    config = validate_config(base)
    spec = partition_spec(config, dataset="digits", setting="lt10-dir1", seed=0)
    assert spec.to_dict() == {
        "dataset": "digits", "seed": 0, "clients": 4, "proxy_per_class": 5, "validation_per_class": 0,
        "imbalance": {"kind": "longtail", "factor": 10, "shuffle_classes": False},
        "split": {"kind": "dirichlet", "alpha": 1.0, "min_size": 10, "max_retries": 100},
    }
    assert PartitionSpec.from_dict(spec.to_dict()) == spec and len(spec.digest) == 64


def test_job_spec_is_immutable_and_survives_a_round_trip(base):
    import pickle

    config = validate_config(base)
    job = job_spec(config, dataset="digits", setting="lt10-dir1", method="kd", seed=0)
    with pytest.raises(TypeError, match="read-only"):
        job.federation["rounds"] = 99
    with pytest.raises(TypeError, match="read-only"):
        job.method_options.update(steps=99)
    with pytest.raises(AttributeError):
        job.seed = 3
    assert config["federation"]["rounds"] == 3 and config["methods"]["kd"]["steps"] == 10
    assert JobSpec.from_dict(job.to_dict()) == job  # as a Snakemake param: a plain dict, rebuilt unchecked
    assert pickle.loads(pickle.dumps(job)) == job
    assert job.to_dict()["federation"]["rounds"] == 3 and type(job.to_dict()["federation"]) is dict


@pytest.mark.parametrize("key, value", [
    ("dataset", "mnist"), ("setting", "iid"), ("method", "fedsgd"), ("seed", 7), ("seed", "0"), ("seed", True),
])
def test_job_spec_rejects_what_the_config_lacks(base, key, value):
    config = validate_config(base)
    job = dict(dataset="digits", setting="lt10-dir1", method="fedavg", seed=1) | {key: value}
    with pytest.raises(ConfigError, match=f"^{key}: {value!r} -- one of the config's {key}s"):
        job_spec(config, **job)


def test_config_digest_is_sha256_of_canonical_json():
    # sha256 of the bytes '{"a":1,"b":[2,3]}'
    expected = "efbd0040190fb0871831e606c581f8a66db79d8e2bb836745a70051306956070"
    assert config_digest({"b": [2, 3], "a": 1}) == config_digest({"a": 1, "b": [2, 3]}) == expected
    assert hashlib.sha256(b'{"a":1,"b":[2,3]}').hexdigest() == expected


def test_schema_is_valid_2020_12_and_documents_every_property():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)

    def undocumented(node, path=()):
        """Properties without a description, outside if-conditions and 'not allowed here' ({not: {}}) stubs."""
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "if" not in path and "not" not in sub and "description" not in sub:
                    yield ".".join(map(str, path + (name,)))
            for key, sub in node.items():
                yield from undocumented(sub, path + (key,))
        elif isinstance(node, list):
            for index, sub in enumerate(node):
                yield from undocumented(sub, path + (index,))

    assert list(undocumented(schema)) == []


def test_snakemake_validate_accepts_the_schema_and_fills_the_same_defaults(base):
    from snakemake.utils import validate

    by_snakemake = copy.deepcopy(base)
    validate(by_snakemake, str(SCHEMA_RESOURCE))
    ours = validate_config(base)
    # Snakemake cannot see the method classes' own options, so their defaults are ours alone.
    assert {**by_snakemake, "methods": None} == {**ours, "methods": None}
    assert by_snakemake["methods"] == base["methods"]


def test_a_step_setting_trains_its_base_pool_at_its_own_step(base):
    config = validate_config(base)
    step = job_spec(config, dataset="digits", setting="lt10-dir1-lr0.02", method="fedavg", seed=1)
    headline = job_spec(config, dataset="digits", setting="lt10-dir1", method="fedavg", seed=1)
    assert step.federation == {**headline.federation, "lr": 0.02}
    assert step.partition == headline.partition  # the same partition spec: the same pool, clients and seed
    base["settings"]["lt10-dir1-lr0.02"]["seeds"] = [1]
    config = validate_config(base)
    with pytest.raises(ConfigError, match="one of setting lt10-dir1-lr0.02's seeds: 1"):
        job_spec(config, dataset="digits", setting="lt10-dir1-lr0.02", method="fedavg", seed=0)


def test_a_setting_s_method_options_reach_its_jobs_and_its_step_settings_and_no_other_job(base):
    before = validate_config(base)
    base["settings"]["lt10-dir1"]["method_options"] = {"fedakd": {"distill_lr": 3e-5, "distill_steps": 20}}
    config = validate_config(base)
    spec = job_spec(config, dataset="digits", setting="lt10-dir1", method="fedakd", seed=0)
    old = job_spec(before, dataset="digits", setting="lt10-dir1", method="fedakd", seed=0)
    assert spec.method_options == {**old.method_options, "distill_lr": 3e-5, "distill_steps": 20}
    step = job_spec(config, dataset="digits", setting="lt10-dir1-lr0.02", method="fedakd", seed=0)
    assert step.method_options == spec.method_options  # a step setting repeats its base, options included
    # every other job keeps its spec (so a study that adds a choice retrains only the jobs it changes)
    for setting, method in (("lt10-dir1", "fedavg"), ("lt10-dir1", "fedakd-noattn"), ("lt10-dir1-lr0.02", "fedavg")):
        assert job_spec(config, dataset="digits", setting=setting, method=method, seed=0).digest == \
            job_spec(before, dataset="digits", setting=setting, method=method, seed=0).digest
    assert "method_options" not in spec.setting_params
    # the report's methods table gives the setting's row beside the method's
    from fedakd.reporting.report import _setup

    rows = [line for line in _setup(config, []) if line.startswith("| fedakd")]
    assert rows[0] == "| fedakd | fedakd | distill_steps = 10 |"
    assert "| fedakd in lt10-dir1 | fedakd | distill_steps = 20, distill_lr = 3e-05 |" in rows
    # and the cost estimate counts the setting's server steps: 20 where the study's entry has 10
    from fedakd.config.cost import server_examples

    assert server_examples(config, "fedakd", "lt10-dir1") == 2 * server_examples(before, "fedakd", "lt10-dir1")


def test_the_cost_estimate_counts_the_imbalanced_pool():
    from fedakd.config.cost import EXAMPLES_PER_SECOND, job_hours, pool_size

    config = load_config(ROOT / "config" / "converged.yaml", ["federation.rounds=10", "federation.local_epochs=1"])
    # the method card's long tail at imbalance 100 on Fashion-MNIST (n_max 6000): 6000, 3596, 2156, 1292, 774,
    # 464, 278, 166, 100, 60 = 14,886; with 50 a class set aside for the transfer set, n_max = 5950
    assert pool_size({**config, "federation": {**config["federation"], "proxy_per_class": 0}}, "fashion-mnist",
                     "lt100-dir0.5") == 14886
    assert pool_size(config, "fashion-mnist", "lt100-dir0.5") == 14762  # 5950, 3566, 2138, ..., 99, 59
    # 10 rounds x 1 epoch x 14,762 examples, and fedakd's 100 server steps of 64 a round
    assert job_hours(config, "fashion-mnist", "fedakd", "lt100-dir0.5") == pytest.approx(
        (10 * 14762 + 10 * 100 * 64) / EXAMPLES_PER_SECOND / 3600)


def test_the_cost_estimate_counts_what_a_resampling_method_trains_on(monkeypatch):
    from baselines.resampling import ResampledFedAvg
    from fedakd import registry
    from fedakd.config import cost

    resamplers = {name: registry.get_method(name) for name in registry.method_names()
                  if issubclass(registry.get_method(name), ResampledFedAvg)}
    assert {name: (cls.sampling_type, cls.options_schema["sampling_strategy"]["default"])
            for name, cls in resamplers.items()} == cost.RESAMPLERS  # the table the estimate reads, without a class

    # three clients' class counts, by hand: SMOTE raises a client's classes to its largest (4+4 = 8; 9; a client
    # of one class keeps its 5): 22 of 20 examples; RUS lowers them to its smallest (2+2 = 4; 9; 5): 18 of 20
    monkeypatch.setattr(cost, "_client_class_counts", lambda dataset, spec: ((4, 2, 0), (3, 3, 3), (5, 0, 0)))
    config = load_config(ROOT / "config" / "config.yaml")
    config["methods"] = {"smote": {"method": "fedavg-smote", "sampling_strategy": "not majority"},
                         "rus": {"method": "fedavg-rus"}, "avg": {"method": "fedavg"}}
    factor = {m: cost.resampling_factor(config, "fashion-mnist", "lt10-dir0.5", m) for m in config["methods"]}
    assert factor == {"smote": pytest.approx(22 / 20), "rus": pytest.approx(18 / 20), "avg": 1.0}
    assert cost.job_hours(config, "fashion-mnist", "smote", "lt10-dir0.5") == pytest.approx(
        cost.job_hours(config, "fashion-mnist", "avg", "lt10-dir0.5") * 22 / 20)  # fedavg has no server steps


def test_a_partitions_class_counts_depend_on_the_class_sizes_not_on_which_examples():
    """What the cost estimate relies on to count a resampling client's examples without reading the data
    (fedakd.config.cost._client_class_counts): the same class sizes in another order, the same counts."""
    import numpy as np

    from fedakd.config import partition_spec
    from fedakd.data import load_train_labels
    from fedakd.jobs import build_partition

    config = load_config(ROOT / "config" / "smoke.yaml")
    spec = partition_spec(config, dataset="digits", setting="lt10-dir1", seed=1)
    labels = load_train_labels("digits", "data")
    counts = []
    for order in (labels, np.sort(labels), np.random.default_rng(0).permutation(labels)):
        made = build_partition(spec, "data", labels=order)
        counts.append([np.bincount(order[idx], minlength=10).tolist() for idx in made.client_indices])
    assert counts[0] == counts[1] == counts[2] and len(counts[0]) == 4


def test_the_cost_estimate_counts_the_tuning_stage():
    from fedakd.config.cost import job_hours, study_hours, tuning_hours

    config = load_config(ROOT / "config" / "converged-tuning.yaml")
    assert tuning_hours(load_config(ROOT / "config" / "converged.yaml")) == 0  # no tune block, no tuning stage
    # every method but fedavg has 3 candidates, fedavg 1: 16 candidates x 2 tuning seeds per pool
    per_pool = {s: sum(job_hours(config, "fashion-mnist", m, s) * (1 if m == "fedavg" else 3) * 2
                       for m in config["methods"]) for s in config["settings"]}
    assert tuning_hours(config) == pytest.approx(sum(per_pool.values()))
    # 16 tuning jobs against 8 evaluation seeds per method: two thirds of the evaluation jobs' cost
    assert tuning_hours(config) == pytest.approx(study_hours(config) * 2 * 16 / (8 * 6), rel=0.15)


def test_the_options_a_method_changes_and_the_options_listing():
    from fedakd.config.methods import changed_options, describe_options, validate_method_options

    filled = validate_method_options("fedakd", {"attention": False, "distill_steps": 10})
    assert len(filled) > 2  # the schema's defaults filled in
    assert changed_options("fedakd", filled) == {"attention": False, "distill_steps": 10}
    assert changed_options("fedakd", validate_method_options("fedakd", {})) == {}
    assert changed_options("not-registered", {"x": 1}) == {"x": 1}
    listing = describe_options(["fedavg-smote", "fedavg"])
    assert "| k_neighbors | `5` | SMOTE's neighbours" in listing and "## fedavg\n\nNo options." in listing
    assert all(f"| {option} |" in describe_options(["fedakd"]) for option in registry.get_method("fedakd").options_schema)
