"""The MLflow UI as a user sees it, in a real browser: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) over the smoke pipeline's store.

MLflow 3.17's UI chooses between its GenAI and model-training views with a toggle of its own, remembered
per browser (the experiment-kind tag the suite sets is not consulted by this version); the links the suite
prints (`make ui`) carry workflowType=machine_learning, which is what this test opens. Screenshots go to
results/ui-screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from fedakd.tracking import experiment_link
from tests.helpers import free_port, pipeline_store, start_mlflow, stop

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "results" / "ui-screenshots"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
#: Flags a headless Chromium needs here (root, no GPU, no network beyond loopback).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1600,2600")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="no headless Chromium on this machine: apt-get install chromium chromium-driver "
                              "(.ci/run installs them)"),
]


@pytest.fixture(scope="module")
def ui(smoke_run):
    """`mlflow ui` on a free loopback port over the smoke pipeline's store."""
    workdir, first = smoke_run
    assert first.returncode == 0, first.stderr[-3000:]
    port = free_port()
    server = start_mlflow("ui", port, "--backend-store-uri", pipeline_store(workdir),
                          "--workers", "1", timeout=120)
    base = f"http://127.0.0.1:{port}"
    yield base, workdir
    stop(server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for_text(driver, texts: list[str], timeout: float = 60) -> str:
    """The page's text once it holds every one of ``texts`` (the UI renders after its API calls)."""
    deadline = time.time() + timeout
    while True:
        body = driver.find_element("tag name", "body").text
        if all(text in body for text in texts) or time.time() > deadline:
            return body
        time.sleep(0.5)


def wait_for_element(driver, xpath: str, timeout: float = 60):
    """The first element at ``xpath`` once the page has drawn it."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located(("xpath", xpath)))


def shoot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def smoke_jobs() -> list[tuple[str, int]]:
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    return [(method, seed) for method in config["methods"] for seed in config["seeds"]]


def test_the_experiment_opens_on_its_training_runs_with_every_method_and_the_partition(ui, browser):
    base, workdir = ui
    experiment = json.loads((workdir / "results" / "mlflow" / "experiment.json").read_text())["experiment_id"]
    browser.get(experiment_link(base, experiment))  # the address `make ui` prints
    names = [f"{method} | lt10-dir1 | seed {seed} | digits" for method, seed in smoke_jobs()]
    body = wait_for_text(browser, names)
    shoot(browser, "experiment")
    assert "/runs" in browser.current_url, browser.current_url  # the runs table, not the GenAI overview
    assert "Run Name" in body and "Dataset" in body and "Source" in body
    missing = [name for name in names if name not in body]
    assert not missing, missing  # every job's run, named method first
    assert "digits/lt10-dir1/seed0 (" in body  # the partition as the runs' dataset
    assert "summary | tables, figures and report" in body  # the study's summary run


def test_a_run_page_charts_balanced_accuracy_and_shows_its_dataset(ui, browser):
    base, workdir = ui
    record = json.loads((workdir / "results/runs/digits/lt10-dir1/fedakd/seed0/mlflow.json").read_text())
    run_page = f"{base}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"
    browser.get(f"{run_page}/model-metrics?workflowType=machine_learning")
    # MLflow lists named metric sections (the diagnostics' diag/...) before the unnamed one that holds the
    # headline metrics, so a user finds the learning curve through the tab's chart search, as this test does.
    search = wait_for_element(browser, "//input[@placeholder='Search metric charts']")
    search.send_keys("balanced_accuracy")
    body = wait_for_text(browser, ["balanced_accuracy", "Step"])
    charts = browser.find_elements("xpath", "//*[normalize-space(text())='balanced_accuracy']"
                                            "/ancestor::*[.//*[local-name()='svg']][1]//*[local-name()='svg']")
    shoot(browser, "run-metrics")
    assert "balanced_accuracy" in body and charts, "no balanced_accuracy chart on the run page"
    browser.get(f"{run_page}?workflowType=machine_learning")  # the run's overview: its dataset and source
    body = wait_for_text(browser, ["digits/lt10-dir1/seed0"])
    shoot(browser, "run-overview")
    assert "digits/lt10-dir1/seed0" in body and "Training" in body  # the dataset input, used for training
    metrics = json.loads((workdir / "results/runs/digits/lt10-dir1/fedakd/seed0/metrics.json").read_text())
    assert "snakemake workflow" in body and metrics["git_commit"][:7] in body  # the source: what ran, which commit


def test_the_html_report_and_the_summary_run_show_the_same_figures(ui, browser):
    """Snakemake's HTML report and the MLflow summary run's artifacts list one set of figures, the verdict's
    overview first among what a reader opens; both pages are screenshotted for a person to look at."""
    from mlflow.tracking import MlflowClient

    from tests.test_pipeline import output, snakemake

    base, workdir = ui
    pngs = {png.name for png in (workdir / "reports" / "figures").glob("*.png")}
    assert "verdict_overview_digits.png" in pngs
    html = workdir / "reports" / "report.html"
    if not html.exists():  # the pipeline test builds it when it runs first in this group
        built = snakemake(workdir, "--report", str(html))
        assert built.returncode == 0, output(built)[-3000:]
    browser.get(html.as_uri())
    wait_for_text(browser, ["Figures: digits"])
    for step in ("Figures: digits", "all settings"):  # the report's own menu, as a reader clicks through it
        wait_for_element(browser, f"//*[normalize-space(text())='{step}']").click()
    row = wait_for_element(browser, "//td[normalize-space(text())='verdict_overview']/ancestor::tr[1]")
    row.find_element("xpath", ".//a[@iconname='eye']").click()  # show the figure
    image = wait_for_element(browser, "//img[contains(@src, 'filename=verdict_overview_digits')]")
    time.sleep(1)
    shoot(browser, "snakemake-report-verdict-overview")
    assert image.size["width"] > 300, image.size
    page = html.read_text()
    in_report = {name for name in pngs if name in page}
    assert in_report == pngs, pngs - in_report

    summary = json.loads((workdir / "results" / "mlflow" / "summary.json").read_text())
    client = MlflowClient(pipeline_store(workdir))
    logged = {Path(item.path).name for item in client.list_artifacts(summary["summary_run_id"], "figures")}
    assert logged == pngs
    experiment = summary["experiment_id"]
    browser.get(f"{base}/#/experiments/{experiment}/runs/{summary['summary_run_id']}/artifacts/figures/"
                "verdict_overview_digits.png?workflowType=machine_learning")
    body = wait_for_text(browser, ["verdict_overview_digits.png", "forest_digits_lt10-dir1.png"])
    wait_for_element(browser, "//img[starts-with(@src, 'blob:')]")  # the artifact viewer draws the file as a blob
    time.sleep(1)  # the image itself loads after the page's text
    shoot(browser, "summary-run-verdict-overview")
    assert "verdict_overview_digits.png" in body and "forest_digits_lt10-dir1.png" in body
    widths = [image.size["width"] for image in browser.find_elements("xpath", "//img[starts-with(@src, 'blob:')]")]
    assert max(widths) > 300, widths
