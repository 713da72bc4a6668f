"""Every method on Flower: the same partition, initial weights, client sampling and batch order in Flower's
Simulation Runtime and in our engine give the same model, and a real federation on loopback (a SuperLink, three
SuperNodes each holding only its own client's data, ``flwr run``) gives the model of the simulation.

Tolerance: both engines run the same float32 operations in the same order (the server step is the engine's
own; the client steps are the methods' own hooks; aggregation is the engine's float64 accumulation), with one
torch thread per process, so the weights agree bit for bit on one machine; 1e-6 leaves room for another BLAS
kernel in a worker process (rounding of the last bits), far below what a changed random stream or update order
would move (tests/test_regression.py). Metrics must agree to the third decimal, costs exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("flwr", reason="the flower extra is not installed: pip install -e '.[flower]' (.ci/run does)")
pytest.importorskip("ray", reason="Flower's simulation extra is not installed: pip install -e '.[flower]'")

from fedakd.cli import main  # noqa: E402
from tests.helpers import free_port  # noqa: E402

pytestmark = pytest.mark.slow
JOB = ("--dataset", "digits", "--setting", "lt10-dir1", "--seed", "0")
#: fedavg, fedprox, fedakd, and two methods with extra exchanges: CCVR asks its clients for feature statistics
#: after the last round, CReFF's clients upload classifier gradients computed with the server's classifier.
METHODS = ("fedavg", "fedprox", "fedakd", "fedavg-ccvr", "creff")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    """A 3-client, 2-round digits config and its saved partition."""
    folder = tmp_path_factory.mktemp("flower")
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "smoke.yaml").read_text())
    config.update(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", data_root=str(folder / "data"))
    config["federation"].update(clients=3, rounds=2)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["partition", "--config", str(folder / "config.yaml"), *JOB, "--out", str(folder / "part")]) == 0
    return folder


def flower_job(folder: Path, method: str, out: Path, track: bool = False):
    from fedakd.flower.settings import FlowerJob

    return FlowerJob(config=str(folder / "config.yaml"), dataset="digits", setting="lt10-dir1", method=method, seed=0,
                     partition=str(folder / "part"), out=str(out), track=track)


@pytest.fixture(scope="module")
def simulated(federation):
    """Every method of METHODS in one Flower simulation (Ray starts once) and in the engine."""
    from fedakd.flower.simulation import simulate

    started = time.perf_counter()
    simulate([flower_job(federation, m, federation / "flower" / m) for m in METHODS], clients=3)
    seconds = time.perf_counter() - started
    for method in METHODS:
        assert main(["train", "--config", str(federation / "config.yaml"), *JOB, "--method", method, "--partition",
                     str(federation / "part"), "--out", str(federation / "engine" / method), "--no-track",
                     "--threads", "1"]) == 0
    return federation, seconds


def results(folder: Path):
    import torch

    return json.loads((folder / "metrics.json").read_text()), torch.load(folder / "model.pt")["weights"]


@pytest.mark.parametrize("method", METHODS)
def test_a_method_on_flower_gives_the_engines_model(simulated, method):
    folder, seconds = simulated
    engine, engine_weights = results(folder / "engine" / method)
    flower, flower_weights = results(folder / "flower" / method)
    largest = float((engine_weights - flower_weights).abs().max())
    metric_gap = max(abs(engine["final"][k] - flower["final"][k]) for k in engine["final"]
                     if isinstance(engine["final"][k], float))
    print(f"PARITY {method}: largest weight difference {largest:.3g}, largest final-metric difference "
          f"{metric_gap:.3g}; simulation of {len(METHODS)} methods {seconds:.1f} s")
    assert largest <= 1e-6 and metric_gap < 5e-4
    assert flower["cost"] == engine["cost"]  # steps and bytes, every extra exchange included
    assert flower["engine"] == "flower" and engine["engine"] == "fedakd"


def test_a_method_that_needs_every_clients_data_at_once_is_refused(federation, capsys):
    code = main(["flower", "simulate", "--config", str(federation / "config.yaml"), *JOB, "--method", "centralised",
                 "--partition", str(federation / "part"), "--out", str(federation / "centralised")])
    err = capsys.readouterr().err
    assert code == 2 and "prepares every client's data at once" in err and "Traceback" not in err


# -- a real federation on loopback ---------------------------------------------------------------------------
def start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, f"{log.name}: no {text!r} in {timeout:g} s: {log.read_text()[-3000:]}"
        time.sleep(0.5)


def stop_all(processes: list[subprocess.Popen]) -> list[int]:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    return [process.wait(timeout=60) for process in processes]


def test_a_loopback_federation_gives_the_simulations_model_and_logs_its_run(simulated, tmp_path):
    folder, _ = simulated
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "FLWR_HOME": str(tmp_path / "flwr")}
    link_port, node_ports = free_port(), [free_port() for _ in range(3)]
    (tmp_path / "flwr").mkdir()
    (tmp_path / "flwr" / "config.toml").write_text(
        f'[superlink]\ndefault = "fedakd"\n\n[superlink.fedakd]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n')
    for client in range(3):  # each SuperNode gets its own client's examples and nothing else
        assert main(["flower", "shard", "--config", str(folder / "config.yaml"), *JOB, "--partition",
                     str(folder / "part"), "--client", str(client), "--out", str(tmp_path / f"shard{client}.pt")]) == 0
    run_folder = tmp_path / "run"
    assert main(["flower", "app", "--config", str(folder / "config.yaml"), *JOB, "--method", "fedakd", "--partition",
                 str(folder / "part"), "--run-folder", str(run_folder), "--out", str(tmp_path / "app")]) == 0
    started = time.perf_counter()
    processes = [start([str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port),
                        "--disable-runtime-dependency-installation"], tmp_path / "superlink.log", env)]
    try:
        wait_for(tmp_path / "superlink.log", "Application startup complete", processes[0])
        for client, port in enumerate(node_ports):
            processes.append(start([str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                                    "--host", "127.0.0.1", "--port", str(port), "--node-config",
                                    f"partition-id={client} shard='{tmp_path / f'shard{client}.pt'}'"],
                                   tmp_path / f"supernode{client}.log", env))
        run = subprocess.run([str(BIN / "flwr"), "run", str(tmp_path / "app"), "fedakd", "--stream"], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        seconds = time.perf_counter() - started
    finally:
        codes = stop_all(processes)
    print(f"LOOPBACK federation (SuperLink, 3 SuperNodes, 2 rounds of fedakd): {seconds:.1f} s; exit codes {codes}")
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    assert not [line for line in listening.splitlines() if f":{link_port} " in line]  # every process has ended
    deployed, deployed_weights = results(run_folder)
    simulation, simulation_weights = results(folder / "flower" / "fedakd")
    assert float((deployed_weights - simulation_weights).abs().max()) <= 1e-6
    assert deployed["history"] == simulation["history"] and deployed["engine"] == "flower"
    from mlflow.tracking import MlflowClient

    record = json.loads((run_folder / "mlflow.json").read_text())
    logged = MlflowClient(tracking_uri=record["tracking_uri"]).get_run(record["run_id"])
    assert logged.info.status == "FINISHED" and logged.data.tags["engine"] == "flower"
