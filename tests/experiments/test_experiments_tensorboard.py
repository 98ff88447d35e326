"""A real TensorBoard server on the flagship's runs: every run is listed, and the supervised and RL curves of the
shared test-accuracy tag come back through its HTTP API with the values the results file holds."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from lab import tags

STARTUP_TIMEOUT_S = 60


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard(flagship_run):
    """``(base_url, logdir)`` of a TensorBoard server on a free loopback port, stopped (by its pid) afterwards."""
    executable = Path(sys.executable).with_name("tensorboard")
    process = subprocess.Popen(
        [str(executable), "--logdir", str(flagship_run), "--host", "127.0.0.1", "--port", "0", "--load_fast", "false",
         "--reload_interval", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while url is None and time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
            url = match.group(1) if match else None
        assert url, f"TensorBoard did not start (exit code {process.poll()})"
        yield url, flagship_run
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def wait_for_runs(url: str, expected: set[str]) -> list[str]:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    runs: list[str] = []
    while time.monotonic() < deadline:
        runs = get(f"{url}/data/runs")
        if expected <= set(runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"runs {sorted(expected - set(runs))} never appeared; got {runs}")


def scalars(url: str, run: str, tag: str) -> list[list[float]]:
    query = urllib.parse.urlencode({"run": run, "tag": tag})
    return get(f"{url}/data/plugin/scalars/scalars?{query}")


def test_tensorboard_serves_supervised_and_rl_curves_under_the_same_tag(tensorboard):
    url, logdir = tensorboard
    digits = json.loads((logdir / "digits" / "results.json").read_text())
    imitation = json.loads((logdir / "imitation" / "results.json").read_text())
    expected = {str(Path(r["run_dir"]).relative_to(logdir)) for r in digits["runs"] + imitation["runs"]
                if "seed" in r}
    assert {"digits/supervised/seed1", "digits/ppo/seed2", "imitation/ppo/seed1", "imitation/bc-8demos/seed2"} <= expected
    wait_for_runs(url, expected)

    tag_index = get(f"{url}/data/plugin/scalars/tags")
    for run in digits["runs"]:
        name = str(Path(run["run_dir"]).relative_to(logdir))
        assert tags.ACCURACY in tag_index[name]  # one tag for both paradigms: the curves overlay
        points = scalars(url, name, tags.ACCURACY)  # [[wall_time, step, value], ...]
        assert [p[1] for p in points] == [c["samples"] for c in run["curve"]]  # x-axis: samples / env steps
        assert [p[2] for p in points] == pytest.approx([c["accuracy"] for c in run["curve"]], abs=1e-6)
    assert tags.LABELS_SEEN in tag_index["digits/supervised/seed1"]
    assert tags.REWARDS_SEEN in tag_index["digits/ppo/seed1"] and tags.REWARDS_SEEN in tag_index["digits/a2c/seed1"]

    ppo = next(r for r in imitation["runs"] if r["variant"] == "ppo" and r["seed"] == 1)
    points = scalars(url, "imitation/ppo/seed1", tags.SUCCESS_RATE)
    assert [p[2] for p in points] == pytest.approx([c["success_rate"] for c in ppo["curve"]], abs=1e-6)
    bc = next(r for r in imitation["runs"] if r["variant"] == "bc-8demos" and r["seed"] == 2)
    assert scalars(url, "imitation/bc-8demos/seed2", tags.SUCCESS_RATE)[-1][2] == pytest.approx(bc["success_rate"])


def test_custom_scalars_layout_serves_each_experiments_comparison_charts(tensorboard):
    """Each experiment's layout (written by its render) is served by the custom-scalars plugin, one category
    per experiment, and every chart's tags come from that experiment's runs only (no unrelated task mixed in)."""
    url, logdir = tensorboard
    wait_for_runs(url, {"digits", "imitation", "digits/ppo/seed1", "imitation/ppo/seed1"})  # layouts: run = experiment
    listing = get(f"{url}/data/plugins_listing")
    assert listing["custom_scalars"]["enabled"]
    layout = {}
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while len(layout.get("category", [])) < 2 and time.monotonic() < deadline:
        layout = get(f"{url}/data/plugin/custom_scalars/layout")
        time.sleep(0.5)
    categories = {c["title"].split(":")[0]: c for c in layout["category"]}
    assert set(categories) == {"digits", "imitation"}
    tag_index = get(f"{url}/data/plugin/scalars/tags")
    for experiment, category in categories.items():
        assert category["chart"], experiment
        for chart in category["chart"]:
            regexes = chart["multiline"]["tag"]
            matching = {run for run, run_tags in tag_index.items()
                        if any(re.search(rx, tag) for rx in regexes for tag in run_tags)}
            assert matching and {run.split("/")[0] for run in matching} == {experiment}, (chart["title"], matching)
    digits_charts = [c["multiline"]["tag"] for c in categories["digits"]["chart"]]
    assert [f"^{tags.ACCURACY}$"] in digits_charts  # the labels-vs-rewards test-accuracy comparison
    imitation_charts = [c["multiline"]["tag"] for c in categories["imitation"]["chart"]]
    assert [f"^{tags.SUCCESS_RATE}$"] in imitation_charts
    # the untrained BC policy is on the success-rate chart at step 0
    points = scalars(url, "imitation/bc-untrained/seed1", tags.SUCCESS_RATE)
    assert [p[1] for p in points] == [0]
