"""Retrieval over a corpus index whose shards are spread over several replicas, merged exactly.

A local ``Datastore`` searches all the shards of its corpus tier together: the longest matching
suffix is the longest over every shard, and when a suffix has more matches than
``max_candidates`` each shard samples its share of them, in proportion to its range.  Replicas
that each hold some of the shards answer the same in two rounds:

1. ``ShardGroup.probe``: each group's longest match and, for every length up to it, how many
   suffix-array rows match in its shards;
2. ``plan`` (the router) picks the lengths the mode asks for from the global longest, with the
   global row totals and shard count; ``ShardGroup.gather`` counts the continuations of those
   lengths in its shards, sampling with the global totals (``retrieval.gather_level``);
3. ``merge`` (the router) adds the groups' counts in shard order, which is the order a local
   search discovers them in, and ranks them as ``retrieval.to_candidates`` does.

The result equals ``Datastore.retrieve`` over the same shards, candidate for candidate, in every
mode (property-tested).  A single group answers in one round (``ShardGroup.retrieve``).  Nothing
here knows about Ray: ``indexer.remote.cluster`` wires these into Serve deployments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from indexer.storage import indexdir
from indexer.remote.tier import Request
from indexer.search.retrieval import Candidate, gather_level, suffix_range, tier_longest, to_candidates
from indexer.storage.shard import Shard
from indexer.search.suffix import ShardView
from indexer.errors import DatastoreError, TokenizerMismatchError

#: the source the served tier's candidates carry (it is a corpus tier)
SOURCE = "corpus"

Pairs = list[tuple[tuple[int, ...], int]]


@dataclass(frozen=True)
class Probe:
    """One group's first-round answer."""

    longest: int  # its longest matching suffix length (0 = none)
    rows: dict[int, int]  # length -> matching SA rows over its shards, lengths min_suffix..longest


@dataclass(frozen=True)
class Plan:
    """What every group gathers in the second round."""

    lengths: tuple[int, ...]  # longest first
    totals: dict[int, int]  # length -> matching rows over every shard
    n_shards: int
    first_k: bool  # "rest_paper": the first max_candidates rows of each shard, no sharing
    longest: int


class ShardGroup:
    """Some shards of one corpus index, memory-mapped: what one replica serves."""

    def __init__(self, shards: Sequence[Shard], tokenizer_identity: str, vocab_size: int) -> None:
        if not shards:
            raise DatastoreError("a shard group needs at least one shard")
        self.identity = tokenizer_identity
        self.shards = list(shards)
        self.views = [ShardView(s) for s in self.shards]
        self.token_dtype = self.shards[0].arrays.tokens.dtype
        self.vocab_size = vocab_size

    @classmethod
    def open(cls, index_dir: str | os.PathLike, names: Sequence[str], tokenizer_identity: str) -> "ShardGroup":
        """Memory-map the named shards of an index directory (checked as ``Shard.open`` checks)."""
        shards = [Shard.open(Path(index_dir) / n, tokenizer_identity=tokenizer_identity) for n in names]
        if not shards:
            raise DatastoreError(f"a shard group of {index_dir} needs at least one shard", index_dir=str(index_dir))
        return cls(shards, tokenizer_identity, int(shards[0].manifest["vocab_size"]))

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    def _query(self, req: Request):
        if req.tokenizer != self.identity:
            raise TokenizerMismatchError(
                f"this index was built with tokenizer {self.identity[:12]}, the request uses {req.tokenizer[:12]}",
                expected=self.identity, found=req.tokenizer)
        return req.query(self.token_dtype, self.vocab_size)

    def probe(self, req: Request) -> Probe:
        q = self._query(req)
        longest = tier_longest(self.views, q)
        # "rest_paper" takes the first length with any matching row, as its local search does
        # (a pattern may run into a separator there: every length up to the context's is asked)
        top = min(q.max_suffix, q.usable) if q.mode == "rest_paper" else longest
        rows = {}
        for length in range(q.min_suffix, top + 1):
            rows[length] = sum(hi - lo for lo, hi in (suffix_range(v, q.context, length) for v in self.views))
        return Probe(longest, rows)

    def gather(self, req: Request, plan: Plan) -> dict[int, Pairs]:
        """Counted continuations of the plan's lengths in this group's shards, in shard order."""
        q = self._query(req)
        out: dict[int, Pairs] = {}
        distinct = 0
        for length in plan.lengths:
            ranges = [suffix_range(v, q.context, length) for v in self.views]
            found = gather_level(self.views, ranges, length, q, plan.first_k, total=plan.totals.get(length, 0),
                                 n_shards=plan.n_shards)
            out[length] = list(found.items())
            distinct += len(found)
            # the merged list holds at least as many as this group's: where this group has
            # enough, the router has stopped already
            if q.mode == "all_lengths" and q.max_nodes and distinct >= q.max_nodes:
                break
        return out

    def retrieve(self, req: Request) -> tuple[list[Candidate], int]:
        """Both rounds here: the answer when this group holds every shard."""
        p = plan(req, [self.probe(req)], len(self.shards))
        return merge(req, p, [self.gather(req, p)])


def plan(req: Request, probes: Sequence[Probe], n_shards: int) -> Plan:
    """The second round's lengths and totals from every group's probe."""
    longest = max((p.longest for p in probes), default=0)
    totals: dict[int, int] = {}
    for p in probes:
        for length, rows in p.rows.items():
            totals[length] = totals.get(length, 0) + rows
    if req.mode == "rest_paper":
        longest = max((length for length, rows in totals.items() if rows), default=0)
    if not longest:
        lengths: tuple[int, ...] = ()
    elif req.mode == "all_lengths":
        lengths = tuple(range(longest, req.min_suffix - 1, -1))
    else:  # "longest", and "rest_paper" (the first length that matches anywhere)
        lengths = (longest,)
    return Plan(lengths, totals, n_shards, req.mode == "rest_paper", longest)


def merge(req: Request, p: Plan, gathered: Sequence[dict[int, Pairs]]) -> tuple[list[Candidate], int]:
    """The candidates of every group's gather, as one local search over all their shards lists them."""
    out: list[Candidate] = []
    for length in p.lengths:
        counts: dict[tuple[int, ...], int] = {}
        for g in gathered:  # groups in shard order: first seen = first seen by a local search
            for key, c in g.get(length, ()):
                counts[key] = counts.get(key, 0) + c
        out.extend(to_candidates(counts, SOURCE, length))
        if req.mode == "all_lengths" and req.max_nodes and len(out) >= req.max_nodes:
            break
    return out, p.longest


def retrieve(groups: Sequence[ShardGroup], req: Request) -> tuple[list[Candidate], int]:
    """Both rounds over groups in this process (what the Serve router does over its replicas)."""
    if len(groups) == 1:
        return groups[0].retrieve(req)
    p = plan(req, [g.probe(req) for g in groups], sum(len(g.shards) for g in groups))
    return merge(req, p, [g.gather(req, p) for g in groups])


def split_shards(index_dir: str | os.PathLike, replicas: int) -> tuple[dict, list[list[str]]]:
    """The index's pointer and its shards cut into ``replicas`` contiguous groups of about equal
    tokens (fewer groups when there are fewer shards)."""
    pointer = indexdir.read_current(index_dir)
    if pointer.get("kind") != "corpus":
        raise DatastoreError(f"{index_dir} is a {pointer.get('kind')} index; serve a corpus index "
                             "(`rest-lsp index build --corpus DIR --index-dir OUT`)", index_dir=str(index_dir))
    names = list(pointer.get("shards", []))
    if not names:
        raise DatastoreError(f"{index_dir} holds no shards", index_dir=str(index_dir))
    from indexer.storage.shard import MANIFEST, read_manifest

    sizes = [int(read_manifest(Path(index_dir) / n / MANIFEST)["n_tokens"]) for n in names]
    k = max(1, min(replicas, len(names)))
    groups: list[list[str]] = [[] for _ in range(k)]
    total, acc = max(sum(sizes), 1), 0
    for name, size in zip(names, sizes):  # contiguous, by the middle of each shard: keeps the
        groups[min(k - 1, (2 * acc + size) * k // (2 * total))].append(name)  # order merge relies on
        acc += size
    return pointer, [grp for grp in groups if grp]
