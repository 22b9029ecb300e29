"""Cost estimates for image caches and container groups: what a build costs once, what a cache
costs every month, and what extra ephemeral storage a group pays for.

The vendor's billing model (see the image-cache overview):

- A manual cache is built on a temporary instance of 2 vCPU / 4 GiB with an ESSD PL1 disk of the
  cache's size, billed per second while the build runs; the snapshot it leaves is then billed per
  GiB-month until the cache is deleted.
- An automatic cache costs nothing to create and nothing to keep (the vendor manages it).
- A container group has 30 GiB of ephemeral storage included; storage declared beyond that (a
  cache larger than 30 GiB needs it) is billed at the ESSD PL1 price while the group runs.

These are estimates, always labelled so: the build time is derived from the bytes the build
fetches at a configurable rate, snapshot size from the images' content, and prices from the dated
default table below (or the user's overrides). Pure: no I/O; the caller reads any price file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from .errors import InvalidProperty
from .models import BASE_EPHEMERAL_STORAGE_GIB, GIB, CacheKind

BUILD_INSTANCE_VCPU = 2
BUILD_INSTANCE_MEMORY_GIB = 4
LABEL = "estimate"


class Prices(BaseModel):
    """Unit prices and the build-time model. Keys may be given in snake_case or camelCase."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        allow_inf_nan=False,  # an infinite price is a typo, not a price
    )

    currency: str = "USD"
    region: str = Field(min_length=1)
    as_of: str = Field(min_length=1)  # when the figures were read, and what they are
    vcpu_per_second: float = Field(ge=0)
    memory_gib_per_second: float = Field(ge=0)
    essd_pl1_gib_hour: float = Field(ge=0)
    snapshot_gib_month: float = Field(ge=0)
    ephemeral_gib_hour: float = Field(ge=0)
    # How fast the temporary instance fetches image bytes, and the fixed time a build takes
    # besides fetching (instance start, snapshot creation).
    build_bytes_per_second: float = Field(gt=0)
    build_overhead_seconds: float = Field(default=0, ge=0)
    hours_per_month: float = Field(default=730, gt=0)
    # Prices the user changed from the table named by region and as_of: the label says so.
    overridden: tuple[str, ...] = ()

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        # YAML reads an unquoted 2026-11-01 as a date.
        return value.isoformat() if isinstance(value, date) else value

    @property
    def source(self) -> str:
        """Where the figures come from, as the estimates' label shows it."""
        text = f"{self.region} list prices, {self.as_of}"
        if self.overridden:
            text += f"; overridden: {', '.join(to_camel(name) for name in self.overridden)}"
        return text


# The vendor's published list prices (pay-as-you-go, USD, international site), read 2026-11-29:
# - vCPU and memory of the temporary build instance: the ECI "image cache billing" page
#   (last updated 2024-03-08): USD 0.0000077 per vCPU-second, USD 0.00000096 per GiB-second.
#   The page does not name a region for these two figures.
# - ESSD PL1: USD 0.03188 per 100 GiB-hour in China (Hangzhou), from the ECI "temporary storage
#   space billing" page (last updated 2022-09-20). Extra ephemeral storage is billed at the same
#   PL1 price, per that page.
# - Standard snapshot storage: USD 0.0173 per GB-month in China (Hangzhou), the figure of the ECS
#   "snapshot billing" page's example (the page gives no date; the live price list may differ).
# - Build rate: an assumption derived from the vendor's measurement in the image-cache overview
#   (a 386.26 MB image took 50 s of image preparation without a cache), i.e. ~7.7 MB/s.
# - Build overhead (instance start, snapshot creation): not published; not counted (0 s) unless
#   configured.
DEFAULT_PRICES = Prices(
    currency="USD",
    region="cn-hangzhou",
    as_of="vendor list prices read 2026-11-29 (pages dated 2022-09-20 to 2024-03-08)",
    vcpu_per_second=0.0000077,
    memory_gib_per_second=0.00000096,
    essd_pl1_gib_hour=0.03188 / 100,
    snapshot_gib_month=0.0173,
    ephemeral_gib_hour=0.03188 / 100,
    build_bytes_per_second=386.26e6 / 50,
    build_overhead_seconds=0,
    hours_per_month=730,
)


class PriceError(InvalidProperty):
    """Price overrides that do not make a price table."""


def prices_from(overrides: Mapping[str, Any] | None, base: Prices = DEFAULT_PRICES) -> Prices:
    """The default table with the user's overrides applied (either key style); validated."""
    if not overrides:
        return base
    if not isinstance(overrides, Mapping):
        raise PriceError("prices", "must be a map of price names to numbers")
    by_alias = {field.alias: name for name, field in Prices.model_fields.items() if field.alias}
    named = {by_alias.get(str(key), str(key)): value for key, value in overrides.items()}
    named.pop("overridden", None)
    # Naming the table (region, date) describes every price; changing single prices does not.
    describes = {"currency", "region", "as_of"}
    changed = tuple(sorted(k for k in named if k not in describes and k in Prices.model_fields))
    try:
        return Prices.model_validate({**base.model_dump(), **named, "overridden": changed})
    except ValidationError as err:
        problems = [
            f"{to_camel('.'.join(str(p) for p in e['loc'])) or '(prices)'}: {e['msg']}"
            for e in err.errors()
        ]
        raise PriceError("prices", "; ".join(problems)) from None


def money(amount: float, currency: str) -> str:
    """Small amounts keep four decimals: a build often costs less than a cent."""
    if 0 < abs(amount) < 0.00005:
        return f"{currency} <0.0001" if amount > 0 else f"{currency} >-0.0001"
    return f"{currency} {amount:.2f}" if abs(amount) >= 1 else f"{currency} {amount:.4f}"


def _duration(seconds: float) -> str:
    """About how long, for people: a build of a few small layers takes "<1 s"."""
    if seconds < 1:
        return "<1 s"
    seconds = round(seconds)
    if seconds < 60:
        return f"~{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"~{minutes} min {rest} s" if rest else f"~{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"~{hours} h {minutes} min"


class CacheCost(BaseModel):
    """What a cache costs: one build, and its snapshot per month."""

    model_config = ConfigDict(frozen=True)

    kind: CacheKind
    currency: str
    fetch_bytes: int  # what the estimate was made of, so that new prices can re-price it
    content_bytes: int
    build_seconds: float
    build: float  # one-off, per build (a create, a rebuild or a replacement)
    snapshot_gib: float
    monthly: float
    prices: str  # where the prices come from

    def summary(self) -> str:
        if self.kind == CacheKind.AUTO:
            return f"{LABEL}: automatic cache, free to create and keep"
        return (
            f"{LABEL}: build {money(self.build, self.currency)} once "
            f"({_duration(self.build_seconds)} of a {BUILD_INSTANCE_VCPU} vCPU / "
            f"{BUILD_INSTANCE_MEMORY_GIB} GiB instance and its ESSD PL1 disk), "
            f"snapshot {money(self.monthly, self.currency)}/month ({self.snapshot_gib:.2f} GiB)"
        )

    def as_output(self) -> dict[str, Any]:
        """The resources' ``cost`` output: numbers for tools, a sentence for people."""
        return {
            "label": LABEL,
            "currency": self.currency,
            "build_once": self.build,
            "monthly": self.monthly,
            "build_seconds": round(self.build_seconds, 1),
            "snapshot_gib": round(self.snapshot_gib, 4),
            "fetch_bytes": self.fetch_bytes,
            "content_bytes": self.content_bytes,
            "prices": self.prices,
            "summary": self.summary(),
        }


def estimate_cache(
    fetch_bytes: int,
    content_bytes: int,
    size_gib: int,
    prices: Prices = DEFAULT_PRICES,
    kind: CacheKind = CacheKind.MANUAL,
) -> CacheCost:
    """One build of a cache that fetches ``fetch_bytes`` onto a ``size_gib`` disk, and the
    monthly price of a snapshot holding ``content_bytes``.

    Reused layers are not fetched, so layer reuse shortens (and cheapens) the build, not the
    snapshot. Snapshots are billed on the data they hold, not on the declared size.
    """
    source = prices.source
    if kind == CacheKind.AUTO:
        return CacheCost(
            kind=kind,
            currency=prices.currency,
            fetch_bytes=fetch_bytes,
            content_bytes=content_bytes,
            build_seconds=0,
            build=0,
            snapshot_gib=content_bytes / GIB,
            monthly=0,
            prices=source,
        )
    seconds = prices.build_overhead_seconds + fetch_bytes / prices.build_bytes_per_second
    per_second = (
        BUILD_INSTANCE_VCPU * prices.vcpu_per_second
        + BUILD_INSTANCE_MEMORY_GIB * prices.memory_gib_per_second
        + size_gib * prices.essd_pl1_gib_hour / 3600
    )
    snapshot_gib = content_bytes / GIB
    return CacheCost(
        kind=kind,
        currency=prices.currency,
        fetch_bytes=fetch_bytes,
        content_bytes=content_bytes,
        build_seconds=seconds,
        build=per_second * seconds,
        snapshot_gib=snapshot_gib,
        monthly=snapshot_gib * prices.snapshot_gib_month,
        prices=source,
    )


class GroupCost(BaseModel):
    """The extra ephemeral storage a container group pays for while it runs."""

    model_config = ConfigDict(frozen=True)

    currency: str
    extra_storage_gib: int
    hourly: float
    monthly: float  # running the whole month
    prices: str

    def summary(self) -> str:
        if not self.extra_storage_gib:
            return (
                f"{LABEL}: no extra ephemeral storage ({BASE_EPHEMERAL_STORAGE_GIB} GiB included)"
            )
        return (
            f"{LABEL}: {self.extra_storage_gib} GiB of extra ephemeral storage, "
            f"{money(self.hourly, self.currency)}/hour, "
            f"{money(self.monthly, self.currency)}/month if it runs all month"
        )

    def as_output(self) -> dict[str, Any]:
        return {
            "label": LABEL,
            "currency": self.currency,
            "extra_storage_gib": self.extra_storage_gib,
            "hourly": self.hourly,
            "monthly": self.monthly,
            "prices": self.prices,
            "summary": self.summary(),
        }


def storage_needed_gib(cache_size_gib: int) -> int:
    """Extra ephemeral storage a group needs to use a cache of this size (30 GiB included)."""
    return max(0, cache_size_gib - BASE_EPHEMERAL_STORAGE_GIB)


def estimate_group(extra_storage_gib: int, prices: Prices = DEFAULT_PRICES) -> GroupCost:
    hourly = extra_storage_gib * prices.ephemeral_gib_hour
    return GroupCost(
        currency=prices.currency,
        extra_storage_gib=extra_storage_gib,
        hourly=hourly,
        monthly=hourly * prices.hours_per_month,
        prices=prices.source,
    )
