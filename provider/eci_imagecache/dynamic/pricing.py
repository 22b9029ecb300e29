"""Price overrides for the cost estimates, read from stack config by the program.

``eci:pricesFile`` names a JSON or YAML file of prices; ``eci:prices`` (an object) overrides
single prices on top of it. Both are optional: without them the engine's dated default table is
used. The overrides travel as the ``prices`` input, so providers stay stateless; they never
change what a resource is (the diff ignores them), only the ``cost`` estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import yaml

from .common import CONFIG_NAMESPACE

if TYPE_CHECKING:
    from ..engine.cost import Prices


def price_inputs() -> dict[str, Any] | None:
    """The overrides of this stack, checked here so that an error names the file or key it is
    in; a :class:`pulumi.RunError` is reported as one line, without a traceback."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    prices: dict[str, Any] = {}
    path = config.get("pricesFile")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise pulumi.RunError(f"eci:pricesFile {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise pulumi.RunError(f"eci:pricesFile {path}: not YAML or JSON{at}") from None
        if not isinstance(loaded, dict):
            raise pulumi.RunError(
                f"eci:pricesFile {path}: must hold a map of price names to numbers"
            )
        _check(loaded, f"eci:pricesFile {path}")
        prices.update(loaded)
    overrides = config.get_object("prices") or {}
    if overrides:
        _check(overrides, "eci:prices")
    prices.update(overrides)
    prices = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in prices.items()}
    return prices or None


def _check(overrides: Any, where: str) -> None:
    from ..engine.cost import PriceError, prices_from  # the program needs it only for overrides

    try:
        prices_from(overrides)
    except PriceError as err:
        raise pulumi.RunError(f"{where}: {err}") from None


def prices_of(props: dict[str, Any]) -> Prices:
    """The price table a resource's inputs name; :class:`PriceError` names a bad price."""
    from ..engine.cost import PriceError, prices_from

    overrides = props.get("prices")
    if overrides is not None and not isinstance(overrides, dict):
        raise PriceError("prices: must be a map of price names to numbers")
    return prices_from(overrides)
