"""Ray: corpus shards built as Ray tasks, and a corpus index served by Ray Serve.

Ray is optional (``pip install 'rest-lsp[cluster]'``) and imported only inside the functions that
use it; importing this module costs nothing.

Build: ``ray_executor`` runs ``indexer.building.shards.build_shard`` (the same function the in-process
partitioned build runs) as one Ray task per shard, with Ray's retries for crashed workers and
transient I/O errors; a shard that still fails stops the build (``partition.shard_failed``: the
shard, its files and the reason), and the previous ``CURRENT`` stays in place.

Serve: ``serve_index`` splits the shards into contiguous groups, one replica each, every replica
memory-mapping only its group.  The first group's replica is the HTTP ingress (``Router``): it
takes the requests of ``indexer.remote.tier``, asks the other groups' deployments over Serve handles
and searches its own shards meanwhile (``indexer.search.fanout``: probe, plan, gather, merge).  With one
group a request costs no hop beyond the HTTP proxy; each further group costs two handle calls
(measured in BENCHMARKS.md, "Scale-out").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from indexer.building import shards as build
from indexer.search import fanout
from indexer.building import partition
from indexer.remote.tier import INFO_PATH, RETRIEVE_PATH
from indexer.tokens import IndexTokenizer
from indexer.errors import ClusterError

log = logging.getLogger(__name__)

EXTRA_HINT = "install the cluster extra: pip install 'rest-lsp[cluster]'"
#: Ray retries of a shard task whose worker died or which raised an OSError
DEFAULT_RETRIES = 3
#: the Serve application's name
APP_NAME = "rest-lsp-datastore"


def require_ray():
    """The ``ray`` module, or a ClusterError saying which extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--ray needs Ray, which is not installed: {EXTRA_HINT}", extra="cluster") from exc
    return ray


def connect(address: str, *, num_cpus: int | None = None, object_store_mb: int = 256) -> bool:
    """Join or start Ray; True when this call started it (the caller then shuts it down).

    address: "local" starts a Ray instance here with ``num_cpus`` (default: every core);
    anything else goes to ``ray.init`` ("auto", "ray://host:10001", "host:6379").  A Ray already
    initialised in this process is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                     object_store_memory=object_store_mb * 2**20, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot connect to Ray at {address!r}: {exc}", address=address) from exc
    return True


# -- build ---------------------------------------------------------------------------------
_TOKENIZERS: dict[str, IndexTokenizer] = {}  # per worker process, by identity


def shard_task(spec: dict, files: list[tuple[str, int, int, str]], out_dir: str, sync: bool,
               threads: int) -> build.ShardResult:
    """One Ray task: ``build_shard`` on a worker (the tokenizer travels as ``spec``)."""
    from indexer.building.sources import SourceFile
    from indexer.tokens import from_portable

    tok = _TOKENIZERS.get(spec["identity"])
    if tok is None:
        # the tokenizer's thread pool starts with its first batch, sized by this: one per CPU
        # the task holds (Ray sets OMP_NUM_THREADS, which the suffix sort follows, the same way)
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        tok = _TOKENIZERS[spec["identity"]] = from_portable(spec)
    items = [(SourceFile(path, size, mtime), name) for path, size, mtime, name in files]
    return build.build_shard(items, out_dir, tok, sync=sync)


def ray_executor(*, retries: int = DEFAULT_RETRIES, cpus_per_task: float = 1, sync: bool = True,
                 task: Callable | None = None) -> partition.Executor:
    """An executor for ``partition.build_corpus_sharded`` running one Ray task per shard.

    Ray must be connected (``connect``).  retries: Ray's ``max_retries`` (worker crashes) and
    retries of OSError.  task: the task function (default ``shard_task``; tests wrap it to kill a
    worker).  Each task's tokenizer uses ``cpus_per_task`` threads.
    """
    ray = require_ray()
    threads = max(1, int(cpus_per_task))
    remote = ray.remote(task or shard_task).options(
        num_cpus=cpus_per_task, max_retries=retries, retry_exceptions=[OSError] if retries else False)

    def run(plans, out_dir: Path, tokenizer: IndexTokenizer, on_done) -> None:
        spec = ray.put(tokenizer.portable())
        pending = {}
        for i, plan in enumerate(plans):
            files = [(f.path, f.size, f.mtime_ns, name) for f, name in plan]
            pending[remote.remote(spec, files, str(out_dir), sync, threads)] = i
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    raise partition.shard_failed(i, len(plans), plans[i], _reason(exc)) from exc
                on_done(i, result)
        finally:
            for ref in pending:  # a failed shard stops the build: cancel the rest
                ray.cancel(ref, force=True)

    return run


class _Reason(str):
    """An error message with the path of the file it concerns (for ``shard_failed``)."""

    path: str | None = None


def _reason(exc: Exception) -> _Reason:
    """What went wrong in a task, without Ray's traceback wrapping."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        reason = _Reason(f"{type(cause).__name__}: {cause}")
        reason.path = getattr(cause, "path", None) or getattr(cause, "filename", None)
        return reason
    first = str(exc).strip().splitlines()
    return _Reason(f"{type(exc).__name__}: {first[0] if first else ''}")


def build_on_ray(config, tokenizer: IndexTokenizer, out_dir: str | Path, address: str, *,
                 shard_tokens: int = partition.DEFAULT_SHARD_TOKENS, num_cpus: int | None = None,
                 retries: int = DEFAULT_RETRIES, progress: partition.Progress | None = None,
                 sync: bool = True, task: Callable | None = None) -> partition.ShardedBuild:
    """``partition.build_corpus_sharded`` on the Ray cluster at ``address`` (see ``connect``)."""
    started = connect(address, num_cpus=num_cpus)
    ray = require_ray()
    try:
        name = f"ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"
        return partition.build_corpus_sharded(config, tokenizer, out_dir, shard_tokens=shard_tokens,
                                              executor=ray_executor(retries=retries, sync=sync, task=task),
                                              executor_name=name, progress=progress, sync=sync)
    finally:
        if started:
            ray.shutdown()


# -- serve ---------------------------------------------------------------------------------
def _deployments():
    """The Serve deployment classes (defined on first use: Serve is imported here only)."""
    from ray import serve
    from starlette.requests import Request as HTTPRequest
    from starlette.responses import Response

    from indexer.remote.tier import CONTENT_TYPE, Request, encode_error, encode_retrieval

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class ShardGroupDeployment:
        """One replica: some shards of the index, memory-mapped."""

        def __init__(self, index_dir: str, names: list[str], identity: str) -> None:
            self.group = fanout.ShardGroup.open(index_dir, names, identity)

        def probe(self, req):
            return self.group.probe(req)

        def gather(self, req, plan):
            return self.group.gather(req, plan)

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Router:
        """The HTTP endpoint, and the replica of the first shard group: decodes a request, searches
        its own shards while the other groups search theirs, merges."""

        def __init__(self, index_dir: str, names: list[str], others: list, info: dict) -> None:
            self.local = fanout.ShardGroup.open(index_dir, names, info["tokenizer"])
            self.others = others
            self.info = info
            self.n_shards = info["shards"]

        async def __call__(self, http: HTTPRequest) -> Response:
            import time

            import msgpack

            path = http.url.path.rstrip("/")
            if http.method == "GET" and path.endswith(INFO_PATH):
                return Response(msgpack.packb(self.info), media_type=CONTENT_TYPE)
            if http.method != "POST" or not path.endswith(RETRIEVE_PATH):
                return Response(b"not found", status_code=404)
            t0 = time.perf_counter()
            try:
                req = Request.decode(await http.body())
                if not self.others:  # every shard is here: one round, no hop
                    candidates, longest = self.local.retrieve(req)
                else:  # two rounds; each asks the other groups first, then searches here meanwhile
                    pending = [g.probe.remote(req) for g in self.others]
                    probes = [self.local.probe(req)] + [await r for r in pending]
                    p = fanout.plan(req, probes, self.n_shards)
                    gathered = []
                    if p.lengths:
                        pending = [g.gather.remote(req, p) for g in self.others]
                        gathered = [self.local.gather(req, p)] + [await r for r in pending]
                    candidates, longest = fanout.merge(req, p, gathered)
            except Exception as exc:  # every failure goes back as a msgpack error body
                status, body = encode_error(exc)
                if status == 500:
                    log.exception("retrieval failed")
                return Response(body, status_code=status, media_type=CONTENT_TYPE)
            return Response(encode_retrieval(candidates, longest, time.perf_counter() - t0),
                            media_type=CONTENT_TYPE)

    return ShardGroupDeployment, Router


def build_app(index_dir: str | Path, replicas: int):
    """The Serve application for a corpus index, its shards split over ``replicas`` groups."""
    from indexer.storage.shard import MANIFEST, read_manifest

    index_dir = str(Path(index_dir).resolve())
    pointer, groups = fanout.split_shards(index_dir, replicas)
    tokens = sum(int(read_manifest(Path(index_dir) / n / MANIFEST)["n_tokens"]) for g in groups for n in g)
    info = {"v": 1, "tokenizer": pointer["tokenizer"], "shards": sum(len(g) for g in groups),
            "replicas": len(groups), "tokens": tokens, "index_dir": index_dir}
    Group, Router = _deployments()
    others = [Group.options(name=f"shards-{i}").bind(index_dir, names, pointer["tokenizer"])
              for i, names in enumerate(groups) if i]
    return Router.bind(index_dir, groups[0], others, info), info


def serve_index(index_dir: str | Path, *, address: str = "local", host: str = "127.0.0.1", port: int = 8000,
                replicas: int = 2, num_cpus: int | None = None) -> dict:
    """Deploy the index on Ray Serve at http://host:port (returns when it answers); its info."""
    connect(address, num_cpus=num_cpus)
    from ray import serve

    app, info = build_app(index_dir, replicas)
    try:
        serve.start(http_options={"host": host, "port": port},
                    logging_config={"enable_access_log": False, "log_level": "WARNING"})
        serve.run(app, name=APP_NAME, route_prefix="/")
    except Exception as exc:  # Serve raises a variety (RayServeException, RuntimeError, ...)
        raise ClusterError(f"cannot serve {index_dir} on {host}:{port}: {exc}", host=host, port=port) from exc
    return {**info, "url": f"http://{host}:{port}"}


def stop_serving() -> None:
    """Take the application down (Ray keeps running)."""
    from ray import serve

    serve.delete(APP_NAME)


__all__ = ["build_app", "build_on_ray", "connect", "ray_executor", "require_ray", "serve_index",
           "shard_task", "stop_serving"]
