"""The README's Python quickstart runs as written."""

import re

from conftest import ROOT


def test_python_quickstart_runs():
    readme = (ROOT / "README.md").read_text()
    quickstart = re.search(r"### Python\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(compile(quickstart, "README.md", "exec"), namespace)
    assert tuple(namespace["h"].shape) == (8, 256)
