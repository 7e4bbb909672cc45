"""``mritune env``: versions, platform and devices, paste-ready for bug reports."""

from __future__ import annotations

import argparse
import os
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions, platform and devices for bug reports")
    p.set_defaults(func=run)


def env_info() -> dict[str, str]:
    import torch

    from mritune.engine import library_versions

    info = library_versions()
    info["platform"] = platform.platform()
    info["cpu threads"] = f"{os.cpu_count()} cores, torch uses {torch.get_num_threads()}"
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            prop = torch.cuda.get_device_properties(i)
            info[f"cuda:{i}"] = f"{prop.name}, {prop.total_memory / 2**30:.1f} GiB"
        info["cuda"] = str(torch.version.cuda)
    else:
        info["cuda"] = "not available (CPU only)"
    info["mps"] = str(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return info


def run(args: argparse.Namespace) -> int:
    info = env_info()
    width = max(map(len, info))
    print("```")
    for k, v in info.items():
        print(f"{k:<{width}}  {v}")
    print("```")
    return 0
