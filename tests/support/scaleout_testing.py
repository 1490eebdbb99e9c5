"""Helpers of the scale-out tests: a generated multi-shard corpus, random queries, comparisons."""

from __future__ import annotations

import random
from pathlib import Path

from indexer_fixtures import SAMPLE_CODE, make_workspace

#: target tokens per shard of the generated corpus: several shards from ~40 small files
SHARD_TOKENS = 900
MODES = ("longest", "all_lengths", "rest_paper")


def make_corpus(root: Path, n_files: int = 40, seed: int = 0) -> Path:
    """Python files that share most of their text (many matches, ranges over max_candidates)."""
    rng = random.Random(seed)
    names = ["Point", "Vec", "Pair", "Node", "Item", "Box"]
    files = {}
    for i in range(n_files):
        text = SAMPLE_CODE.replace("Point", rng.choice(names)).replace("add", rng.choice(["add", "plus", "sum2"]))
        text += f"\n\ndef f{i}(x):\n    return x * {i} + {rng.randint(0, 9)}\n" * rng.randint(1, 4)
        files[f"pkg{i % 4}/mod{i:02d}.py"] = text
    return make_workspace(root, files)


def build_index(root: Path, tokenizer, n_files: int, seed: int, min_shards: int) -> tuple[Path, list[str]]:
    """A partitioned corpus index of a generated corpus under ``root``: (index dir, shard names)."""
    from indexer.building import partition
    from rest_lsp.config.schema import IndexConfig

    corpus = make_corpus(root / "corpus", n_files, seed=seed)
    cfg = IndexConfig(corpus_roots=[str(corpus)])
    shard_tokens = shard_tokens_for(corpus, min_shards)
    report = partition.build_corpus_sharded(cfg, tokenizer, root / "index", shard_tokens=shard_tokens, sync=False)
    assert len(report.shards) >= min_shards
    return root / "index", report.shards


def shard_tokens_for(corpus: Path, min_shards: int) -> int:
    """A shard size that cuts ``corpus`` into at least ``min_shards`` shards wherever it lies.

    The cut points hash each file's stored (absolute) name, so how many shards the anchors give
    depends on the temporary directory; the size cap (twice the target) does not: every shard but
    the last holds less than the cap plus one file, so a cap of ``total / min_shards - largest``
    guarantees the count.
    """
    from indexer.building.partition import BYTES_PER_TOKEN

    sizes = [p.stat().st_size for p in corpus.rglob("*.py")]
    cap = sum(sizes) / min_shards - max(sizes)
    return min(SHARD_TOKENS, int(cap / 2 / BYTES_PER_TOKEN))


def random_contexts(tokenizer, n: int, seed: int = 0) -> list[list[int]]:
    """Contexts cut from the sample code and from noise: long, short, matching and not."""
    rng = random.Random(seed)
    ids = tokenizer.encode(SAMPLE_CODE)
    out = []
    for _ in range(n):
        end = rng.randint(1, len(ids))
        ctx = ids[max(0, end - rng.randint(1, 24)):end]
        if rng.random() < 0.2:
            ctx = ctx + [rng.randrange(tokenizer.vocab_size)]
        out.append(ctx)
    return out


def query_answers(store, contexts, modes=MODES) -> list:
    """Every (candidates, suffix_len) a datastore gives for the contexts in each mode."""
    return [(r.candidates, r.suffix_len) for mode in modes for ctx in contexts
            for r in [store.retrieve(ctx, mode=mode)]]


class LoopbackHttp:
    """A ``ThreadingHTTPServer`` on a free 127.0.0.1 port serving ``handler`` in a thread: the
    served index of the remote-tier tests (their handlers answer as ``datastore serve`` does)."""

    def __init__(self, handler: type) -> None:
        import http.server
        import threading

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def answer(handler, status: int, body: bytes) -> None:
    """Send one msgpack answer from a ``BaseHTTPRequestHandler`` (HTTP/1.1, with its length)."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/msgpack")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
