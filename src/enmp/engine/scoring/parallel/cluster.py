"""Ray set-up: connect to a cluster or start a quiet local one bound to loopback, and plan the actors.

Nothing here runs at import: Ray reads some settings from the environment when it is imported, so
`import_ray` sets them first, and only a parallel run ever calls it (serial runs never load Ray).
Local clusters are bound to 127.0.0.1 (Ray otherwise binds the machine's external address) and keep Ray's
token authentication on, with a random per-process token passed through the environment instead of being
written to ~/.ray/auth_token.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Optional

from ....config import RunConfig
from ....errors import EnmpError, first_line

LOOPBACK = "127.0.0.1"
_TOKEN = secrets.token_hex(32)  # one token per driver process: Ray caches the token it loaded first


def import_ray():
    """Ray, imported with the environment it must see at import (inherited by a local cluster's processes)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    return ray


def start_ray(cfg: RunConfig) -> bool:
    """Connect to `parallel.ray_address` or start a quiet local cluster; True if this call started Ray."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    address = cfg.parallel.ray_address
    try:
        if address:
            ray.init(address=address, **common)
        else:
            # Token auth stays on (Ray's default), but with a token held in the environment of this process
            # and the cluster it starts, so nothing is written to the user's home directory.
            if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
                os.environ.setdefault("RAY_AUTH_MODE", "token")
                os.environ["RAY_AUTH_TOKEN"] = _TOKEN
                _reload_ray_auth()
            ray.init(num_cpus=cfg.parallel.workers, include_dashboard=False, _node_ip_address=LOOPBACK,
                     object_store_memory=128 * 1024 ** 2, **common)
    except Exception as e:
        detail = first_line(e, with_type=True)
        if address:
            raise EnmpError(f"cannot connect to Ray ({detail})", where=f"--ray-address {address}",
                            fix="check the address (HOST:6379 or ray://HOST:10001), the cluster's auth token "
                                "(RAY_AUTH_TOKEN or ~/.ray/auth_token) and that it runs the same Ray and Python "
                                "versions") from None
        raise EnmpError(f"cannot start a local Ray cluster ({detail})", where="--workers",
                        fix="check free memory and /tmp space, or run with --workers 1") from None
    return True


def _reload_ray_auth() -> None:
    """Make this process see the auth settings just put in the environment (Ray read them at import)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # what Ray itself does when it turns token auth on for a new local cluster
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # another Ray version: it reads the environment when ray.init starts the cluster
        pass


def _wants_gpu(device: str) -> Optional[bool]:
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    if device == "auto":
        return None  # decided from the cluster's resources
    raise EnmpError(f"unknown device '{device}'", where="--device", fix="use auto, cpu, cuda or cuda:N")


def plan_workers(cfg: RunConfig, cluster_gpus: float, cpu_count: Optional[int]) -> dict:
    """Actor options: one GPU per actor on CUDA, else one CPU slot; threads so N workers fit the cores."""
    n = cfg.parallel.workers
    gpu = _wants_gpu(cfg.eval.device)
    if gpu is None:
        gpu = cluster_gpus >= 1
    if gpu and cluster_gpus < n:
        raise EnmpError(f"{n} workers need {n} GPUs (one actor per GPU) but the Ray cluster has "
                        f"{int(cluster_gpus)}", where="--workers",
                        fix=f"use --workers {max(1, int(cluster_gpus))} or --device cpu")
    threads = cfg.eval.threads or max(1, (cpu_count or 1) // n)
    # Inside a GPU actor Ray sets CUDA_VISIBLE_DEVICES to its one GPU, so "cuda" (= cuda:0) is that GPU.
    device = "cuda" if gpu else "cpu"
    options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
    return {"options": options, "threads": threads, "device": device}
