"""Every notebook (jupytext percent scripts in notebooks/) runs headless on real tiny runs and on tables alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from regprune.analysis.collect import collect

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
KERNEL = "regprune-tests"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory, tiny_runs) -> dict:
    """A kernelspec running this interpreter with this checkout's sources first, and the tables of the runs."""
    base = tmp_path_factory.mktemp("jupyter")
    spec = base / "kernels" / KERNEL
    spec.mkdir(parents=True)
    src = str(ROOT / "src")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "regprune tests", "language": "python", "env": env}))
    tables = base / "tables"
    collect([tiny_runs], tables, ROOT / "results" / "reference")
    return {"jupyter_path": str(base), "runs": str(tiny_runs), "tables": str(tables)}


def execute(path: Path, kernel: dict, runs: str, monkeypatch, tables: str | None = None) -> list[dict]:
    """Run the notebook from the repository root; return the outputs of every code cell. Without ``tables``
    the notebook reads its default, the committed tables."""
    monkeypatch.setenv("JUPYTER_PATH", kernel["jupyter_path"])
    monkeypatch.setenv("REGPRUNE_RUNS", runs)
    if tables is None:
        monkeypatch.delenv("REGPRUNE_TABLES", raising=False)
    else:
        monkeypatch.setenv("REGPRUNE_TABLES", tables)
    nb = jupytext.read(path)
    probe = jupytext.reads("import sys\nprint(sys.executable)\nimport regprune\nprint(regprune.__file__)",
                           fmt="py:percent").cells[0]
    nb.cells.insert(0, probe)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    first = "".join(o.get("text", "") for o in nb.cells[0].outputs).split()
    assert first == [sys.executable, str(ROOT / "src" / "regprune" / "__init__.py")]
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def images(outputs: list[dict]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


def test_notebooks_are_percent_scripts():
    assert [p.stem for p in NOTEBOOKS] == ["compare_runs", "magnitudes", "scaling_factors"]
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        assert nb.metadata["jupytext"]["text_representation"]["format_name"] == "percent"
        assert nb.cells[0].cell_type == "markdown" and len([c for c in nb.cells if c.cell_type == "code"]) >= 3
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("name, min_images", [("compare_runs", 1), ("magnitudes", 1), ("scaling_factors", 3)])
@pytest.mark.slow
def test_notebook_runs_on_run_folders(name, min_images, kernel, monkeypatch):
    outputs = execute(ROOT / "notebooks" / f"{name}.py", kernel, kernel["runs"], monkeypatch, kernel["tables"])
    text = json.dumps(outputs)
    assert "complete runs under" in text or "run folders under" in text
    assert images(outputs) >= min_images
    assert not [o for o in outputs if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", ["compare_runs", "magnitudes", "scaling_factors"])
def test_notebook_runs_on_tables_alone(name, kernel, monkeypatch, tmp_path):
    outputs = execute(ROOT / "notebooks" / f"{name}.py", kernel, str(tmp_path / "no-runs"), monkeypatch,
                      kernel["tables"])
    assert kernel["tables"] in json.dumps(outputs) and images(outputs) >= 1


def test_copied_notebook_finds_the_checkout_and_says_what_is_missing(kernel, monkeypatch, tmp_path):
    """A notebook copied out of the repository still finds the checkout (no bare StopIteration), and with no runs
    and no tables it says how to make them."""
    copy = tmp_path / "elsewhere" / "compare_runs.py"
    copy.parent.mkdir()
    copy.write_text((ROOT / "notebooks" / "compare_runs.py").read_text())
    monkeypatch.setenv("JUPYTER_PATH", kernel["jupyter_path"])
    monkeypatch.setenv("REGPRUNE_RUNS", str(tmp_path / "no-runs"))
    monkeypatch.setenv("REGPRUNE_TABLES", str(tmp_path / "no-tables"))
    nb = jupytext.read(copy)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(copy.parent)}})
    with pytest.raises(nbclient.exceptions.CellExecutionError) as e:
        client.execute()
    assert "FileNotFoundError" in str(e.value) and "StopIteration" not in str(e.value)
    assert f"{tmp_path / 'no-tables' / 'summary.csv'} not found" in str(e.value)
    assert "python scripts/collect.py runs/ --out" in str(e.value)


def test_repo_root_outside_the_checkout(tmp_path, monkeypatch):
    from regprune.analysis.notebook import repo_root

    assert repo_root(tmp_path) == ROOT  # the checkout this package runs from
    monkeypatch.setenv("REGPRUNE_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"REGPRUNE_ROOT={tmp_path} is not a regprune checkout"):
        repo_root()


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="no make or git")
def test_make_notebooks_writes_into_an_ignored_folder():
    commands = subprocess.run(["make", "-n", "notebooks"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "jupytext --to ipynb --execute --output build/notebooks/" in commands
    for path in ("build/notebooks/compare_runs.ipynb", "notebooks/compare_runs.ipynb"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


@pytest.mark.parametrize("name", ["compare_runs", "magnitudes", "scaling_factors"])
def test_notebook_runs_on_committed_tables(name, kernel, monkeypatch, tmp_path):
    """Without run folders and without REGPRUNE_TABLES a notebook reads the committed tables (results/tables)."""
    outputs = execute(ROOT / "notebooks" / f"{name}.py", kernel, str(tmp_path / "no-runs"), monkeypatch)
    text = json.dumps(outputs)
    assert str(ROOT / "results" / "tables") in text and kernel["tables"] not in text
    assert images(outputs) >= 1 and not [o for o in outputs if o.get("output_type") == "error"]
