"""Tracked text files carry no leftover merge-conflict markers."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT

MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.M)
TEXT = (".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".csv", ".cfg", "Makefile", "run")


def test_no_merge_conflict_markers():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert files
    bad = [f for f in files if f.endswith(TEXT) and MARKER.search((ROOT / f).read_text(errors="replace"))]
    assert bad == []
