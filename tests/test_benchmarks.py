"""The benchmark scripts run, their results files say what was measured, and the README's
table is built from those files.

Every ``benchmarks/bench_*.py`` runs here in its ``--smoke`` mode: tiny sizes through
the same code and the same keyword arguments as the published runs, so a renamed
parameter of ours or a peer's fails this test instead of the next benchmark run.
"""

import json
import os
import re
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402
import readme_table  # noqa: E402

SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("bench_*.py"))
# one thread setting is enough here: the code at every setting is the same
ONE_SETTING = {name: ["--threads", "1"] for name in
               ("bench_defaults.py", "bench_foundation.py", "bench_vae.py", "bench_dask.py")}
# the peers the scripts compare against (the test extra installs them)
PEERS = ("pyod", "mlxtend")


def run_scripts(scripts: list, results: str, report: str) -> None:
    """In one process (imports paid once), run each script as ``__main__`` in its smoke
    mode, its results in ``results/<script>``; write what happened to ``report``."""
    import contextlib
    import io
    import runpy
    import traceback

    outcome = {}
    for script in scripts:
        sys.argv = [str(BENCHMARKS / script), "--smoke", "--results-dir", str(Path(results) / script),
                    *ONE_SETTING.get(script, [])]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(sys.argv[0], run_name="__main__")
            outcome[script] = {"ok": True}
        except SystemExit as exc:
            outcome[script] = {"ok": exc.code in (None, 0), "error": f"SystemExit({exc.code!r})"}
        except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
            outcome[script] = {"ok": False, "error": traceback.format_exc()}
        outcome[script]["stdout"] = out.getvalue()[-3000:]
    Path(report).write_text(json.dumps(outcome))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """Every script's smoke run, in two processes side by side (two cores), one thread each."""
    for peer in PEERS:
        pytest.importorskip(peer)
    folder = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    halves = [SCRIPTS[0::2], SCRIPTS[1::2]]
    processes = []
    for i, half in enumerate(halves):
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_benchmarks; "
                f"test_benchmarks.run_scripts({half!r}, {str(folder)!r}, {str(folder / f'report{i}.json')!r})")
        processes.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=1200)[0] for p in processes]
    outcome = {}
    for i, process in enumerate(processes):
        report = folder / f"report{i}.json"
        assert report.exists(), logs[i][-4000:]
        outcome.update(json.loads(report.read_text()))
    return folder, outcome


def test_every_script_is_known():
    assert len(SCRIPTS) >= 10
    assert "bench_rbm.py" in SCRIPTS and "bench_vae_tables.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_and_records_its_settings(script, smoke_runs):
    folder, outcome = smoke_runs
    assert outcome[script]["ok"], outcome[script].get("error", "") + outcome[script]["stdout"]
    files = list((folder / script).glob("*.json"))
    if not files:
        assert "skipped" in outcome[script]["stdout"], outcome[script]["stdout"]
        pytest.skip(outcome[script]["stdout"].strip().splitlines()[-1])
    (path,) = files
    saved = json.loads(path.read_text())
    assert saved["format"] == _common.FORMAT and saved["script"] == f"benchmarks/{script}"
    assert saved["entries"]
    markdown = path.with_suffix(".md").read_text()
    for entry in saved["entries"]:
        assert entry["variant"]["mode"] == "smoke"
        env = entry["environment"]
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", env["commit"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", env["date"])
        assert env["versions"]["torch"] and env["versions"]["scikit-learn"] and env["cores"] >= 1
        load = env["load_average"]
        assert len(load["start"]) == len(load["end"]) == 3 and load["max_1min"] >= load["mean_1min"] >= 0
        assert entry["settings"] and entry["rows"]
        # smoke data are chosen so that nothing fails; a failure here is a bug
        assert entry["failures"] == [], entry["failures"]
        assert _common.FAILED not in json.dumps(entry["rows"])
        assert env["commit"][:7] in markdown


def _args(folder, mode="full"):
    return Namespace(results_dir=str(folder), quick=mode == "quick", smoke=mode == "smoke")


def _record(folder, variant, value, mode="full"):
    results = _common.Results("demo", _args(folder, mode), title="demo", about="a test",
                              figures={"speed": _common.Figure("speed", ["run", "s"])})
    with _common.LoadMonitor(interval=0.01) as load:
        pass
    return results.record("speed", variant, {"n": 1}, [{"run": "x", "s": value}], load)


def test_a_rerun_of_one_setting_merges_into_the_file(tmp_path):
    _record(tmp_path, {"threads": "1"}, 1.0)
    _record(tmp_path, {"threads": "default"}, 2.0)
    _record(tmp_path, {"threads": "1"}, 3.0)  # a later run, another process: replaces its own entry only
    _record(tmp_path, {"threads": "1"}, 9.0, mode="quick")  # a quick run never replaces a full one
    entries = json.loads((tmp_path / "demo.json").read_text())["entries"]
    got = {(e["variant"]["threads"], e["variant"]["mode"]): e["rows"][0]["s"] for e in entries}
    assert got == {("1", "full"): 3.0, ("default", "full"): 2.0, ("1", "quick"): 9.0}
    markdown = (tmp_path / "demo.md").read_text()
    assert markdown.count("## speed") == 3 and "[quick run]" in markdown
    files = readme_table.Files(tmp_path)
    assert files.get("demo", "speed", threads="1")["rows"][0]["s"] == 3.0  # the full run wins
    # a figure's full entries, without the quick one (whose sizes differ)
    assert sorted(e["variant"]["threads"] for e in files.all("demo", "speed")) == ["1", "default"]


def test_the_readme_table_prefers_full_runs_and_ignores_smoke_runs(tmp_path):
    _record(tmp_path, {"threads": "1"}, 5.0, mode="smoke")
    files = readme_table.Files(tmp_path)
    assert files.get("demo", "speed", threads="1") is None and files.all("demo", "speed") == []
    _record(tmp_path, {"threads": "1"}, 4.0, mode="quick")
    assert readme_table.Files(tmp_path).get("demo", "speed", threads="1")["rows"][0]["s"] == 4.0


def test_an_older_results_format_is_replaced(tmp_path):
    (tmp_path / "demo.json").write_text(json.dumps({"machine": {}, "speed": [{"s": 1}]}))
    _record(tmp_path, {"threads": "1"}, 1.0)
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["format"] == _common.FORMAT and len(saved["entries"]) == 1


def test_a_failed_run_is_a_failed_cell_not_a_mean_of_the_rest():
    assert _common.mean_or_failed([1.0, 3.0]) == 2.0
    assert _common.mean_or_failed([1.0, _common.FAILED, 3.0]) == _common.FAILED
    assert _common.mean_or_failed([1.0, float("nan")]) == _common.FAILED
    assert _common.ratio(2.0, None) == _common.FAILED and _common.ratio(3.0, 1.5) == 2.0
    assert _common.attempt(lambda: 1 / 0)[1].startswith("ZeroDivisionError")
    with pytest.raises(TypeError):  # a mistake in a script stops it
        _common.attempt(lambda: sorted(1))


def test_the_readme_table_is_generated_from_the_results_files():
    readme = (ROOT / "README.md").read_text()
    current = readme_table.current_block(readme).splitlines()
    generated = readme_table.render().splitlines()
    assert current == generated, "README.md's benchmark table differs from benchmarks/results: run " \
                                 "`python benchmarks/readme_table.py`"


def test_every_results_file_is_in_the_current_format():
    for path in sorted((BENCHMARKS / "results").glob("*.json")):
        saved = json.loads(path.read_text())
        assert saved.get("format") == _common.FORMAT, path.name
        for entry in saved["entries"]:
            assert entry["environment"]["commit"] != "unknown" and entry["environment"]["load_average"], path.name
            assert entry["variant"]["mode"] in ("full", "quick"), path.name


def test_a_row_never_mixes_a_full_run_with_a_quick_one(tmp_path):
    _record(tmp_path, {"threads": "1"}, 1.0)  # full
    _record(tmp_path, {"threads": "default"}, 2.0, mode="quick")  # only a quick run at this setting
    files = readme_table.Files(tmp_path)
    found = [e for t in ("1", "default") if (e := files.get("demo", "speed", threads=t))]
    assert len(found) == 2  # each setting alone takes what it has
    assert [e["variant"]["threads"] for e in readme_table.one_mode(found)] == ["1"]


def test_synth_unseen_rows_are_the_held_out_rows_no_training_row_repeats_and_tstr_scores_them():
    import numpy as np
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score

    import bench_synth

    rng = np.random.RandomState(0)
    n = 300
    frame = lambda m: pd.DataFrame({  # noqa: E731
        "a": rng.randint(3, size=m).astype(float), "b": rng.randint(40, size=m).astype(float),
        "kind": pd.Categorical(rng.choice(["x", "y"], m), categories=["x", "y"]),
        "quality": rng.randint(3, 6, size=m).astype(float)})
    train, test = frame(n), frame(n)  # 240 feature combinations: some held-out rows repeat one
    table = bench_synth.Table("wine", "wine", {"a": "real", "b": "real", "kind": "categorical", "quality": "count"},
                              train, test)
    unseen = bench_synth.unseen_rows(train, test, "quality")
    seen = {tuple(map(str, r)) for r in train[["a", "b", "kind"]].itertuples(index=False)}
    brute = np.array([tuple(map(str, r)) not in seen for r in test[["a", "b", "kind"]].itertuples(index=False)])
    np.testing.assert_array_equal(unseen, brute)
    assert 0 < unseen.sum() < n  # the check covers both kinds of rows
    # the quality label plays no part: a training row with another label still counts
    assert not bench_synth.unseen_rows(train.assign(quality=9.0), test, "quality")[~unseen].any()
    whole, on_unseen = bench_synth.tstr(table, train, test, 0, unseen=unseen)
    assert whole == bench_synth.tstr(table, train, test, 0)
    model = bench_synth._classifier(0).fit(train.drop(columns=["quality"]), train["quality"].astype(int).astype(str))
    predicted = model.predict(test.drop(columns=["quality"]))[unseen]
    assert on_unseen == balanced_accuracy_score(test["quality"].astype(int).astype(str)[unseen], predicted)
