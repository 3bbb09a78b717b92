"""Every citation of the methods reference names one of its sections, so a reader can follow it."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT


def headings() -> list[str]:
    text = (ROOT / "docs/methods.md").read_text()
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def test_methods_reference_has_a_section_per_method():
    names = headings()
    assert len(names) == len(set(names))
    for method in ("Network Slimming", "Nonconvex network slimming", "Polarization", "RSNLI",
                   "L1/2 stochastic proximal gradient", "Group lasso (SSL)", "OICSR", "Group sparsity on filters",
                   "GReg", "OTO", "SCP", "Gate Decorator", "Scale invariance"):
        assert method in names


def test_every_citation_names_a_section_and_nothing_cites_files_outside_the_repo():
    files = subprocess.run(["git", "ls-files", "configs", "src", "tests", "scripts", "notebooks", "results/reference",
                            "README.md", "docs"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names = headings() + ["one section per method"]
    cited = 0
    for name in files:
        path = ROOT / name
        if path.suffix not in {".py", ".yaml", ".md", ".csv"} or path.name == "test_methods_doc.py":
            continue
        text = path.read_text()
        assert "papers" + ".md" not in text, name  # the notes outside the repository (spelled so git grep misses it)
        flat = re.sub(r"\s*\n\s*(#\s*)?", " ", text)  # citations wrapped over comment lines
        for m in re.finditer(r"docs/methods\.md[,;] (.{0,60})", flat):
            cited += 1
            assert any(m.group(1).startswith(h) for h in names), f"{name}: docs/methods.md, {m.group(1)}"
    assert cited > 50
