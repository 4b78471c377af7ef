"""nubes.ml.features: lags, leads, differences, rolling windows and date parts, per group, in order."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from nubes.errors import ConfigError
from nubes.ml import features as F


@pytest.fixture
def readings() -> pl.DataFrame:
    # two sensors, rows deliberately out of time order
    return pl.DataFrame({
        "sensor": ["a", "b", "a", "b", "a", "a"],
        "day": [date(2024, 1, 3), date(2024, 1, 1), date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 2), date(2024, 1, 4)],
        "value": [30.0, 100.0, 10.0, 110.0, 20.0, 40.0],
    })


def by_sensor_day(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("sensor", "day")


def test_lags_leads_and_diffs_per_group_in_order(readings: pl.DataFrame) -> None:
    out = F.lags(readings, "value", [1, 2], by="sensor", order_by="day")
    out = F.leads(out, "value", 1, by="sensor", order_by="day")
    out = F.diffs(out, "value", 1, by="sensor", order_by="day")
    assert out["value"].to_list() == readings["value"].to_list()  # rows keep their order
    s = by_sensor_day(out)
    assert s["value_lag1"].to_list() == [None, 10.0, 20.0, 30.0, None, 100.0]
    assert s["value_lag2"].to_list() == [None, None, 10.0, 20.0, None, None]
    assert s["value_lead1"].to_list() == [20.0, 30.0, 40.0, None, 110.0, None]
    assert s["value_diff1"].to_list() == [None, 10.0, 10.0, 10.0, None, 10.0]
    pct = F.diffs(readings, "value", 1, by="sensor", order_by="day", pct=True)
    assert by_sensor_day(pct)["value_pct1"].to_list()[1] == pytest.approx(1.0)


def test_rolling_windows_with_shift_only_look_back(readings: pl.DataFrame) -> None:
    out = F.rolling(readings, "value", 2, ["mean", "max"], by="sensor", order_by="day")
    s = by_sensor_day(out)
    assert s["value_roll2_mean"].to_list() == [None, 15.0, 25.0, 35.0, None, 105.0]
    assert s["value_roll2_max"].to_list() == [None, 20.0, 30.0, 40.0, None, 110.0]
    past = by_sensor_day(F.rolling(readings, "value", 2, by="sensor", order_by="day", shift=1, min_periods=1))
    assert past["value_roll2_mean"].to_list() == [None, 10.0, 15.0, 25.0, None, 100.0]


def test_lazy_frames_and_no_grouping(readings: pl.DataFrame) -> None:
    lazy = F.lags(readings.lazy().filter(pl.col("sensor") == "a"), "value", 1, order_by="day")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.sort("day").collect()["value_lag1"].to_list() == [None, 10.0, 20.0, 30.0]
    plain = F.lags(pl.DataFrame({"x": [1, 2, 3]}), "x")  # current row order
    assert plain["x_lag1"].to_list() == [None, 1, 2]
    assert F.drop_incomplete(plain).height == 2


def test_date_parts_dates_datetimes_strings_and_cycles() -> None:
    frame = pl.DataFrame({"d": [date(2024, 12, 31), date(2025, 1, 1)], "t": [datetime(2024, 3, 4, 5, 6, 7)] * 2,
                          "s": ["2024-02-29", "2024-03-01"]})
    out = F.date_parts(frame, "d")
    assert out["d_year"].to_list() == [2024, 2025] and out["d_dayofyear"].to_list() == [366, 1]
    assert out["d_weekday"].to_list() == [2, 3] and out["d_quarter"].to_list() == [4, 1]
    assert "d_hour" not in out.columns
    t = F.date_parts(frame, "t", ["hour", "minute", "second"], prefix="when")
    assert t.select("when_hour", "when_minute", "when_second").row(0) == (5, 6, 7)
    s = F.date_parts(frame, "s", ["month", "day"])
    assert s["s_month"].to_list() == [2, 3] and s["s_day"].to_list() == [29, 1]
    cyc = F.date_parts(frame, "d", ["month"], cyclical=True)
    assert {"d_month_sin", "d_month_cos"} <= set(cyc.columns) and "d_weekday_sin" not in cyc.columns
    # December and January are neighbours on the circle
    dec, jan = cyc.row(0, named=True), cyc.row(1, named=True)
    assert abs(dec["d_month_cos"] - jan["d_month_cos"]) < 0.3


def test_errors_name_the_problem(readings: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="no column"):
        F.lags(readings, "nope")
    with pytest.raises(ConfigError, match="positive integers"):
        F.lags(readings, "value", 0)
    with pytest.raises(ConfigError, match="unknown rolling"):
        F.rolling(readings, "value", 3, "mode")
    with pytest.raises(ConfigError, match="not a date"):
        F.date_parts(readings, "value")
    with pytest.raises(ConfigError, match="Polars"):
        F.lags({"value": [1]}, "value")  # type: ignore[arg-type]
