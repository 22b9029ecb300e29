"""Price overrides for the cost estimates, read from stack config by the program.

``eci:pricesFile`` names a JSON or YAML file of prices; ``eci:prices`` (an object) overrides
single prices on top of it. Both are optional: without them the engine's dated default table is
used. The overrides travel as the ``prices`` input, so providers stay stateless; they never
change what a resource is (the diff ignores them), only the ``cost`` estimate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml

from ..engine.cost import PriceError, Prices, prices_from
from .settings import CONFIG_NAMESPACE


def price_inputs() -> dict[str, Any] | None:
    config = pulumi.Config(CONFIG_NAMESPACE)
    prices: dict[str, Any] = {}
    path = config.get("pricesFile")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"eci:pricesFile {path!r} cannot be read: {err}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"eci:pricesFile {path!r} must hold a map of price names to numbers")
        prices.update(loaded)
    prices.update(config.get_object("prices") or {})
    return prices or None


def prices_of(props: dict[str, Any]) -> Prices:
    """The price table a resource's inputs name; :class:`PriceError` names a bad price."""
    overrides = props.get("prices")
    if overrides is not None and not isinstance(overrides, dict):
        raise PriceError("prices: must be a map of price names to numbers")
    return prices_from(overrides)
