"""Where the crop shards run: a thread pool in this process, or a Dask cluster (prefect-dask)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from facegan.config.errors import InputError

CONNECT_TIMEOUT = 20  # seconds for the Dask handshake once the scheduler's port answers


def _host_port(address: str) -> tuple[str, str, int]:
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address.strip(), strict=False)
        if scheme != "tcp":
            raise ValueError(f"protocol {scheme!r} is not supported, only tcp")
        return (scheme, *parse_host_port(location, default_port=8786))
    except ValueError as exc:
        raise InputError(f"bad Dask scheduler address {address!r} (use tcp://host:8786): {exc}") from None


def connect_cluster(address: str) -> tuple[str, int]:
    """Check that a Dask scheduler answers at `address` (host, host:port or tcp://host:port) and
    has workers. Returns the full address and the workers' total threads. Any failure is one
    InputError line (bad address, unreachable, not a scheduler, no workers)."""
    from distributed.comm.addressing import unparse_host_port

    scheme, host, port = _host_port(address)
    address = f"{scheme}://{unparse_host_port(host, port)}"
    try:  # fast, clear failure for a refused connection or an unknown host
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise InputError(f"Dask scheduler {address!r} is unreachable: {exc.strerror or exc}") from None
    try:
        info = _run_async(_identity(address))
    except TimeoutError:
        raise InputError(f"no answer from a Dask scheduler at {address!r} within {CONNECT_TIMEOUT} s") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot talk to a Dask scheduler at {address!r}: {exc}") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        raise InputError(f"{address!r} is not a Dask scheduler")
    threads = sum(int(w.get("nthreads", 0)) for w in info.get("workers", {}).values())
    if threads == 0:
        raise InputError(f"the Dask scheduler at {address!r} has no workers (start `dask worker {address}`)")
    if not _prefect_api_url() and not _is_loopback(host):
        raise InputError(
            f"the Dask workers of {address} report task runs to Prefect: set PREFECT_API_URL to "
            "a Prefect server they can reach (this command's temporary one listens on 127.0.0.1)"
        )
    return address, threads


async def _identity(address: str) -> dict:
    import asyncio

    from distributed.core import rpc

    async def ask() -> dict:
        async with rpc(address, timeout=CONNECT_TIMEOUT) as scheduler:
            return await scheduler.identity()

    # one deadline for connect + handshake + reply (a non-Dask server may never answer)
    return await asyncio.wait_for(ask(), CONNECT_TIMEOUT)


def _run_async(coro):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever runs in this thread
        return pool.submit(asyncio.run, coro).result()


def _prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Without PREFECT_API_URL the flow talks to a temporary Prefect server; the Dask workers get
    its URL with each task's settings (else every worker process would start a server of its own)."""
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    context = FlowRunContext.get()
    if _prefect_api_url() or context is None or context.client is None:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: str(context.client.api_url).rstrip("/")}):
        yield


@contextmanager
def shard_runner(workers: int, dask_address: str | None) -> Iterator:
    """A started Prefect task runner for the crop shards: DaskTaskRunner connected to the
    scheduler at `dask_address` when given, else a ThreadPoolTaskRunner of `workers` threads."""
    if not dask_address:
        from prefect.task_runners import ThreadPoolTaskRunner

        with ThreadPoolTaskRunner(max_workers=workers) as runner:
            yield runner
        return
    from prefect_dask import DaskTaskRunner

    with (
        _workers_report_here(),
        DaskTaskRunner(address=dask_address, client_kwargs={"timeout": CONNECT_TIMEOUT}) as runner,
    ):
        try:
            _ = runner.client  # connect now (the runner connects lazily on the first submit)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot connect to the Dask scheduler at {dask_address!r}: {exc}") from None
        yield runner
