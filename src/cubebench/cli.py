"""The ``cubebench`` command: thin sub-commands over the library functions.

Every user-fixable problem is a :class:`~cubebench.errors.CubebenchError`, printed as one line with exit code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cubebench.errors import CubebenchError

if TYPE_CHECKING:
    from collections.abc import Sequence

USES = ("storage", "write", "read", "balanced")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="cubebench",
        description="Benchmark lossless compression of 4-D data cubes through HDF5 and Zarr on a Dask cluster.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run an experiment, or the quick experiment's matrix on your own data file")
    p.add_argument(
        "experiment",
        nargs="?",
        metavar="PATH",
        help="experiment YAML file, or a data file or store (.emd/.h5/.zarr/.npy/.mib: the quick matrix on it); "
        "default: the built-in quick.yaml",
    )
    p.add_argument("--out", help="results folder (default: results/<experiment name or file stem>)")
    p.add_argument("--resume", action="store_true", help="run only the cells missing from --out's results log")
    p.add_argument(
        "--retry",
        nargs="+",
        default=[],
        metavar="STATUS",
        help="with --resume, also run again the cells that ended failed, unverified or skipped",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--scale", type=float, help="multiply every preset's scan scale by this factor, e.g. 0.125")
    p.add_argument("--codecs", nargs="+", metavar="ID", help="codec ids, or study or all (cubebench codecs lists them)")
    p.add_argument("--backends", nargs="+", metavar="NAME", help="backends, e.g. hdf5 zarr (or all)")
    p.add_argument("--chunks", nargs="+", metavar="CHUNK", help="real_space, balanced, single_frame or SY,SX,DY,DX")
    p.add_argument("--runs", type=int, help="timed runs per cell")
    p.add_argument("--dataset", help="in-file path of the dataset in a data file (HDF5 or Zarr group)")
    p.add_argument("--scan-shape", type=int, nargs=2, metavar=("SY", "SX"), help="scan shape for .mib/.npy stacks")

    p = sub.add_parser("plan", help="an experiment's cells, estimated time and disk needs, without running it")
    p.add_argument("experiment", nargs="?", help="experiment YAML file (default: the built-in quick.yaml)")
    p.add_argument("--scale", type=float, help="multiply every preset's scan scale by this factor, e.g. 0.125")

    p = sub.add_parser("inspect", help="shape, dtype, size, zero fraction, max, bits and entropy of a source")
    p.add_argument("source", help="a file (.emd/.h5/.zarr/.npy/.mib) or a preset name")
    p.add_argument("--dataset", help="in-file path of the dataset (HDF5 or Zarr group)")
    p.add_argument("--scale", type=float, help="scan scale factor for a preset")
    p.add_argument("--scan-shape", type=int, nargs=2, metavar=("SY", "SX"), help="scan shape for .mib/.npy stacks")

    sub.add_parser("codecs", help="the codec catalog and where each codec is available")

    p = sub.add_parser("report", help="tables, figures and an index page from a results folder")
    p.add_argument("results", help="results folder or results.nc")
    p.add_argument("--out", help="report folder (default: RESULTS/report)")
    p.add_argument("--compare", help="a published statistics CSV to overlay (the study's shape)")

    p = sub.add_parser("merge", help="stack results of several machines along a 'machine' dimension")
    p.add_argument("out", help="the new results folder (never overwritten)")
    p.add_argument("results", nargs="+", help="results folders or results.nc files, one per machine")
    p.add_argument("--names", nargs="+", help="one machine name per result (default: each result's host)")

    p = sub.add_parser("recommend", help="the best codec + chunk + backend for one use")
    p.add_argument("results", help="results folder or results.nc")
    p.add_argument("--for", dest="use", choices=USES, default="balanced", help="the dominant constraint")
    p.add_argument("--storage", help="the storage to recommend for (local, s3, ...) when the results hold several")

    p = sub.add_parser("scaling", help="predicted write/read throughput on N nodes per backend (a stated model)")
    p.add_argument("results", help="results folder or results.nc")
    p.add_argument("--nodes", default="1,2,4,...,64", help="node counts, e.g. 1,2,4,...,64 (default)")
    p.add_argument("--storage-bandwidth", default="10GB/s", help="aggregate storage bandwidth (default: 10GB/s)")
    p.add_argument("--workers-per-node", type=int, help="workers per node (default: the measured workers)")
    p.add_argument("--dataset", help="dataset of the tables (default: the first)")
    p.add_argument("--chunk", help="chunking of the tables (default: the first)")
    p.add_argument("--check", metavar="RESULTS2", help="results with more workers: prediction vs measurement")

    p = sub.add_parser("sufficient", help="the smallest representation keeping an inference target's error within X")
    p.add_argument("results", help="results folder (with sufficiency.nc) or sufficiency.nc")
    p.add_argument("--target", required=True, help="inference target: bf, adf, com or mean_pattern")
    p.add_argument("--tolerance", type=float, required=True, help="largest tolerable error (psnr: smallest, in dB)")
    p.add_argument("--metric", default="rel_l2", help="rel_l2 (default), max_abs or psnr")
    p.add_argument("--dataset", help="one dataset (default: all of them, each within the tolerance)")
    p.add_argument("--principles", action="store_true", help="also walk the study's five design principles")

    chunk_help = "real_space, balanced (default), single_frame, or SY,SX,DY,DX"
    codec_help = "codec id (default: blosc-zstd; HDF5 readers then need 'import hdf5plugin')"
    p = sub.add_parser("convert", help="write a source as EMD 1.0 HDF5 (.h5/.emd/.hdf5) or Zarr (.zarr), verified")
    p.add_argument("source", help="a file (.emd/.h5/.zarr/.npy/.mib) or a preset name")
    p.add_argument("dest", help="the new file: *.h5, *.emd, *.hdf5 or *.zarr (never overwritten)")
    p.add_argument("--codec", default="blosc-zstd", help=codec_help)
    p.add_argument("--chunk", default="balanced", help=chunk_help)
    p.add_argument("--dataset", help="in-file path of the dataset (HDF5 or Zarr group)")
    p.add_argument("--scan-shape", type=int, nargs=2, metavar=("SY", "SX"), help="scan shape for .mib/.npy stacks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("generate", help="write a synthetic preset as EMD 1.0 HDF5 or Zarr, verified")
    p.add_argument("preset", help="a preset name (cubebench inspect PRESET describes it)")
    p.add_argument("dest", help="the new file: *.h5, *.emd, *.hdf5 or *.zarr (never overwritten)")
    p.add_argument("--scale", type=float, help="scan scale factor, e.g. 0.125 for a 32 x 32 scan of 4d_diff")
    p.add_argument("--seed", type=int, help="noise seed")
    p.add_argument("--codec", default="blosc-zstd", help=codec_help)
    p.add_argument("--chunk", default="balanced", help=chunk_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("acquire", help="paced acquisition: can compression and storage keep up with a detector?")
    p.add_argument("experiment", help="experiment YAML file with an 'acquisition:' section")
    p.add_argument("--out", help="results folder (default: results/<experiment name>)")
    p.add_argument("--resume", action="store_true", help="run only the cells missing from --out's acquisition log")
    p.add_argument("--find-max", action="store_true", help="search each cell's maximum sustainable frame rate")

    p = sub.add_parser("acquire-report", help="acquisition results: summary, buffer and latency figure and table")
    p.add_argument("results", help="acquisition results folder (holding acquisition.nc)")

    p = sub.add_parser("feasibility", help="which codecs keep up with a named detector, from measured rates")
    p.add_argument("results", help="acquisition results folder or acquisition.nc")
    p.add_argument("--detector", required=True, help="detector profile (merlin, arina, empad-g2, 4d-camera, ...)")
    p.add_argument("--rate", type=float, help="frame (or hit) rate to judge instead of the profile's maximum")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        # distributed's INFO chatter (e.g. comms closing while a cluster shuts down after Ctrl-C) is noise on a
        # terminal; errors still show. Read when distributed is first imported, here and in worker processes.
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
        # worker processes killed by Ctrl-C can leave a semaphore for multiprocessing's tracker to clean up: fine
        os.environ.setdefault("PYTHONWARNINGS", "ignore:resource_tracker:UserWarning")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            code = int(COMMANDS[args.command](args) or 0)
            sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at interpreter exit
            return code
    except CubebenchError as exc:
        if args.debug:
            raise
        print(f"cubebench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("cubebench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (``cubebench codecs | head``): stop quietly, as Unix tools do; stdout is
        # pointed at /dev/null so that the interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _run(args: argparse.Namespace) -> int:
    from cubebench.runner import run

    ds = run(
        args.experiment,
        out=args.out,
        resume=args.resume,
        retry=args.retry,
        progress=not args.no_progress,
        scale=args.scale,
        codecs=args.codecs,
        backends=args.backends,
        chunks=args.chunks,
        runs=args.runs,
        dataset=args.dataset,
        scan_shape=args.scan_shape,
    )
    print(summary_table(ds))
    out = args.out or f"results/{ds.attrs.get('title', '').removeprefix('cubebench results: ')}"
    print(f"\nresults: {Path(out) / 'results.nc'} (+ results.csv); next: cubebench report {out}")
    if args.experiment is None:
        print(quick_note(ds))
    return 0


def quick_note(ds: Any) -> str:
    """What the built-in quick experiment's figures mean, and the commands that benchmark real-sized data."""
    import numpy as np

    def finite(name: str) -> Any:
        values = np.asarray(ds[name].where(ds["status"] == "ok").values, dtype=float).ravel()
        return values[np.isfinite(values)]

    sizes, speeds = finite("source_bytes"), np.concatenate([finite("write_GiBps"), finite("read_GiBps")])
    size = f" of {sizes.max() / 2**20:.3g} MiB" if sizes.size else ""
    span = f"{np.percentile(speeds, 10):.2g}-{np.percentile(speeds, 90):.2g} GiB/s here; " if speeds.size else ""
    return (
        f"These figures come from a synthetic cube{size}, where fixed per-cell costs dominate ({span}the codecs "
        f"themselves run at GB/s).\n"
        "Your own file: cubebench run scan.emd [--codecs ID... --backends NAME...] (.mib: --scan-shape SY SX)\n"
        "A larger cube: cubebench generate 4d_diff big.h5 --scale 0.125 && cubebench plan big.h5 && "
        "cubebench run big.h5"
    )


def _plan(args: argparse.Namespace) -> int:
    from cubebench.runner import plan

    print(plan(args.experiment, scale=args.scale))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from cubebench.analysis import cube_stats
    from cubebench.sources import PRESETS, open_cube

    source: Any = args.source
    if args.dataset or args.scale is not None or args.scan_shape:
        key = "preset" if args.source in PRESETS else "path"
        source = {key: args.source}
        if args.dataset:
            source["dataset"] = args.dataset
        if args.scale is not None:
            source["scale"] = args.scale
        if args.scan_shape:
            source["scan_shape"] = list(args.scan_shape)
    cube = open_cube(source)
    stats = cube_stats(cube)
    print(f"source        {cube.info.source} ({cube.info.kind})")
    for key, value in stats.to_dict().items():
        if key == "histogram":
            continue
        print(f"{key:<20}{_fmt(value)}")
    return 0


def _codecs(args: argparse.Namespace) -> int:
    from cubebench.backends import BACKENDS, availability
    from cubebench.codecs import CODECS

    names = list(BACKENDS)
    width = max(len(n) for n in names) + 2
    print(f"{'codec':<24}" + "".join(f"{n:<{width}}" for n in names) + "description")
    reasons: list[str] = []
    for spec in CODECS.values():
        row = f"{spec.id:<24}"
        for name, why in availability(spec).items():
            row += f"{'yes' if why is None else 'no*':<{width}}"
            if why is not None:
                reasons.append(f"  {spec.id} / {name}: {spec.id}: {why}")
        print(row + spec.description + ("" if spec.study else "  [beyond the study]"))
    if reasons:
        print("\n* unavailable:")
        print("\n".join(reasons))
    return 0


def _report(args: argparse.Namespace) -> int:
    from cubebench.report import write_report
    from cubebench.results import load_results

    ds = load_results(args.results)
    base = Path(args.results)
    out = Path(args.out) if args.out else (base if base.is_dir() else base.parent) / "report"
    index = write_report(ds, out, compare=args.compare)
    print(f"report: {index}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from cubebench.convert import convert

    source: Any = args.source
    if args.dataset or args.scan_shape:
        source = {"path": args.source}
        if args.dataset:
            source["dataset"] = args.dataset
        if args.scan_shape:
            source["scan_shape"] = list(args.scan_shape)
    dest = convert(source, args.dest, codec=args.codec, chunk=args.chunk, progress=not args.no_progress)
    print(f"wrote {dest} ({args.codec}, chunks {args.chunk}); every chunk verified")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from cubebench.convert import generate

    dest = generate(
        args.preset,
        args.dest,
        scale=args.scale,
        seed=args.seed,
        codec=args.codec,
        chunk=args.chunk,
        progress=not args.no_progress,
    )
    print(f"wrote {dest} ({args.codec}, chunks {args.chunk}); every chunk verified")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from cubebench.errors import ResultsError
    from cubebench.results import load_results, machine_names, merge_machines, save_results

    out = Path(args.out)
    if out.exists():
        raise ResultsError(f"{out} already exists; merge into a new folder")
    datasets = [load_results(path) for path in args.results]
    names = machine_names(datasets, args.results, args.names)
    save_results(merge_machines(datasets, names), out)
    print(f"merged {len(names)} machines ({', '.join(names)}) into {out}; next: cubebench report {out}")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from cubebench.recommend import format_recommendation, recommend
    from cubebench.results import load_results

    ds = load_results(args.results)
    print(format_recommendation(recommend(ds, args.use, storage=args.storage)))
    return 0


def _scaling(args: argparse.Namespace) -> int:
    from cubebench.backends import BACKENDS
    from cubebench.results import load_results
    from cubebench.scaling import scaling_report

    registry = {name: (cls.writes, cls.reads) for name, cls in BACKENDS.items()}
    check = load_results(args.check) if args.check else None
    print(
        scaling_report(
            load_results(args.results),
            args.nodes,
            args.storage_bandwidth,
            workers_per_node=args.workers_per_node,
            dataset=args.dataset,
            chunk=args.chunk,
            kinds=registry,
            check=check,
        )
    )
    return 0


def _sufficient(args: argparse.Namespace) -> int:
    from cubebench.sufficiency.results import load_sufficiency
    from cubebench.sufficiency.stats import format_answer, principles, smallest_sufficient

    ds = load_sufficiency(args.results)
    answer = smallest_sufficient(ds, args.target, args.tolerance, args.metric, args.dataset)
    print(format_answer(answer))
    if args.principles:
        for number, (title, text) in enumerate(principles(ds, answer), start=1):
            print(f"{number}. {title}: {text}")
    return 0


def summary_table(ds: Any) -> str:
    """One line per (dataset, backend, codec, chunk): status, mean ratio, median write and read GiB/s.

    Below the table, one line per cell that did not end ``ok``, with the reason its first such run recorded, so
    that a failed codec path says why where the user looks first.
    """
    from cubebench.results import to_frame

    frame = to_frame(ds)
    keys = ["dataset", "backend", "codec", "chunk"]
    if "storage" in frame and frame["storage"].nunique() > 1:  # one line per storage too
        keys.append("storage")
    rows: list[list[str]] = [[*keys, "status", "ratio", "write GiB/s", "read GiB/s"]]
    reasons: list[str] = []
    for key, group in frame.groupby(keys, sort=False):
        ok = group[group["status"] == "ok"]
        status = "ok" if len(ok) == len(group) else ",".join(sorted(set(group["status"])))
        numbers = [ok["ratio"].mean(), ok["write_GiBps"].median(), ok["read_GiBps"].median()] if len(ok) else []
        shown = [f"{numbers[0]:.2f}", f"{numbers[1]:.3f}", f"{numbers[2]:.3f}"] if numbers else ["-", "-", "-"]
        rows.append([*(str(k) for k in key), status, *shown])
        not_ok = group[group["status"] != "ok"]
        if len(not_ok):
            first = not_ok.iloc[0]
            reasons.append(f"{' '.join(str(k) for k in key)}: {first['status']}: {first['reason'] or '(no reason)'}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = "\n".join(
        "  ".join(
            cell.ljust(w) if i <= len(keys) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    )
    return "\n\n".join([table, "\n".join(reasons)] if reasons else [table])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " x ".join(str(v) for v in value)
    return str(value)


def _acquire(args: argparse.Namespace) -> int:
    from cubebench.acquisition import acquire
    from cubebench.acquisition.results import load_acquisition
    from cubebench.acquisition.summary import summary_table

    folder = acquire(args.experiment, args.out, resume=args.resume, find_max=args.find_max)
    print(summary_table(load_acquisition(folder)))
    print(f"acquisition results: {folder / 'acquisition.nc'}; buffer and latency: {folder / 'buffer_latency.png'}")
    return 0


def _acquire_report(args: argparse.Namespace) -> int:
    from cubebench.acquisition.figure import write_buffer_latency
    from cubebench.acquisition.results import load_acquisition
    from cubebench.acquisition.summary import summary_table

    print(summary_table(load_acquisition(Path(args.results))))
    for path in write_buffer_latency(args.results):
        print(f"wrote {path}")
    return 0


def _feasibility(args: argparse.Namespace) -> int:
    from cubebench.acquisition.feasibility import feasibility, format_answer

    print(format_answer(*feasibility(args.results, args.detector, args.rate)))
    return 0


COMMANDS = {
    "run": _run,
    "acquire": _acquire,
    "acquire-report": _acquire_report,
    "feasibility": _feasibility,
    "plan": _plan,
    "inspect": _inspect,
    "codecs": _codecs,
    "report": _report,
    "recommend": _recommend,
    "convert": _convert,
    "generate": _generate,
    "merge": _merge,
    "sufficient": _sufficient,
    "scaling": _scaling,
}


if __name__ == "__main__":
    sys.exit(main())
