"""The root stack is the quickstart: see examples/quickstart/__main__.py."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).parent / "examples" / "quickstart" / "__main__.py"))
