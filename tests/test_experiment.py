"""Experiment files: valid ones parse, every bad key or value names itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cubebench.chunking import resolve_chunks
from cubebench.errors import CodecUnavailableError, ConfigError
from cubebench.experiment import default_experiment_path, load_experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[1]


def base(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {"name": "t", "datasets": [{"preset": "4d_diff", "scale": 0.03125}]}
    raw.update(overrides)
    return raw


def test_shipped_quick_matches_configs_copy() -> None:
    assert default_experiment_path().read_text() == (ROOT / "configs" / "quick.yaml").read_text()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.datasets and exp.codecs and exp.backends


def test_defaults_and_round_trip() -> None:
    exp = parse_experiment(base())
    assert exp.backends == ("hdf5", "zarr")
    assert exp.chunk_labels == ("real_space", "balanced", "single_frame")
    assert exp.codecs[0] == "none" and "blosc-zstd" in exp.codecs
    again = parse_experiment({k: v for k, v in exp.to_dict().items()})
    assert again == exp


def test_experiment_validates_backends_against_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering a backend is all it takes for experiments to accept its id (no copy of the ids elsewhere)."""
    from cubebench.backends import BACKENDS

    raw = {"datasets": ["4d_diff"], "backends": ["brand_new"]}
    with pytest.raises(ConfigError, match="unknown backend 'brand_new'"):
        parse_experiment(raw)
    monkeypatch.setitem(BACKENDS, "brand_new", BACKENDS["zarr"])
    assert parse_experiment(raw).backends == ("brand_new",)


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"colour": "red"}, "'colour'"),
        ({"backends": ["hdf6"]}, "'hdf6'"),
        ({"chunks": ["diagonal"]}, "'diagonal'"),
        ({"chunks": [[0, 1, 2, 3]]}, "[0, 1, 2, 3]"),
        ({"chunks": [[-1, 1, 2, 3]]}, "[-1, 1, 2, 3]"),
        ({"chunks": [[1, 2, 3]]}, "[1, 2, 3]"),
        ({"runs": 0}, "'runs'"),
        ({"cache": "lukewarm"}, "'lukewarm'"),
        ({"layout": "fortran"}, "'fortran'"),
        ({"cluster": {"nodes": 3}}, "'nodes'"),
        ({"cluster": {"address": "tcp://x:1", "jobqueue": "slurm"}}, "conflict"),
        ({"cluster": {"jobqueue": "lsf"}}, "'lsf'"),
        ({"datasets": [{"preset": "4d_diff", "path": "x.h5"}]}, "exactly one"),
        ({"datasets": [{"preset": "4d_diff", "colour": 1}]}, "'colour'"),
        ({"zarr": {"shards": "yes"}}, "shards"),
        ({"max_cell_seconds": -1}, "max_cell_seconds"),
    ],
)
def test_bad_values_name_the_culprit(overrides: dict[str, object], culprit: str) -> None:
    with pytest.raises(ConfigError, match=r".*") as info:
        parse_experiment(base(**overrides))
    assert culprit in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_codec_lists_valid_ids() -> None:
    with pytest.raises(CodecUnavailableError) as info:
        parse_experiment(base(codecs=["gzip-10"]))
    assert "gzip-10" in str(info.value) and "blosc-zstd" in str(info.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndatasets: [a, b\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "bad.yaml" in str(info.value) and "line" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"datasets": [{"preset": "4d_diff"}]}))
    assert load_experiment(path).name == "mine"


@pytest.mark.parametrize(
    ("chunk", "shape", "expected"),
    [
        ("real_space", (64, 64, 256, 256), (32, 32, 256, 256)),
        ("balanced", (64, 64, 256, 256), (16, 16, 128, 128)),
        ("single_frame", (64, 64, 256, 256), (1, 1, 256, 256)),
        ("real_space", (8, 4, 64, 64), (8, 4, 64, 64)),
        ("balanced", (64, 64, 1, 1024), (16, 16, 1, 512)),
        ((4, 4, 300, 8), (8, 8, 64, 64), (4, 4, 64, 8)),
    ],
)
def test_resolve_chunks(chunk: object, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    assert resolve_chunks(chunk, shape) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("chunk", ["nope", (1, 2, 3), (0, 1, 1, 1), (1, -2, 1, 1), ("a", 1, 1, 1)])
def test_resolve_chunks_rejects(chunk: object) -> None:
    with pytest.raises(ConfigError):
        resolve_chunks(chunk, (8, 8, 64, 64))  # type: ignore[arg-type]
