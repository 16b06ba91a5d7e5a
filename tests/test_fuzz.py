"""Property-based fuzzing of the data path (hypothesis): every generated file builds or fails in one line,
and end to end trains or exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import custom_args, main_code, output_paths, synthetic_frame, write_series


# ------------------------------------------------------------------ property-based fuzzing of the data path
def _fuzz_case(draw_frame: pd.DataFrame, folder: Path, raw: bytes | None = None) -> Path:
    path = folder / "fuzz.csv"
    if raw is not None:
        path.write_bytes(raw)
    else:
        draw_frame.to_csv(path, index=False)
    return path


def test_fuzzed_files_build_or_fail_in_one_line(tmp_path_factory):
    """Generated files with missing cells, odd separators and encodings, huge and tiny values, repeated or shuffled
    dates and few rows: building the data either succeeds with finite scaled values or raises a one-line
    UserError."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from timellm_launcher.core.errors import UserError
    from timellm_launcher.data_provider.data_factory import build_data
    from timellm_launcher.engine.config import Config

    values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),  # flushed here
                       st.sampled_from([1e308, -1e308, 1e-308, 5e-324, 0.0, 1e45]))

    @st.composite
    def files(draw) -> tuple[str, bytes]:
        rows = draw(st.integers(min_value=0, max_value=160))
        columns = draw(st.integers(min_value=1, max_value=3))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        data = rng.normal(size=(rows, columns))
        for _ in range(draw(st.integers(0, 4))):
            if rows:
                data[draw(st.integers(0, rows - 1)), draw(st.integers(0, columns - 1))] = draw(values)
        dates = pd.date_range("2020-01-01", periods=rows, freq=draw(st.sampled_from(["h", "D", "15min", "MS"])))
        order = draw(st.sampled_from(["sorted", "shuffled", "repeated", "reversed"]))
        dates = list(dates.strftime("%Y-%m-%d %H:%M:%S"))
        if order == "shuffled":
            rng.shuffle(dates)
        elif order == "repeated" and rows > 2:
            dates[rows // 2] = dates[rows // 2 - 1]
        elif order == "reversed":
            dates = dates[::-1]
        frame = pd.DataFrame(data, columns=[*[f"v{i}" for i in range(columns - 1)], "OT"])
        frame.insert(0, "date", dates)
        if draw(st.booleans()) and rows:
            frame.iloc[draw(st.integers(0, rows - 1)), draw(st.integers(1, columns))] = None  # an empty cell
        sep = draw(st.sampled_from([",", ";", "\t", "|"]))
        text = frame.to_csv(index=False, sep=sep)
        encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
        if draw(st.booleans()):
            text = text.replace("v0", "vé0")
        return draw(st.sampled_from(["ffill", "none", "zero"])), text.encode(encoding, errors="replace")

    folder = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(files())
    def check(case: tuple[str, bytes]) -> None:
        fillna, raw = case
        path = _fuzz_case(pd.DataFrame(), folder, raw)
        cfg = Config(data="custom", root_path=str(folder), data_path=path.name, features="M", seq_len=24,
                     pred_len=8, fillna=fillna)
        try:
            data = build_data(cfg.data_options())
        except UserError as err:
            assert "\n" not in str(err) and str(err)
            return
        for dataset in data.datasets.values():
            assert bool(np.isfinite(dataset.values.numpy()).all())

    check()


def test_fuzzed_files_train_or_exit_2_end_to_end(tmp_path_factory, capsys):
    """A few generated files through the whole CLI: exit 0 with finite metrics, or exit 2 with one line."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder = tmp_path_factory.mktemp("fuzz_e2e")

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.integers(0, 5), st.sampled_from([None, 1e308, 1e40, np.nan]), st.integers(100, 400))
    def check(corruption: int, value, rows: int) -> None:
        frame = synthetic_frame(rows, ["a", "OT"], seed=corruption)
        if value is not None:
            frame.loc[rows // 2, "OT"] = value
        if corruption == 1:
            frame.loc[rows // 3, "date"] = frame.loc[rows // 3 - 1, "date"]
        run = folder / f"case{len(list(folder.iterdir()))}"
        run.mkdir()
        write_series(run, frame)
        code = main_code([*custom_args(run), "--features", "S", "--train_epochs", "1", "--max_train_steps", "2",
                          "--plot_windows", "0", *output_paths(run)])
        captured = capsys.readouterr()
        assert code in (0, 2) and "Traceback" not in captured.err
        if code == 2:
            assert captured.err.count("\n") == 1 and captured.err.startswith("error: ")
            return
        result = json.loads(next((run / "results").glob("*/results.json")).read_text())
        assert all(np.isfinite(result["metrics"]["test"][k]) for k in ("mse", "mae"))

    check()
