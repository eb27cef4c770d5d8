"""The MLflow UI shows what a pretraining run and its evaluation logged, in a real browser.

A local tracking server (SQLite store, artifacts served by the server) receives a 2-epoch
``dclr pretrain`` of the debug preset and a ``dclr evaluate classify`` of its encoder; headless
Chromium then opens the run page the pretraining printed and checks that a param of the run is
listed, that the per-epoch training loss is drawn as a line chart, and that the evaluation's
ROC plot (``plots/rejection.png``, background rejection against signal efficiency) loads in the
artifact viewer. Screenshots of the three views go to ``$DCLR_TEST_ARTIFACTS`` (default
``test-artifacts/browser/`` in the repository).

Needs /usr/bin/chromium and /usr/bin/chromedriver (``make browser-deps``); without them the test
is skipped, or fails when ``DCLR_REQUIRE_BROWSER=1`` (``make test-browser``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.ray]
log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without these flags headless Chromium waits on the network (updates, sync, QUIC) here.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1100",
)
SERVER_START_S = 180.0
UI_WAIT_S = 90.0
KNOWN_PARAM = ("train.epochs", "2")  # the debug preset's
LOSS_METRIC = "train_loss"
ROC_PLOT = "plots/rejection.png"
REPO = Path(__file__).resolve().parents[2]


def _screenshots() -> Path:
    path = Path(os.environ.get("DCLR_TEST_ARTIFACTS") or REPO / "test-artifacts" / "browser")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> str | None:
    """What of Chromium, its driver and Selenium is missing (None: nothing). The test is
    skipped without them, unless ``DCLR_REQUIRE_BROWSER`` is set (to anything but 0): then it
    fails."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package")
    if not missing:
        return None
    reason = f"no browser for the MLflow UI test: {', '.join(missing)} missing (make browser-deps)"
    if os.environ.get("DCLR_REQUIRE_BROWSER", "") in ("", "0"):
        pytest.skip(reason)
    return f"DCLR_REQUIRE_BROWSER is set, but {reason}"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def wait_ready(self) -> None:
        """Until ``/health`` answers; fails if the server exits or takes too long."""
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"mlflow server exited ({self.process.returncode}):\n{self.tail()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not up within {SERVER_START_S:.0f} s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Log how long a step took (shown when the test fails, or with --log-cli-level=INFO)."""
    start = time.monotonic()
    yield
    log.info("%s: %.1f s", name, time.monotonic() - start)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[Server]:
    """An MLflow tracking server on a free local port, started now (it needs tens of seconds
    to come up: ``Server.wait_ready``) and killed with its process group at the end."""
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    log_file = store / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts",
    ]  # fmt: skip
    # No background job runner: it is not needed here and costs processes and start-up time.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield Server(f"http://127.0.0.1:{port}", process, log_file)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Workers of the server that outlived their parent are in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``dclr ARGV`` in this process (the shared Ray session); its stdout."""
    from distributed_clr.cli import main

    capsys.readouterr()
    with _phase(f"dclr {argv[0]}"):
        code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _ui_url(printed: str, server: Server) -> tuple[str, str]:
    """The run page a command printed, and the run id in it."""
    pattern = re.escape(server.url) + r"/#/experiments/(\d+)/runs/([0-9a-f]{32})"
    found = re.search(rf"^  MLflow run: ({pattern})$", printed, re.MULTILINE)
    assert found, printed
    return found.group(1), found.group(3)


def _png_width(path: Path) -> int:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width: int = struct.unpack(">I", header[16:20])[0]
    return width


@contextlib.contextmanager
def _chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(UI_WAIT_S)
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, url: str) -> Any:
    """Load a page of the UI; a wait on it. The assistant side panel, if shown, is closed
    (it only takes room from the screenshots)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, UI_WAIT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[role='tablist'], [role='tab']"))
    for close in driver.find_elements(
        By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"
    ):
        with contextlib.suppress(Exception):
            close.click()
    return wait


def _click(wait: Any, xpath: str, what: str) -> None:
    """Click the first shown element at ``xpath`` once it takes the click (React may still be
    laying the page out when it first appears)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    def clicked(driver: Any) -> bool:
        for element in driver.find_elements(By.XPATH, xpath):
            try:
                if element.is_displayed():
                    element.click()
                    return True
            except WebDriverException:  # not interactable yet, or replaced by a re-render
                continue
        return False

    wait.until(clicked, message=f"could not click {what}")


def _search(driver: Any, wait: Any, placeholder: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"input[placeholder='{placeholder}']")
    )[0]
    box.clear()
    box.send_keys(text)


def _check_params(driver: Any, run_url: str, screenshot: Path) -> None:
    """The Overview tab lists the run's params: the known one with its value."""
    from selenium.webdriver.common.by import By

    wait = _open(driver, run_url)
    name, value = KNOWN_PARAM
    _search(driver, wait, "Search parameters", name)
    row = f"//div[@role='row'][.//*[normalize-space(text())='{name}']]"
    cell = wait.until(
        lambda d: d.find_elements(By.XPATH, f"{row}//*[@title='{value}']"),
        message=f"param {name} = {value} not shown",
    )[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    assert cell.text == value
    driver.save_screenshot(str(screenshot))


def _check_loss_chart(driver: Any, run_url: str, screenshot: Path) -> None:
    """The Model metrics tab draws the per-epoch loss as a line (a Plotly line trace)."""
    from selenium.webdriver.common.by import By

    wait = _open(driver, f"{run_url}/model-metrics")
    _search(driver, wait, "Search metric charts", LOSS_METRIC)
    card = (
        f"//h4[@title='{LOSS_METRIC}']/ancestor::div[.//div[contains(@class, 'js-plotly-plot')]][1]"
    )
    lines = wait.until(
        lambda d: [
            path
            for path in d.find_elements(
                By.XPATH, f"{card}//*[contains(@class, 'scatterlayer')]//*[name()='path']"
            )
            if "js-line" in (path.get_attribute("class") or "")
            and len(path.get_attribute("d") or "") > 2
        ],
        message=f"no line chart of {LOSS_METRIC}",
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", lines[0])
    time.sleep(0.5)  # Plotly's transition
    driver.save_screenshot(str(screenshot))


def _check_artifact_image(driver: Any, run_url: str, width: int, screenshot: Path) -> None:
    """The Artifacts tab shows the ROC plot: the image loads at the logged file's width."""
    from selenium.webdriver.common.by import By

    wait = _open(driver, f"{run_url}/artifacts")
    for entry in ROC_PLOT.split("/"):  # open the folders, then select the file
        _click(wait, f"//*[normalize-space(text())='{entry}']", f"'{entry}' in the artifact tree")
    wait.until(
        lambda d: d.find_elements(By.XPATH, f"//*[normalize-space(text())='{ROC_PLOT}']"),
        message=f"the preview of {ROC_PLOT} did not open",
    )
    loaded = wait.until(
        lambda d: d.execute_script(
            "return Array.from(document.images)"
            ".filter(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)"
            ".map(i => i.naturalWidth)"
        ),
        message=f"the image of {ROC_PLOT} did not load",
    )
    assert width in loaded, (width, loaded)
    driver.save_screenshot(str(screenshot))


def test_the_ui_shows_a_pretraining_run_and_its_evaluation(
    browser: str | None,
    mlflow_server: Server,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if browser is not None:
        pytest.fail(browser)
    # The data is made while the server starts.
    with _phase("data (the shared fixtures)"):
        prepared: Path = request.getfixturevalue("prepared")
    with _phase("the rest of the server's start"):
        mlflow_server.wait_ready()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    common = ["--preset", "debug", "--set", "tracking.system_metrics=false"]

    printed = _run(
        [
            "pretrain", "--data", str(prepared), "--run-name", "browser", "--workers", "1",
            "--set", f"ray.storage_path={tmp_path / 'ray_results'}", *common,
        ],
        capsys,
    )  # fmt: skip
    pretrain_url, run_id = _ui_url(printed, mlflow_server)
    embeddings, evaluation = tmp_path / "embeddings", tmp_path / "classify"
    _run(
        [
            "embed", "--run", run_id, "--data", str(prepared), "--out", str(embeddings),
            "--split", "train", "--split", "test", *common,
        ],
        capsys,
    )  # fmt: skip
    printed = _run(
        [
            "evaluate", "classify", "--embeddings", str(embeddings), "--data", str(prepared),
            "--out", str(evaluation), "--run", run_id, "--feature-set", "latent",
            "--set", "evaluate.classifiers=[lct]", "--set", "evaluate.repeats=1",
            "--set", "evaluate.bootstrap=0", "--set", "evaluate.trans_bc.enabled=false",
            *common,
        ],
        capsys,
    )  # fmt: skip
    evaluation_url, _ = _ui_url(printed, mlflow_server)

    shots = _screenshots()
    width = _png_width(evaluation / ROC_PLOT)
    with _chromium(tmp_path / "chromium-profile") as driver:
        with _phase("UI: params"):
            _check_params(driver, pretrain_url, shots / "run-overview.png")
        with _phase("UI: loss chart"):
            _check_loss_chart(driver, pretrain_url, shots / "loss-chart.png")
        with _phase("UI: ROC plot"):
            _check_artifact_image(driver, evaluation_url, width, shots / "roc-artifact.png")
