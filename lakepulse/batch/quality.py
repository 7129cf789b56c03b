"""The great-expectations gate on bronze and gold: suites, one validation per DataFrame, a readable report."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class QualityError(RuntimeError):
    """A check of the gate failed; the message is the readable report."""


@dataclass
class Outcome:
    """One expectation's result, reduced to what an engineer needs to read."""

    dataset: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    examples: list[Any] = field(default_factory=list)

    def line(self) -> str:
        """`FAIL bronze expect_...(column=amount, min_value=0): 3 unexpected, e.g. [-5.0]`."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items() if not _default_kwarg(k, v))
        detail = ""
        if self.unexpected_count:
            detail = f": {self.unexpected_count} unexpected, e.g. {self.examples[:5]}"
        elif self.observed is not None:
            detail = f": observed {self.observed}"
        return f"{'ok  ' if self.success else 'FAIL'} {self.dataset:<8} {self.expectation}({args}){detail}"


def _default_kwarg(key: str, value: Any) -> bool:
    # Keep the report to what the check was about: drop bookkeeping and default-valued options.
    return key in ("batch_id", "result_format", "catch_exceptions", "meta") or value is False or (
        key == "mostly" and value == 1)


def _expectations(kind: str, params: dict[str, Any]) -> list[Any]:
    import great_expectations.expectations as gxe

    if kind == "bronze":
        return [
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("event_id", "tenant_id", "event_type",
                                                                    "occurred_at")],
            gxe.ExpectColumnValuesToBeUnique(column="event_id"),
            gxe.ExpectColumnValuesToMatchRegex(column="tenant_id", regex=r"^[A-Za-z0-9_-]{1,64}$"),
            gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="quantity_min", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="food_rating", min_value=1, max_value=5),
            gxe.ExpectColumnValuesToBeBetween(column="delivery_rating", min_value=1, max_value=5),
            gxe.ExpectColumnValuesToBeInSet(column="order_status", value_set=params["order_statuses"]),
            gxe.ExpectColumnValuesToBeInSet(column="courier_status", value_set=params["courier_statuses"]),
        ]
    if kind == "gold":
        return [
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("tenant_id", "metric", "dims_key",
                                                                    "window_start", "count")],
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["tenant_id", "metric", "dims_key", "window_start"]),
            gxe.ExpectColumnValuesToBeInSet(column="metric", value_set=params["metrics"]),
            gxe.ExpectColumnValuesToBeBetween(column="count", min_value=1),
        ]
    if kind == "user_activity":
        keys = list(params["user_activity_keys"])
        return [
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (*keys, "first_seen", "last_seen")],
            gxe.ExpectCompoundColumnsToBeUnique(column_list=keys),
            gxe.ExpectColumnValuesToBeBetween(column="events", min_value=1),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="last_seen", column_B="first_seen", or_equal=True),
        ]
    if kind == "totals":
        return [gxe.ExpectColumnPairValuesToBeEqual(column_A="observed", column_B="expected")]
    raise ValueError(kind)


def validate(frames: dict[str, DataFrame], params: dict[str, Any]) -> list[Outcome]:
    """Run the suite of each named DataFrame ("bronze", "gold", "user_activity", "totals") and collect every
    outcome."""
    # great-expectations logs and draws progress bars generously; the report below is what matters.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_spark(name="lakepulse")
    outcomes: list[Outcome] = []
    for name, df in frames.items():
        batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(gx.ExpectationSuite(name=f"lakepulse_{name}"))
        for expectation in _expectations(name, params):
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        result = definition.run(batch_parameters={"dataframe": df})
        for r in result.results:
            res = r.result or {}
            config = r.expectation_config
            if config is None:  # only absent for results built by hand
                continue
            unexpected = res.get("partial_unexpected_list") or []
            if not unexpected and res.get("partial_unexpected_index_list"):
                unexpected = res["partial_unexpected_index_list"]
            outcomes.append(Outcome(
                dataset=name,
                expectation=config.type,
                kwargs={k: v for k, v in config.kwargs.items() if v is not None},
                success=bool(r.success),
                observed=res.get("observed_value"),
                unexpected_count=res.get("unexpected_count"),
                examples=list(unexpected),
            ))
    return outcomes


def report(outcomes: list[Outcome], title: str) -> str:
    """Failures first, then the passing checks, one line each."""
    failed = [o for o in outcomes if not o.success]
    verdict = "FAILED" if failed else "passed"
    head = f"quality gate {verdict} for {title}: {len(failed)} of {len(outcomes)} checks failed"
    return "\n".join([head, *[o.line() for o in failed], *[o.line() for o in outcomes if o.success]])


def gate(outcomes: list[Outcome], title: str) -> str:
    """The report; raises QualityError carrying it when any check failed."""
    text = report(outcomes, title)
    if any(not o.success for o in outcomes):
        raise QualityError(text)
    return text
