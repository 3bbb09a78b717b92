"""Every notebook (jupytext percent scripts in notebooks/) runs headless on real tiny runs and on tables alone."""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize("name", ["compare_runs", "magnitudes", "scaling_factors"])
def test_notebook_runs_on_committed_tables(name, kernel, monkeypatch, tmp_path):
    """Without run folders and without REGPRUNE_TABLES a notebook reads the committed tables (results/tables)."""
    outputs = execute(ROOT / "notebooks" / f"{name}.py", kernel, str(tmp_path / "no-runs"), monkeypatch)
    text = json.dumps(outputs)
    assert str(ROOT / "results" / "tables") in text and kernel["tables"] not in text
    assert images(outputs) >= 1 and not [o for o in outputs if o.get("output_type") == "error"]
