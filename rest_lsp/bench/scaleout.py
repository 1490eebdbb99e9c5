"""The scale-out benchmark: corpus build throughput in-process and on Ray, remote-tier latency.

    python -m rest_lsp.bench.scaleout [--corpus DIR ...] [--include GLOB ...] [--shard-tokens N]
                                     [--work DIR] [--out FILE]        (= rest-lsp datastore bench)

Build (each from scratch into its own directory): today's streaming in-process build; the
partitioned build in-process with 1 and with 2 threads (each in a subprocess, so the thread
pools are sized by the environment); the same partitioned build on a local Ray instance with 1
and with 2 CPUs (one task per CPU, one thread per task).  Ray's start-up is timed apart.

Serve: the partitioned index on Ray Serve over 127.0.0.1, with 1 replica (one round) and 2
replicas (probe + gather: two rounds); retrieval latency of the local tier and of the remote tier
(a blocking HTTP request), p50 / p99, both compared for equality; and the daemon's step: a
``Datastore`` with the local corpus plus the remote tier under its default budget.

Needs the cluster extra (Ray with Serve).  Writes JSON (default ``bench-out/scaleout.json``) and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from rest_lsp.bench.index import _pct, cpu_name, query_contexts

#: the partitioned in-process build, run in a subprocess (so its thread pools follow its env)
_INPROC = """
import json, sys, time
from indexer.building import partition
from indexer.tokens import load_tokenizer
from rest_lsp.config.schema import IndexConfig
a = json.loads(sys.argv[1])
tok = load_tokenizer(a["tokenizer"])
cfg = IndexConfig(corpus_roots=a["corpus"], corpus_include_globs=a["include"])
t0 = time.perf_counter()
if a["streaming"]:
    from indexer.workspace_index import build_corpus
    s = build_corpus(cfg, tok, a["out"])
    r = {"shards": s.shards, "files": s.files, "tokens": s.tokens, "bytes": s.bytes, "reused_shards": 0}
else:
    r = partition.build_corpus_sharded(cfg, tok, a["out"], shard_tokens=a["shard_tokens"]).as_dict()
r["seconds"] = time.perf_counter() - t0
print(json.dumps(r))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _row(name: str, r: dict, cores: int) -> dict:
    rate = r["tokens"] / r["seconds"] / 1e6
    tasks = [s["seconds"]["total"] for s in r.get("per_shard", [])]
    return {"name": name, "seconds": r["seconds"], "tokens": r["tokens"], "files": r["files"],
            "shards": len(r["shards"]), "mtok_per_s": rate, "cores": cores, "mtok_per_s_per_core": rate / cores,
            "shard_names": r["shards"], "reused_shards": r.get("reused_shards", 0),
            # time inside build_shard, summed over shards and its longest: the rest of the wall
            # time is the walk, scheduling, worker start-up and waiting for the last shard
            "task_seconds_sum": sum(tasks), "task_seconds_max": max(tasks, default=0.0),
            "stage_seconds": {k: sum(s["seconds"].get(k, 0.0) for s in r.get("per_shard", []))
                              for k in ("read", "tokenize", "index")}}


def bench_builds(args, work: Path) -> dict:
    """Every build of the corpus, fresh, one after the other."""
    from indexer.remote import cluster
    from indexer.building import partition
    from indexer.tokens import load_tokenizer
    from rest_lsp.config.schema import IndexConfig

    out: dict = {"runs": []}
    base = {"tokenizer": args.tokenizer, "corpus": args.corpus, "include": args.include,
            "shard_tokens": args.shard_tokens}
    for name, threads, streaming in (("in-process, streaming (today's build), 2 threads", 2, True),
                                     ("in-process, partitioned, 1 thread", 1, False),
                                     ("in-process, partitioned, 2 threads", 2, False)):
        target = work / f"inproc-{threads}-{'stream' if streaming else 'part'}"
        shutil.rmtree(target, ignore_errors=True)
        env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([sys.executable, "-c", _INPROC, json.dumps({**base, "out": str(target),
                                                                           "streaming": streaming})],
                              env=env, check=True, capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        row = _row(name, r, threads)
        row["disk_bytes"] = _disk(target)
        out["runs"].append(row)
        _say(args, row)
    reference = work / "inproc-2-part"
    tok = load_tokenizer(args.tokenizer)
    cfg = IndexConfig(corpus_roots=args.corpus, corpus_include_globs=args.include)
    ray = cluster.require_ray()
    for cpus in (1, 2):
        target = work / f"ray-{cpus}"
        shutil.rmtree(target, ignore_errors=True)
        t0 = time.perf_counter()
        cluster.connect("local", num_cpus=cpus)
        startup = time.perf_counter() - t0
        try:
            report = partition.build_corpus_sharded(cfg, tok, target, shard_tokens=args.shard_tokens,
                                                    executor=cluster.ray_executor(), executor_name=f"ray {cpus}")
            again = partition.build_corpus_sharded(cfg, tok, target, shard_tokens=args.shard_tokens,
                                                   executor=cluster.ray_executor(), executor_name=f"ray {cpus}")
        finally:
            ray.shutdown()
        row = _row(f"Ray, local instance, {cpus} CPU{'s' if cpus > 1 else ''} (1 task per CPU, 1 thread per task)",
                   report.as_dict(), cpus)
        row["ray_start_seconds"] = startup
        row["rerun_all_reused_seconds"] = again.seconds
        row["identical_to_in_process"] = report.shards == out["runs"][2]["shard_names"] and all(
            (target / n / f).read_bytes() == (reference / n / f).read_bytes()
            for n in report.shards for f in ("tokens.bin", "sa.bin"))
        row["disk_bytes"] = _disk(target)
        out["runs"].append(row)
        _say(args, row)
    return out


def bench_serving(args, work: Path) -> dict:
    """Local tier vs remote tier latency over loopback, 1 and 2 replicas; the daemon's step."""
    from indexer.remote import cluster
    from indexer.datastore import Datastore
    from indexer.remote.tier import Request, RemoteTier
    from indexer.tokens import load_tokenizer
    from rest_lsp.config.schema import IndexConfig, RetrievalConfig

    tok = load_tokenizer(args.tokenizer)
    index = work / "inproc-2-part"
    local = Datastore.open(index, tok)
    contexts = query_contexts(tok, args.queries, seed=1)
    out: dict = {"queries": len(contexts), "local": {}, "remote": {}}
    for mode in ("longest", "all_lengths"):
        for ctx in contexts[:50]:
            local.retrieve(ctx, mode=mode)
        times = []
        for ctx in contexts:
            t0 = time.perf_counter()
            local.retrieve(ctx, mode=mode)
            times.append((time.perf_counter() - t0) * 1000)
        out["local"][mode] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99)}
        print(f"  local tier, {mode}: p50 {_pct(times, 50):.3f} ms, p99 {_pct(times, 99):.3f} ms", file=sys.stderr)
    ray = cluster.require_ray()
    cluster.connect("local", num_cpus=2)
    try:
        port = _free_port()  # Serve's HTTP proxy keeps its first port: both deployments use it
        for replicas in (1, 2):
            info = cluster.serve_index(index, port=port, replicas=replicas)  # replaces the previous one
            tier = RemoteTier(info["url"], tok.identity, budget_ms=5, retry_s=0)
            res: dict = {"replicas": info["replicas"], "shards": info["shards"]}
            times = []
            for i in range(250):  # the HTTP proxy and the ingress alone: /info searches nothing
                t0 = time.perf_counter()
                tier.info()
                if i >= 50:
                    times.append((time.perf_counter() - t0) * 1000)
            res["info"] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99)}
            print(f"  GET /info (proxy + ingress, no search), {replicas} replica(s): p50 {_pct(times, 50):.2f} ms, "
                  f"p99 {_pct(times, 99):.2f} ms", file=sys.stderr)
            for mode in ("longest", "all_lengths"):
                for ctx in contexts[:50]:
                    tier.fetch(Request.of_query(tok.identity, ctx, local.query(ctx, mode=mode)))
                times, mismatches = [], 0
                for ctx in contexts:
                    req = Request.of_query(tok.identity, ctx, local.query(ctx, mode=mode))
                    t0 = time.perf_counter()
                    r = tier.fetch(req)
                    times.append((time.perf_counter() - t0) * 1000)
                    want = local.retrieve(ctx, mode=mode)
                    mismatches += (r.candidates, r.suffix_len) != (want.candidates, want.suffix_len)
                res[mode] = {"p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99), "mismatches": mismatches}
                print(f"  remote tier, {replicas} replica(s), {mode}: p50 {_pct(times, 50):.2f} ms, "
                      f"p99 {_pct(times, 99):.2f} ms, {mismatches} answers differ from the local tier",
                      file=sys.stderr)
            if replicas == 2:  # a daemon's steps: local corpus + remote tier, steps a forward pass apart
                res["daemon_step"] = []
                for budget in (IndexConfig().remote_budget_ms, 4 * IndexConfig().remote_budget_ms):
                    daemon = Datastore.open(index, tok, IndexConfig(remote_budget_ms=budget),
                                            retrieval=RetrievalConfig())
                    daemon.use_remote([info["url"]])
                    daemon.remotes[0].retry_s = 0.0  # measure every step's wait, not the back-off
                    times = []
                    for ctx in contexts[:args.daemon_steps]:
                        t0 = time.perf_counter()
                        daemon.retrieve(ctx, mode="all_lengths")
                        times.append((time.perf_counter() - t0) * 1000)
                        time.sleep(args.step_gap_ms / 1000)  # the model's forward pass between steps
                    st = daemon.remotes[0].stats()
                    row = {"budget_ms": budget, "step_gap_ms": args.step_gap_ms, "p50_ms": _pct(times, 50),
                           "p99_ms": _pct(times, 99), **{k: st[k] for k in ("calls", "answered", "late", "errors",
                                                                              "skipped")}}
                    res["daemon_step"].append(row)
                    print(f"  daemon step (local corpus + remote tier, budget {budget:g} ms, all_lengths, steps "
                          f"{args.step_gap_ms:g} ms apart): p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms; "
                          f"remote answered in time {st['answered']} of {st['calls']} calls", file=sys.stderr)
                    daemon.close()
            out["remote"][f"{replicas}_replicas"] = res
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    return out


def _say(args, row: dict) -> None:
    inside = f", {row['task_seconds_sum']:.1f} s inside the shard tasks" if row["task_seconds_sum"] else ""
    print(f"  {row['name']}: {row['seconds']:.1f} s, {row['mtok_per_s']:.2f} M tokens/s "
          f"({row['mtok_per_s_per_core']:.2f} per core), {row['shards']} shards{inside}", file=sys.stderr)


def table(result: dict) -> str:
    """The figures as Markdown tables."""
    lines = ["| build | seconds | M tokens/s | per core | shards | inside shard tasks: sum / longest s |",
             "|---|---|---|---|---|---|"]
    for r in result["build"]["runs"]:
        extra = f" (+{r['ray_start_seconds']:.1f} s Ray start)" if "ray_start_seconds" in r else ""
        inside = f"{r['task_seconds_sum']:.1f} / {r['task_seconds_max']:.1f}" if r.get("task_seconds_sum") else ""
        lines.append(f"| {r['name']} | {r['seconds']:.1f}{extra} | {r['mtok_per_s']:.2f} | "
                     f"{r['mtok_per_s_per_core']:.2f} | {r['shards']} | {inside} |")
    s = result["serve"]
    lines += ["", "| retrieval (per query) | longest p50 / p99 ms | all_lengths p50 / p99 ms | differ |",
              "|---|---|---|---|"]
    lines.append(f"| local tier (mmap, in-process) | {s['local']['longest']['p50_ms']:.3f} / "
                 f"{s['local']['longest']['p99_ms']:.3f} | {s['local']['all_lengths']['p50_ms']:.3f} / "
                 f"{s['local']['all_lengths']['p99_ms']:.3f} | |")
    for key, r in s["remote"].items():
        if "info" in r:
            lines.append(f"| GET /info over loopback, {r['replicas']} replica(s): HTTP proxy + ingress, no search | "
                         f"{r['info']['p50_ms']:.2f} / {r['info']['p99_ms']:.2f} | | |")
        lines.append(f"| remote tier, HTTP over loopback, {r['replicas']} replica(s) | {r['longest']['p50_ms']:.2f} / "
                     f"{r['longest']['p99_ms']:.2f} | {r['all_lengths']['p50_ms']:.2f} / {r['all_lengths']['p99_ms']:.2f}"
                     f" | {r['longest']['mismatches'] + r['all_lengths']['mismatches']} |")
    for d in s["remote"].get("2_replicas", {}).get("daemon_step", []):
        lines.append(f"| daemon step: local corpus + remote tier (2 replicas), budget {d['budget_ms']:g} ms | | "
                     f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} | remote in time: {d['answered']} of {d['calls']} |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    stdlib = sysconfig.get_paths()["stdlib"]
    p.add_argument("--corpus", action="append", default=None, metavar="DIR",
                   help="corpus root (repeatable; default: the standard library without site-packages)")
    p.add_argument("--include", action="append", default=None, metavar="GLOB",
                   help="files taken from the corpus (repeatable; default every text file)")
    p.add_argument("--shard-tokens", type=int, default=2_000_000, help="target tokens per shard")
    p.add_argument("--queries", type=int, default=1000, help="retrieval queries per measurement")
    p.add_argument("--daemon-steps", type=int, default=300, help="decoding steps of the daemon measurement")
    p.add_argument("--step-gap-ms", type=float, default=15.0,
                   help="time between a daemon's steps (its model's forward pass: ~15 ms for the embedded model)")
    p.add_argument("--tokenizer", default=None, help="tokenizer.json (default: the embedded model's)")
    p.add_argument("--work", default="/tmp/rest-lsp-scaleout-bench", help="scratch directory (replaced)")
    p.add_argument("--out", default="bench-out/scaleout.json")
    p.add_argument("--skip-build", action="store_true", help="reuse the partitioned index in --work")
    p.set_defaults(stdlib=stdlib)


def run(args: argparse.Namespace) -> int:
    from indexer.tokens import default_tokenizer_path

    args.corpus = args.corpus or [args.stdlib]
    args.include = args.include if args.include is not None else []
    args.tokenizer = args.tokenizer or str(default_tokenizer_path())
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
              "corpus": args.corpus, "include": args.include, "shard_tokens": args.shard_tokens,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "loadavg_start": os.getloadavg()}
    print("build:", file=sys.stderr)
    result["build"] = {"runs": []} if args.skip_build else bench_builds(args, work)
    print("serve:", file=sys.stderr)
    result["serve"] = bench_serving(args, work)
    result["loadavg_end"] = os.getloadavg()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"\nwritten: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest_lsp.bench.scaleout", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
