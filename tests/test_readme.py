"""The README quickstart runs exactly as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quickstart_and_reducer_snippets_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for code in blocks[:2]:  # quickstart + reducers (the adapter snippet needs a checkpoint file)
        exec(compile(code, "README.md", "exec"), ns)
    assert ns["ts"].converged and ns["ssm"].order == 64
    res = ns["ml"].h2_optimality_residuals(ns["sys"], ns["ts"].rom)
    assert max(res) < 1e-8
