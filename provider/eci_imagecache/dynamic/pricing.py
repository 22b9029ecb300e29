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
    try:
        return price_overrides(config.get("pricesFile"), config.get_object("prices"))
    except PriceConfigError as err:
        raise pulumi.RunError(str(err)) from None


class PriceConfigError(ValueError):
    """A prices file or price override that makes no price table; names where it is."""


def price_overrides(
    path: str | None, overrides: Any, namespace: str = CONFIG_NAMESPACE
) -> dict[str, Any] | None:
    """The overrides a prices file (``<namespace>:pricesFile``) and single prices
    (``<namespace>:prices``) give, checked; shared with the plugin (``eci-imagecache:*``)."""
    prices: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise PriceConfigError(f"{namespace}:pricesFile {path}: {err.strerror}") from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            raise PriceConfigError(f"{namespace}:pricesFile {path}: not YAML or JSON{at}") from None
        if not isinstance(loaded, dict):
            raise PriceConfigError(
                f"{namespace}:pricesFile {path}: must hold a map of price names to numbers"
            )
        _check(loaded, f"{namespace}:pricesFile {path}")
        prices.update(loaded)
    if overrides:
        _check(overrides, f"{namespace}:prices")
        prices.update(overrides)
    prices = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in prices.items()}
    return prices or None


def _check(overrides: Any, where: str) -> None:
    from ..engine.cost import PriceError, prices_from  # the program needs it only for overrides

    try:
        prices_from(overrides)
    except PriceError as err:
        raise PriceConfigError(f"{where}: {err}") from None


def prices_of(props: dict[str, Any]) -> Prices:
    """The price table a resource's inputs name; :class:`PriceError` names a bad price."""
    from ..engine.cost import PriceError, prices_from

    overrides = props.get("prices")
    if overrides is not None and not isinstance(overrides, dict):
        raise PriceError("prices", "must be a map of price names to numbers")
    return prices_from(overrides)
