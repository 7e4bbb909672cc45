"""``mritune data demo | inspect | fetch``."""

from __future__ import annotations

import argparse

from mritune.cli._common import console, progress_bar, table, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="make demo data, inspect a dataset, fetch the Kaggle data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    d = dsub.add_parser("demo", help="write a synthetic MRI dataset in the Kaggle layout")
    d.add_argument("out", help="output folder (Training/ and Testing/ are written inside)")
    d.add_argument("--train-per-class", type=int, default=60, help="Training images/class (60)")
    d.add_argument("--test-per-class", type=int, default=20, help="Testing images/class (20)")
    d.add_argument("--size", type=int, default=96, help="image side in px (96)")
    d.add_argument("--seed", type=int, default=0, help="random seed (0); same seed, same bytes")
    d.add_argument("--difficulty", choices=["easy", "normal", "hard"], default="normal")
    d.add_argument("--force", action="store_true",
                   help="replace the images of an existing demo dataset in OUT")  # fmt: skip
    d.set_defaults(func=run_demo)

    i = dsub.add_parser("inspect", help="counts, image sizes, problems, duplicates and leakage")
    i.add_argument("data", help="dataset folder or CSV manifest (path,label[,split])")
    i.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    i.add_argument(
        "--near-threshold", type=int, default=4, metavar="T",
        help="max perceptual-hash Hamming distance for near duplicates (4 of 64 bits)",
    )  # fmt: skip
    i.add_argument("--cache-dir", metavar="DIR", help="where hashes are cached (runs/cache)")
    i.add_argument("--show", type=int, default=10, metavar="N", help="list at most N of each")
    i.set_defaults(func=run_inspect)

    f = dsub.add_parser("fetch", help="download a Kaggle dataset with kagglehub")
    f.add_argument("handle", nargs="?", default=None, help="Kaggle handle (owner/dataset)")
    f.add_argument("--out", default="runs/data", help="destination folder (runs/data)")
    f.set_defaults(func=run_fetch)


def run_demo(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    from mritune.data import DEMO_CLASSES, generate_demo
    from mritune.errors import ConfigError

    out = Path(args.out)
    owned = [out / s / c for s in ("Training", "Testing") for c in DEMO_CLASSES]
    if any(d.is_dir() and any(d.iterdir()) for d in owned):
        if not args.force:
            raise ConfigError(
                f"{out} already holds a dataset; pass --force to replace its demo images, or "
                f"choose an empty folder (mixing old and new images would break the counts)"
            )
        for d in owned:
            shutil.rmtree(d, ignore_errors=True)

    # transient: an argument error then prints as one line, not after a half-drawn bar
    with progress_bar("writing demo images", transient=True) as update:
        counts = generate_demo(
            args.out,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            size=args.size,
            seed=args.seed,
            difficulty=args.difficulty,
            progress=update,
        )
    total = sum(sum(c.values()) for c in counts.values())
    console.print(f"wrote {total} images ({args.size}px, {args.difficulty}) to {args.out}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from mritune.data import inspect

    with progress_bar("hashing images", transient=True) as update:
        report = inspect(
            args.data, near_threshold=args.near_threshold, cache_dir=args.cache_dir,
            progress=update,
        )  # fmt: skip
    data = report.to_dict()
    console.print(f"[bold]{data['root']}[/] layout {data['layout']}: {data['n_images']} images")
    splits = list(data["counts"])
    rows = [[c] + [data["counts"][s].get(c, 0) for s in splits] for c in data["classes"]]
    rows.append(["total"] + [sum(data["counts"][s].values()) for s in splits])
    console.print(table("images per split and class", ["class", *splits], rows))
    aliases = {k: v for k, v in data["class_aliases"].items() if v != [k]}
    if aliases:
        console.print(
            "class folders merged: " + "; ".join(f"{k} <- {v}" for k, v in aliases.items())
        )
    img = data["images"]
    sizes = ", ".join(f"{k} ({n})" for k, n in img["sizes"].items())
    console.print(f"image sizes: {img['n_sizes']} distinct; most common: {sizes}")
    console.print("modes: " + ", ".join(f"{k} ({n})" for k, n in img["modes"].items()))
    n = args.show
    if data["problems"]:
        console.print(f"[yellow]{len(data['problems'])} files skipped:[/]")
        for p in data["problems"][:n]:
            console.print(f"  {p['path']}: {p['reason']}")
    for w in data["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    dup = data["duplicates"]
    console.print(
        f"duplicates: {len(dup['exact'])} exact groups, {len(dup['near'])} near groups "
        f"(phash distance <= {dup['near_threshold']})"
    )
    if data["leaked"]:
        kinds = {k: sum(1 for x in data["leaked"] if x["kind"] == k) for k in ("exact", "near")}
        console.print(
            f"[red]leakage:[/] {len(data['leaked'])} evaluation/test images duplicate a training "
            f"image ({kinds['exact']} exact, {kinds['near']} near); accuracy on them overstates "
            f"accuracy on new images"
        )
        for x in data["leaked"][:n]:
            console.print(f"  {x['path']} ~ {x['duplicate_of']} ({x['kind']})")
    else:
        console.print("leakage: none found")
    if args.json:
        write_json(args.json, data)
        console.print(f"report written to {args.json}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from mritune.data import DEFAULT_HANDLE, fetch

    handle = args.handle or DEFAULT_HANDLE
    console.print(f"downloading {handle} ...")
    out = fetch(handle, args.out)
    console.print(f"data in {out}; next: mritune data inspect {out}")
    return 0
