import os

import pytest


def missing(what: str) -> None:
    """A component the tests need is absent: a failure in CI, a skip on a developer machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must install it: see .ci/run)", pytrace=False)
    pytest.skip(what)
