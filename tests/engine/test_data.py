"""OHLCV data: synthetic frames, file loading errors, the shipped sample, references and hashing."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import quantlab.data
from quantlab.engine import data
from quantlab.engine.data import DataError


def test_synthetic_is_seeded_and_well_formed():
    df = data.synthetic(2000, seed=7)
    assert list(df.columns) == list(data.COLUMNS) and df.index.name == "time"
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.is_monotonic_increasing and df.index.is_unique
    assert (df.high >= df[["open", "close"]].max(axis=1)).all() and (df.low <= df[["open", "close"]].min(axis=1)).all()
    assert (df.index[1] - df.index[0]) == pd.Timedelta("1min")
    pd.testing.assert_frame_equal(df, data.synthetic(2000, seed=7))
    assert not df.equals(data.synthetic(2000, seed=8))
    assert data.synthetic(10, seed=1, freq="1D", start="2020-03-01").index[0] == pd.Timestamp("2020-03-01")
    data.validate(df)
    with pytest.raises(DataError, match="bars must be"):
        data.synthetic(0, seed=1)


def test_alias_module():
    assert quantlab.data.synthetic is data.synthetic and "load" in quantlab.data.__all__


def _write(df, path):
    df.reset_index().to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.drop(columns=["volume", "low"]), "missing column\\(s\\) 'low', 'volume'"),
    (lambda d: d.iloc[[0, 2, 1, 3]], "not sorted.*sort_index"),
    (lambda d: pd.concat([d.iloc[:3], d.iloc[[2]]]), "duplicated timestamp.*duplicated"),
    (lambda d: d.assign(close=[np.nan] + list(d.close.iloc[1:])), "NaN or infinite.*close.*dropna"),
    (lambda d: d.assign(high=d.low - 1), "high/low do not bracket"),
    (lambda d: d.assign(open=-d.open), "non-positive price"),
])
def test_load_csv_errors_name_problem_file_and_fix(tmp_path, mutate, match):
    bad = mutate(data.synthetic(6, seed=1))
    path = _write(bad, tmp_path / "bars.csv")
    with pytest.raises(DataError, match=match) as exc:
        data.load(path)
    assert str(path) in str(exc.value)


def test_load_csv_and_parquet_round_trip(tmp_path):
    df = data.synthetic(300, seed=3, freq="1h")
    back = data.load(_write(df, tmp_path / "a.csv"))
    pd.testing.assert_frame_equal(back, df, check_freq=False, rtol=1e-12)
    df.to_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(data.load(tmp_path / "a.parquet"), df, check_freq=False, check_exact=True)
    upper = df.reset_index().rename(columns=str.upper).rename(columns={"TIME": "Date"})
    upper.to_csv(tmp_path / "b.csv", index=False)
    assert len(data.load(tmp_path / "b.csv")) == 300


def test_load_other_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.load(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unknown file type"):
        data.load(tmp_path / "x.json")
    pd.DataFrame({"open": [1.0], "high": [1.0], "low": [1.0], "close": [1.0], "volume": [1.0]}).to_csv(
        tmp_path / "noidx.csv", index=False)
    with pytest.raises(DataError, match="no 'time' column"):
        data.load(tmp_path / "noidx.csv")
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        data.validate([1, 2, 3], source="upload")


def test_validate_normalises_timezones_and_dtypes():
    df = data.synthetic(5, seed=1)
    df.index = df.index.tz_localize("Europe/Berlin")
    df["volume"] = df["volume"].astype(int)
    out = data.validate(df, source="upload")
    assert out.index.tz is None and out.index.name == "time" and (out.dtypes == "float64").all()
    assert out.index[0] == pd.Timestamp("2023-12-31 23:00")


def test_sample_is_small_documented_and_reproducible():
    assert data.SAMPLE_PATH.stat().st_size < 1_000_000
    df = data.sample()
    assert len(df) == 4000 and (df.index.day_of_week < 5).all()
    regenerated = data._generate_sample()
    pd.testing.assert_frame_equal(df, regenerated, check_freq=False, atol=6e-6, rtol=0)
    assert "regime" in data.sample.__doc__ and "seed" in data.sample.__doc__


def test_references(tmp_path):
    pd.testing.assert_frame_equal(data.from_reference("synthetic:seed=7,bars=100,freq=1h"),
                                  data.synthetic(100, seed=7, freq="1h"))
    assert len(data.from_reference("sample")) == 4000
    sub = tmp_path / "fx"
    sub.mkdir()
    _write(data.synthetic(50, seed=2), sub / "x.csv")
    assert len(data.from_reference("file:fx/x.csv", data_root=tmp_path)) == 50
    for ref, match in [("file:../etc/passwd", "escapes the data root"), ("file:/etc/passwd", "relative"),
                       ("file:fx/../../x.csv", "escapes"), ("synthetic:seed=1", "bars is required"),
                       ("synthetic:bars=ten", "integer"), ("synthetic:bars=5,colour=red", "bad option"),
                       ("s3://bucket", "unknown data reference"), ("upload:abc", "server")]:
        with pytest.raises(DataError, match=match):
            data.from_reference(ref, data_root=tmp_path)
    with pytest.raises(DataError, match="no data root"):
        data.from_reference("file:fx/x.csv")
    refs = data.list_references(tmp_path)
    assert [r["ref"] for r in refs if r["kind"] == "file"] == ["file:fx/x.csv"]
    assert refs[0]["ref"] == "sample" and any(r["ref"].startswith("synthetic:") for r in refs)


def test_content_hash_is_stable_across_processes():
    df = data.synthetic(1000, seed=5)
    h = data.content_hash(df)
    assert h == data.content_hash(df.copy()) and len(h) == 64
    changed = df.copy()
    changed.iloc[10, 3] += 1e-9
    assert data.content_hash(changed) != h
    assert data.content_hash(df.iloc[:-1]) != h
    code = "from quantlab.engine import data; print(data.content_hash(data.synthetic(1000, seed=5)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == h
