"""``rest-lsp datastore serve``: a corpus index served to many daemons by Ray Serve."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``datastore`` subcommand."""
    p = sub.add_parser("datastore", help="serve a corpus index to many daemons (Ray Serve; the cluster extra)")
    dsub = p.add_subparsers(dest="datastore_command", metavar="ACTION")
    s = dsub.add_parser("serve", help="serve a corpus index over HTTP (msgpack), its shards spread over replicas")
    s.add_argument("--index-dir", metavar="DIR", required=True,
                   help="a corpus index (`rest-lsp index build --corpus DIR --index-dir DIR [--ray ...]`)")
    s.add_argument("--ray", metavar="ADDRESS", default="local",
                   help="'local' (start Ray here, the default) or what ray.init takes ('auto', 'ray://host:10001')")
    s.add_argument("--host", default="127.0.0.1", help="address the HTTP endpoint listens on")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--replicas", type=int, default=2, help="shard groups, one replica each (at most one per shard)")
    s.add_argument("--ray-cpus", type=int, default=None, metavar="N", help="CPUs of a local Ray instance")
    s.set_defaults(func=run_serve)
    from rest_lsp.bench import scaleout as scaleout_bench  # standard library imports only

    b = dsub.add_parser("bench", help="build throughput in-process vs Ray, remote-tier latency (python -m rest_lsp.bench.scaleout)")
    scaleout_bench.add_arguments(b)
    b.set_defaults(func=lambda args: scaleout_bench.run(args))
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_serve(args) -> int:
    import threading

    from indexer.remote import cluster

    info = cluster.serve_index(args.index_dir, address=args.ray, host=args.host, port=args.port,
                               replicas=args.replicas, num_cpus=args.ray_cpus)
    print(json.dumps(info), flush=True)
    print(f"serving {info['tokens']:,} tokens in {info['shards']} shard(s) over {info['replicas']} replica(s) "
          f"at {info['url']}; point daemons at it with [index] remote_datastores = [\"{info['url']}\"]",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop_serving()
    return 0
