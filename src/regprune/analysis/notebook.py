"""Where the notebooks (``notebooks/*.py``) find the checkout, run folders and tables, with errors that say what
to do instead of a bare ``StopIteration`` or ``FileNotFoundError``."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def is_checkout(path: Path) -> bool:
    project = path / "pyproject.toml"
    return project.is_file() and 'name = "regprune"' in project.read_text()


def repo_root(cwd: Path | None = None) -> Path:
    """``$REGPRUNE_ROOT``, else the regprune checkout around the working folder, else the one this package
    runs from (so a notebook copied elsewhere still finds ``results/``)."""
    if os.environ.get("REGPRUNE_ROOT"):
        root = Path(os.environ["REGPRUNE_ROOT"])
        if not is_checkout(root):
            raise FileNotFoundError(f"REGPRUNE_ROOT={root} is not a regprune checkout (no pyproject.toml of regprune)")
        return root
    cwd = cwd or Path.cwd()
    for folder in [cwd, *cwd.parents, Path(__file__).resolve().parents[3]]:
        if is_checkout(folder):
            return folder
    raise FileNotFoundError(f"no regprune checkout around {cwd} and regprune is not installed from one: open the "
                            "notebook inside the repository, or set REGPRUNE_ROOT to the checkout")


def read_table(tables: Path, name: str) -> pd.DataFrame:
    """A table written by ``scripts/collect.py``; a missing one says how to make it."""
    path = Path(tables) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found, and no complete run folders were found to collect from: run "
                                f"`python scripts/collect.py runs/ --out {tables}` first, or point REGPRUNE_RUNS at "
                                "run folders / REGPRUNE_TABLES at a folder of tables")
    return pd.read_csv(path)
