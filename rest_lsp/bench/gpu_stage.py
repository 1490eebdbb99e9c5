"""A large file (a GGUF model) carried onto a lent GPU machine in chunks (docs/gpu.md).

A device call copies at most 64 MiB, the working tree included, so a model travels as chunks,
one call each.  ``split`` cuts the file here into one folder per call under ``.gpu-stage/LABEL/``,
each holding one chunk and the manifest (chunk names, sizes and sha256s, and the whole file's).
On the device ``collect`` moves every carried chunk out of the working tree into a spool folder
outside it, checking its sha256: the next call's copy of the tree replaces the carried folders,
while the spool survives as long as the machine stays warm.  Once a label's chunks are all
there they are joined into one file whose sha256 is checked before anything may use it.

The standard library and rest-lsp's own torch-free modules only: on the device it runs before
any wheel is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rest_lsp.models.parts import sha256_of

#: what one device call may carry, working tree included
DEVICE_CALL_BYTES = 64 << 20
#: left free under the limit: files that change between staging and the call, rounding
MARGIN_BYTES = 1 << 20
#: the largest chunk (the issue's bound), even when the tree is small
MAX_CHUNK_BYTES = 60 << 20
#: the manifest's name, in the label's folder and in every call folder
MANIFEST = "manifest.json"
#: where split writes (ignored by git; named in the calls' ``carry``)
STAGE_DIR = ".gpu-stage"
#: where collect keeps chunks and assembled files on the device (outside the working tree)
SPOOL_ENV = "GPU_STAGE_SPOOL"
DEFAULT_SPOOL = "/tmp/rest-lsp-gpu-stage"
#: collect's exit status when some label still misses chunks and --require-complete was given
INCOMPLETE = 10
#: bytes read at a time
READ = 8 << 20


class StageError(Exception):
    """A staging problem with a message for the person running the calls."""


def tree_bytes(repo: Path) -> int:
    """Bytes of what every device call sends anyway: tracked files and untracked files git does
    not ignore (the device's own rule; ``shared/`` is not counted, this project has none)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout
    total = 0
    for name in {n for n in listed.decode("utf-8", "surrogateescape").split("\0") if n}:
        path = repo / name
        if path.is_file() and not path.is_symlink():  # deleted-but-tracked files do not travel
            total += path.stat().st_size
    return total


def default_chunk_bytes(repo: Path, carried_with: int = 0) -> int:
    """The largest chunk that still fits one call beside the working tree and ``carried_with``
    bytes carried in the same call (the wheels), in whole MiB."""
    room = DEVICE_CALL_BYTES - tree_bytes(repo) - carried_with - MARGIN_BYTES
    chunk = min(MAX_CHUNK_BYTES, room) >> 20 << 20
    if chunk < 1 << 20:
        raise StageError(f"the working tree leaves {max(room, 0):,} bytes of a device call's 64 MiB: "
                         "no room for a chunk")
    return chunk


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def split(path: Path, stage_root: Path, label: str, chunk_bytes: int) -> dict[str, Any]:
    """Cut ``path`` into ``chunk_bytes`` chunks under ``stage_root/label/NN/``; the manifest."""
    if chunk_bytes <= 0:
        raise StageError(f"chunk size must be positive, not {chunk_bytes}")
    if not path.is_file():
        raise StageError(f"{path} is not a file")
    size = path.stat().st_size
    count = max(1, -(-size // chunk_bytes))
    width = max(2, len(str(count)))
    out = stage_root / label
    if out.exists():
        shutil.rmtree(out)  # a re-split must not leave chunks of another cut behind
    whole = hashlib.sha256()
    chunks = []
    with path.open("rb") as src:
        for index in range(1, count + 1):
            folder = f"{index:0{width}d}"
            name = f"{label}.part{folder}"
            (out / folder).mkdir(parents=True)
            digest, written = hashlib.sha256(), 0
            with (out / folder / name).open("wb") as dst:
                while written < chunk_bytes and (block := src.read(min(READ, chunk_bytes - written))):
                    dst.write(block)
                    digest.update(block)
                    whole.update(block)
                    written += len(block)
            chunks.append({"index": index, "folder": folder, "name": name, "size": written,
                           "sha256": digest.hexdigest()})
    manifest = {"format": 1, "label": label, "file": path.name, "size": size, "sha256": whole.hexdigest(),
                "chunk_bytes": chunk_bytes, "chunks": chunks}
    text = json.dumps(manifest, indent=2) + "\n"
    (out / MANIFEST).write_text(text)
    for chunk in chunks:  # every call folder describes itself: calls may come in any order
        (out / chunk["folder"] / MANIFEST).write_text(text)
    return manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
        names = [c["name"] for c in manifest["chunks"]]
        missing = [key for key in ("label", "file", "sha256", "size") if key not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{path}: not a staging manifest ({exc})") from exc
    for name in names + [manifest["label"], manifest["file"]]:
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise StageError(f"{path}: unsafe name {name!r} in the manifest")
    return manifest


def collect(stage_root: Path, spool: Path) -> list[str]:
    """Move every chunk under ``stage_root`` into ``spool/LABEL/``, each checked against its
    manifest first; what was done, one line each.  A corrupted chunk raises ``StageError`` and is
    left where it was."""
    said = []
    manifests = sorted(stage_root.rglob(MANIFEST)) if stage_root.is_dir() else []
    for path in manifests:
        manifest = _read_manifest(path)
        dest = spool / manifest["label"]
        known = dest / MANIFEST
        if known.is_file() and _read_manifest(known)["sha256"] != manifest["sha256"]:
            shutil.rmtree(dest)  # the label now names another file: its old chunks are useless
            said.append(f"{manifest['label']}: another file was staged under this label before; its chunks are dropped")
        dest.mkdir(parents=True, exist_ok=True)
        if not known.is_file():
            shutil.copyfile(path, known)
        for chunk in manifest["chunks"]:
            src = path.parent / chunk["name"]
            if not src.is_file():
                continue
            found = sha256_of(src)
            if found != chunk["sha256"] or src.stat().st_size != chunk["size"]:
                raise StageError(
                    f"chunk {chunk['name']} of {manifest['file']} is corrupted: {src.stat().st_size:,} bytes with "
                    f"sha256 {found}, the manifest says {chunk['size']:,} bytes with sha256 {chunk['sha256']}; "
                    "split the file again (scripts/gpu-stage.sh) and carry that chunk once more")
            shutil.move(str(src), str(dest / chunk["name"]))
            said.append(f"{manifest['label']}: chunk {chunk['index']}/{len(manifest['chunks'])} collected ({chunk['size']:,} bytes, sha256 ok)")
    return said


def missing_chunks(spool: Path, label: str) -> list[str]:
    """The chunks of ``label`` not in the spool yet."""
    manifest = _read_manifest(spool / label / MANIFEST)
    return [c["name"] for c in manifest["chunks"]
            if not (spool / label / c["name"]).is_file() or (spool / label / c["name"]).stat().st_size != c["size"]]


def assembled(spool: Path, label: str, out_dir: Path) -> Path | None:
    """The file of ``label`` in ``out_dir`` when an earlier join verified it (its chunks may be gone)."""
    manifest = _read_manifest(spool / label / MANIFEST)
    target = out_dir / manifest["file"]
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and marker.is_file() and marker.read_text().strip() == manifest["sha256"] \
            and target.stat().st_size == manifest["size"]:
        return target
    return None


def assemble(spool: Path, label: str, out_dir: Path, keep_chunks: bool = False) -> Path:
    """The whole file of ``label`` in ``out_dir``, joined from its chunks and verified (every
    chunk's sha256 and the whole file's); reused when an earlier join was verified."""
    manifest = _read_manifest(spool / label / MANIFEST)
    target = out_dir / manifest["file"]
    marker = target.with_name(target.name + ".sha256")
    if assembled(spool, label, out_dir) is not None:
        return target
    missing = missing_chunks(spool, label)
    if missing:
        raise StageError(f"{label}: {len(missing)} of {len(manifest['chunks'])} chunks are missing "
                         f"({', '.join(missing)}); carry them (docs/gpu.md)")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    whole = hashlib.sha256()
    try:
        with partial.open("wb") as dst:
            for chunk in manifest["chunks"]:
                digest = hashlib.sha256()
                with (spool / label / chunk["name"]).open("rb") as src:
                    while block := src.read(READ):
                        dst.write(block)
                        digest.update(block)
                        whole.update(block)
                if digest.hexdigest() != chunk["sha256"]:
                    raise StageError(f"chunk {chunk['name']} of {manifest['file']} is corrupted in the spool "
                                     f"(sha256 {digest.hexdigest()}, the manifest says {chunk['sha256']}); carry it again")
        if whole.hexdigest() != manifest["sha256"] or partial.stat().st_size != manifest["size"]:
            raise StageError(f"{manifest['file']} assembles to sha256 {whole.hexdigest()}, not the manifest's "
                             f"{manifest['sha256']}: stage it again")
        os.replace(partial, target)
        marker.write_text(manifest["sha256"] + "\n")
    finally:
        partial.unlink(missing_ok=True)
    if not keep_chunks:  # the device's disk holds the model once, not twice
        for chunk in manifest["chunks"]:
            (spool / label / chunk["name"]).unlink(missing_ok=True)
    return target


def _resolve_input(name: str) -> Path:
    """A file path as is; a packaged model's name: its assembled GGUF file (assembled if needed)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    from rest_lsp.models import catalog

    if name in catalog.PACKAGED:
        from rest_lsp.models import parts
        from rest_lsp.models.resolve import models_cache

        return parts.assemble(catalog.PACKAGED[name], models_cache())
    raise StageError(f"{name} is neither a file nor a packaged model ({', '.join(catalog.PACKAGED)})")


def _plan(manifest: dict[str, Any], stage_root: Path, wheels: Path) -> str:
    """The device calls that carry a split file, for the person running them."""
    label = manifest["label"]
    lines = [f"{manifest['file']}: {manifest['size']:,} bytes, sha256 {manifest['sha256']}",
             f"{len(manifest['chunks'])} chunks of at most {manifest['chunk_bytes']:,} bytes under {stage_root / label}/",
             "device calls, one right after the other (a warm machine keeps /tmp only ~30 s idle; docs/gpu.md):"]
    for chunk in manifest["chunks"]:
        carry = [str(stage_root / label / chunk["folder"])]
        if chunk["index"] == 1 and wheels.is_dir():
            carry.append(str(wheels))
        lines.append(f"  call {chunk['index']}: carry {carry}; command: bash scripts/gpu-assemble.sh")
    lines.append("  (the last call of the last file may run bash scripts/gpu-assemble.sh --require-complete && bash scripts/gpu-check.sh)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest_lsp.bench.gpu_stage", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sp = sub.add_parser("split", help="cut a file into chunks that each fit one device call")
    sp.add_argument("file", help="a file, or a packaged model's name (qwen2.5-coder-0.5b)")
    sp.add_argument("--label", default="", help="the chunks' name (default: the file's name without .gguf)")
    sp.add_argument("--stage-dir", default=STAGE_DIR)
    sp.add_argument("--wheels", default=".whl", help="carried in the first call too: its size is left free")
    sp.add_argument("--chunk-bytes", type=int, default=int(os.environ.get("GPU_STAGE_CHUNK_BYTES", "0")),
                    help="default (0): what a call leaves beside the working tree and the wheels, at most 60 MiB")
    co = sub.add_parser("collect", help="on the device: move carried chunks to the spool, join complete files")
    co.add_argument("--stage-dir", default=STAGE_DIR)
    co.add_argument("--spool", default=os.environ.get(SPOOL_ENV, DEFAULT_SPOOL))
    co.add_argument("--models-dir", default="", help="where joined files go (default: SPOOL/models)")
    co.add_argument("--require-complete", action="store_true",
                    help=f"exit {INCOMPLETE} when a staged file still misses chunks")
    co.add_argument("--keep-chunks", action="store_true", help="keep the chunks after a verified join")
    args = parser.parse_args(argv)
    try:
        if args.action == "split":
            path = _resolve_input(args.file)
            label = args.label or path.name.removesuffix(".gguf")
            stage_root = Path(args.stage_dir)
            wheels = Path(args.wheels)
            chunk = args.chunk_bytes or default_chunk_bytes(Path.cwd(), folder_bytes(wheels))
            print(_plan(split(path, stage_root, label, chunk), stage_root, wheels))
            return 0
        spool = Path(args.spool)
        for line in collect(Path(args.stage_dir), spool):
            print(line)
        incomplete = False
        labels = sorted(p.parent.name for p in spool.glob(f"*/{MANIFEST}")) if spool.is_dir() else []
        models = Path(args.models_dir) if args.models_dir else spool / "models"
        for label in labels:
            done = assembled(spool, label, models)
            missing = [] if done else missing_chunks(spool, label)
            if done:
                print(f"{label}: {done} ({done.stat().st_size:,} bytes, sha256 verified earlier)")
            elif missing:
                incomplete = True
                total = len(_read_manifest(spool / label / MANIFEST)["chunks"])
                print(f"{label}: {total - len(missing)} of {total} chunks here; missing: {', '.join(missing)}")
            else:
                target = assemble(spool, label, models, keep_chunks=args.keep_chunks)
                print(f"{label}: {target} ({target.stat().st_size:,} bytes, sha256 verified)")
        if not labels:
            print(f"nothing staged: no manifest under {args.stage_dir} or {spool}")
        return INCOMPLETE if incomplete and args.require_complete else 0
    except StageError as exc:
        print(f"gpu-stage: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
