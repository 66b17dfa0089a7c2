"""Every install hint names this project's distribution (issue 17): ``workbench`` on PyPI is a
different project, and a hint naming another package sends users to a stranger's code."""

from __future__ import annotations

import re
from pathlib import Path

from workbench.core.engines.registry import list_engines
from workbench.errors import install_hint

ROOT = Path(__file__).resolve().parents[1]
OURS = re.compile(r"pip install (--force-reinstall )?('onnx-inference-workbench\[|onnx-inference-workbench\b|-e '\.\[|-e \.)")


def _hints_in_sources() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        if path.name == "errors.py":  # install_hint itself, checked by the test above
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith(("\"", "'", "f\"", "f'")) else line
            for m in re.finditer(r"pip install[^\"']*", code):
                found.append((str(path.relative_to(ROOT)), i, m.group(0)))
    return found


def test_install_hint_names_this_distribution() -> None:
    assert install_hint("torch") == ("pip install 'onnx-inference-workbench[torch]' "
                                     "(or pip install -e '.[torch]' from a clone)")
    assert "onnx-inference-workbench" in install_hint()


def test_no_source_line_hints_another_distribution() -> None:
    bad = [h for h in _hints_in_sources() if not OURS.match(h[2])]
    assert not bad, f"install hints naming another distribution: {bad}"


def test_engine_reasons_name_this_distribution() -> None:
    reasons = [e.reason for e in list_engines()]
    hints = [m for r in reasons for m in re.findall(r"pip install \S+", r)]
    # On a machine without a GPU every GPU engine explains itself with an install hint.
    assert all("onnx-inference-workbench" in h or "-e" in h for h in hints), hints
