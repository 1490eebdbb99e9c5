"""The bookkeeping of ``scripts/gpu-check.sh`` (issue 30; docs/gpu.md): the environment probe,
one record per step, and the report: ``gpu-check.json`` and a markdown table for BENCHMARKS.md.

The shell script runs the steps (each under its own ``timeout``); this module only writes and
reads JSON, so that a step that hangs or dies leaves a record and the report is still written.
Nothing here imports torch at module level: the report must be written where torch is broken.

    python -m rest_lsp.bench.gpu_check probe --out WORK/env.json
    python -m rest_lsp.bench.gpu_check default-model 0.5b
    python -m rest_lsp.bench.gpu_check step --steps WORK/steps.jsonl --name NAME --status ok ...
    python -m rest_lsp.bench.gpu_check report --work WORK --out-dir OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

#: a step's outcome
STATUSES = ("ok", "failed", "timeout", "skipped")
#: the issue's targets (recorded with the device's name)
AGREEMENT_PROMPTS = 164
TARGET_VS_GREEDY = 2.5
TARGET_VS_PROMPT_LOOKUP = 1.5
TARGET_HOST_MS = 0.3
#: the method REST is judged by, and the transformers method it must beat
REST_METHOD = "default"
LOOKUP_METHOD = "hf_prompt_lookup"
#: the files the report writes into the output folder (the device returns at most 8 files)
REPORT_JSON = "gpu-check.json"
REPORT_MD = "gpu-check.md"
#: a model the script uses when its environment variable is unset, by size
MODEL_ENV = {"0.5b": "REST_LSP_GPU_MODEL_05B", "1.5b": "REST_LSP_GPU_MODEL_15B"}
PACKAGED_NAME = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}


def probe() -> dict[str, Any]:
    """Python, torch and transformers versions, and the CUDA device if there is one."""
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpus": os.cpu_count(), "cuda_available": False, "device_name": "", "torch": "",
                           "transformers": "", "reason": ""}
    try:
        import torch
    except Exception as exc:  # the report still says why nothing ran
        env["reason"] = f"torch is not importable: {exc}"
        return env
    env["torch"] = torch.__version__
    env["torch_cuda"] = torch.version.cuda or ""
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except Exception as exc:
        env["transformers"] = f"not importable: {exc}"
    try:
        available = torch.cuda.is_available()
    except Exception as exc:
        available, env["reason"] = False, f"torch.cuda.is_available() raised {exc}"
    if not available:
        env["reason"] = env["reason"] or f"torch.cuda.is_available() is False (torch {torch.__version__})"
        return env
    props = torch.cuda.get_device_properties(0)
    env.update(cuda_available=True, device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
               capability=".".join(map(str, torch.cuda.get_device_capability(0))),
               memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count)
    return env


def default_model(size: str) -> str:
    """The model file a size means when its variable is unset: a file staged onto the device
    (docs/gpu.md), else the packaged model assembled on this machine, else the packaged model's
    name when its parts are installed (rest-lsp assembles it), else "" (none)."""
    from rest_lsp.bench.gpu_stage import DEFAULT_SPOOL, SPOOL_ENV
    from rest_lsp.models import catalog

    model = catalog.PACKAGED[PACKAGED_NAME[size]]
    staged = Path(os.environ.get(SPOOL_ENV, DEFAULT_SPOOL)) / "models" / model.file_name
    if staged.is_file():
        return str(staged)
    try:  # platformdirs and the parts' metadata: absent on a bare device, where only staging counts
        from rest_lsp.models import parts
        from rest_lsp.models.resolve import models_cache

        cached = models_cache() / model.file_name
        if cached.is_file():
            return str(cached)
        if parts.is_installed(model):
            return model.name
    except ImportError:
        pass
    return ""


def record_step(steps: Path, name: str, status: str, *, rc: int | None = None, seconds: float = 0.0,
                reason: str = "", title: str = "", command: str = "", model: str = "", bench_dir: str = "",
                log: str = "") -> dict[str, Any]:
    """Append one step's record to the JSON-lines file ``steps``; the record."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: expected one of {STATUSES}")
    record = {"name": name, "title": title or name, "status": status, "rc": rc, "seconds": round(seconds, 1),
              "reason": reason, "command": command, "model": model, "bench_dir": bench_dir, "log": log}
    with steps.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def status_of(rc: int, skip_rcs: Sequence[int] = ()) -> str:
    """A step's status from its exit code (``timeout`` exits 124, or 137 after its KILL)."""
    if rc == 0:
        return "ok"
    if rc in skip_rcs:
        return "skipped"
    return "timeout" if rc in (124, 137) else "failed"


def load_steps(steps: Path) -> list[dict[str, Any]]:
    """The step records in order (none when the file is missing)."""
    if not steps.is_file():
        return []
    return [json.loads(line) for line in steps.read_text().splitlines() if line.strip()]


def bench_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The figures of one ``bench humaneval`` JSON record that the report shows."""
    methods = {}
    for m in record.get("methods", []):
        prompts = int(m.get("prompts", 0))
        methods[m["method"]] = {
            "label": m.get("label", m["method"]), "prompts": prompts,
            "tokens_per_step": m.get("tokens_per_step", 0.0), "tokens_per_s": m.get("tokens_per_s", 0.0),
            "speedup_vs_greedy": m.get("speedup_vs_greedy", 0.0),
            "speedup_vs_greedy_median": m.get("speedup_vs_greedy_median", 0.0),
            "identical_to_greedy": m.get("identical_to_greedy", 0.0),
            "identical_prompts": round(m.get("identical_to_greedy", 0.0) * prompts),
            "latency_p50_ms": m.get("latency_p50_ms", 0.0), "latency_p95_ms": m.get("latency_p95_ms", 0.0),
            "time_split": m.get("time_split", {}),
            "host_ms_per_step": m.get("host_ms_per_step"),
        }
    lookup = methods.get(LOOKUP_METHOD, {}).get("speedup_vs_greedy", 0.0)
    for figures in methods.values():
        # both speed-ups divide the same greedy wall time: their ratio is wall(lookup) / wall(method)
        figures["speedup_vs_prompt_lookup"] = round(figures["speedup_vs_greedy"] / lookup, 3) if lookup else None
    model = record.get("model", {})
    return {"command": record.get("command", ""), "date": record.get("date", ""), "seconds": record.get("seconds"),
            "prompts": record.get("prompts", 0), "max_new_tokens": record.get("max_new_tokens"),
            "device": record.get("machine", {}).get("device", ""), "datastore": record.get("datastore", ""),
            "corpus_tokens": record.get("corpus_tokens", 0),
            "model": {k: model.get(k) for k in ("name", "kind", "model_type", "parameters", "device", "dtype", "forward",
                                                "forward_reason", "attn_implementation", "sha256") if k in model},
            "methods": methods}


def targets(steps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets against what the steps measured ("met": True, False, or None when not
    measured)."""
    out = []
    by_name = {s["name"]: s for s in steps}
    agreement = by_name.get("agreement_05b", {}).get("summary")
    rest = (agreement or {}).get("methods", {}).get(REST_METHOD)
    if rest:
        same, n = rest["identical_prompts"], rest["prompts"]
        # a difference on a subset already misses the target; agreement on a subset proves nothing
        met = False if same < n else True if n >= AGREEMENT_PROMPTS else None
        subset = "" if n >= AGREEMENT_PROMPTS else " (a subset: GPU_CHECK_AGREEMENT_LIMIT)"
        out.append({"target": f"REST (rest-lsp default) token-identical to greedy on all {AGREEMENT_PROMPTS} HumanEval "
                              "prompts, 0.5B",
                    "measured": f"{same}/{n} prompts{subset}", "met": met})
    else:
        out.append({"target": f"REST token-identical to greedy on all {AGREEMENT_PROMPTS} HumanEval prompts, 0.5B",
                    "measured": "not measured", "met": None})
    for step in steps:
        summary = step.get("summary")
        if not step["name"].startswith("speed_"):
            continue
        size = step["name"].removeprefix("speed_").replace("05b", "0.5B").replace("15b", "1.5B")
        rest = (summary or {}).get("methods", {}).get(REST_METHOD)
        vs_greedy = rest["speedup_vs_greedy"] if rest else None
        vs_lookup = rest["speedup_vs_prompt_lookup"] if rest else None
        out.append({"target": f"rest-lsp default >= {TARGET_VS_GREEDY}x our greedy loop, {size}",
                    "measured": f"{vs_greedy:.2f}x" if vs_greedy else "not measured",
                    "met": None if not vs_greedy else vs_greedy >= TARGET_VS_GREEDY})
        out.append({"target": f"rest-lsp default >= {TARGET_VS_PROMPT_LOOKUP}x transformers prompt lookup, {size}",
                    "measured": f"{vs_lookup:.2f}x" if vs_lookup else "not measured",
                    "met": None if not vs_lookup else vs_lookup >= TARGET_VS_PROMPT_LOOKUP})
        host = rest.get("host_ms_per_step") if rest else None
        out.append({"target": f"host work per step <= {TARGET_HOST_MS} ms (rest-lsp default), {size}",
                    "measured": f"{host:.3f} ms" if host is not None else "not measured",
                    "met": None if host is None else host <= TARGET_HOST_MS})
    return out


def build_report(env: dict[str, Any], steps: list[dict[str, Any]], *, started: float | None = None,
                 settings: dict[str, str] | None = None) -> dict[str, Any]:
    """The report's JSON: environment, settings, every step (with its benchmark's figures and
    full record where it wrote one) and the targets."""
    for step in steps:
        path = Path(step.get("bench_dir") or "") / "humaneval.json"
        if step.get("bench_dir") and path.is_file():
            try:
                record = json.loads(path.read_text())
            except ValueError as exc:
                step["summary_error"] = f"{path}: {exc}"
                continue
            step["summary"] = bench_summary(record)
            step["record"] = record
    device = env.get("device_name") or ("no CUDA device" if not env.get("cuda_available") else "CUDA device")
    return {
        "format": 1,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": round(time.time() - started, 1) if started else None,
        "device": device,
        "cuda_available": bool(env.get("cuda_available")),
        "torch": env.get("torch", ""),
        "transformers": env.get("transformers", ""),
        "env": env,
        "settings": settings or {},
        "steps": steps,
        "targets": targets(steps),
        "ok": not any(s["status"] in ("failed", "timeout") for s in steps),
    }


def _x(value: float | None) -> str:
    return f"{value:.2f}x" if value else "—"


def _run_name(step: dict[str, Any]) -> str:
    size = "0.5B" if step["name"].endswith("05b") else "1.5B" if step["name"].endswith("15b") else ""
    kind = step["name"].split("_")[0]
    prompts = (step.get("summary") or {}).get("prompts")
    return f"{size} {kind} ({prompts} prompts)" if prompts else f"{size} {kind}"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown for BENCHMARKS.md: the benchmark rows, the targets, the steps."""
    env = report.get("env", {})
    head = (f"### GPU check: {report['device']}, torch {report.get('torch') or '?'}, transformers "
            f"{report.get('transformers') or '?'} ({report['date']})")
    lines = [head, ""]
    seconds = f", {report['seconds']:.0f} s in all" if report.get("seconds") else ""
    extra = f"; {env.get('memory_gib')} GiB, compute capability {env.get('capability')}" if env.get("cuda_available") else ""
    lines.append(f"`scripts/gpu-check.sh`{seconds}; Python {env.get('python', '?')}{extra}. Speed-ups are "
                 "aggregate (total greedy time over total method time, same prompts).")
    lines.append("")
    runs = [s for s in report["steps"] if s.get("summary")]
    if runs:
        lines += ["| run | method | tokens/step | tokens/s | speed-up vs our greedy (aggregate / median) "
                  "| vs transformers prompt lookup | identical to greedy | latency p50 / p95 ms |",
                  "|---|---|---|---|---|---|---|---|"]
        for step in runs:
            for method, m in step["summary"]["methods"].items():
                tau = f"{m['tokens_per_step']:.2f}" if m["tokens_per_step"] else "—"
                lines.append(f"| {_run_name(step)} | {m['label']} | {tau} | {m['tokens_per_s']:.1f} | "
                             f"{_x(m['speedup_vs_greedy'])} / {_x(m['speedup_vs_greedy_median'])} | "
                             f"{_x(m['speedup_vs_prompt_lookup'])} | {m['identical_prompts']}/{m['prompts']} | "
                             f"{m['latency_p50_ms']:.0f} / {m['latency_p95_ms']:.0f} |")
        lines.append("")
        for step in runs:  # what each run was, for the record
            summary = step["summary"]
            model = summary["model"]
            lines.append(f"- {_run_name(step)}: `{summary['command']}`; {model.get('name', '?')}, "
                         f"{model.get('forward', '?')} forward, {model.get('dtype', '?')} on {summary['device'] or '?'}; "
                         f"{summary['datastore'] or 'no datastore'}; {summary['seconds']} s")
    else:
        lines.append("No benchmark ran (the steps below say why).")
    lines += ["", "| target (issue 30) | measured | met |", "|---|---|---|"]
    for t in report["targets"]:
        met = "—" if t["met"] is None else "yes" if t["met"] else "**no**"
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    lines += ["", "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in report["steps"]:
        note = s.get("reason") or ""
        if s["status"] in ("failed", "timeout") and s.get("rc") is not None:
            note = (note + "; " if note else "") + f"exit {s['rc']}"
        if s.get("model"):
            note = (note + "; " if note else "") + f"model {s['model']}"
        lines.append(f"| {s['title']} | {s['status']} | {s['seconds']:.0f} | {note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_report(work: Path, out_dir: Path, started: float | None = None) -> dict[str, Any]:
    """Read ``work/env.json`` and ``work/steps.jsonl``; write ``gpu-check.json`` and ``gpu-check.md``."""
    env_path = work / "env.json"
    try:
        env = json.loads(env_path.read_text())
    except (OSError, ValueError) as exc:
        env = {"cuda_available": False, "reason": f"no environment probe ({exc})"}
    settings = {k: v for k, v in sorted(os.environ.items())
                if k.startswith(("GPU_CHECK_", "REST_LSP_GPU_", "GPU_STAGE_"))}
    report = build_report(env, load_steps(work / "steps.jsonl"), started=started, settings=settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / REPORT_MD).write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rest_lsp.bench.gpu_check", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    pr = sub.add_parser("probe", help="write the environment (versions, CUDA device) as JSON; print one line")
    pr.add_argument("--out", required=True)
    dm = sub.add_parser("default-model", help="print the model file a size means when its variable is unset")
    dm.add_argument("size", choices=sorted(MODEL_ENV))
    st = sub.add_parser("step", help="append one step's record")
    st.add_argument("--steps", required=True)
    st.add_argument("--name", required=True)
    st.add_argument("--title", default="")
    st.add_argument("--status", choices=STATUSES, default=None, help="default: from --rc")
    st.add_argument("--rc", type=int, default=None)
    st.add_argument("--skip-rc", type=int, action="append", default=[],
                    help="an exit code that means the step had nothing to do (pytest's 5: no test selected)")
    st.add_argument("--started", type=float, default=0.0, help="time.time() at the start")
    st.add_argument("--ended", type=float, default=0.0)
    st.add_argument("--reason", default="")
    st.add_argument("--command", default="")
    st.add_argument("--model", default="")
    st.add_argument("--bench-dir", default="")
    st.add_argument("--log", default="")
    rp = sub.add_parser("report", help="write gpu-check.json and gpu-check.md")
    rp.add_argument("--work", required=True)
    rp.add_argument("--out-dir", required=True)
    rp.add_argument("--started", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.action == "probe":
        env = probe()
        Path(args.out).write_text(json.dumps(env, indent=2) + "\n")
        print(f"CUDA: {env['device_name']} (torch {env['torch']}, transformers {env['transformers']})"
              if env["cuda_available"] else f"no CUDA device: {env['reason']}")
        return 0
    if args.action == "default-model":
        print(default_model(args.size))
        return 0
    if args.action == "step":
        status = args.status or status_of(args.rc if args.rc is not None else 1, args.skip_rc)
        reason = args.reason
        if status == "skipped" and not reason and args.rc in args.skip_rc:
            reason = f"nothing to do (exit {args.rc})"
        if status == "timeout" and not reason:
            reason = "timed out"
        seconds = max(0.0, args.ended - args.started) if args.started and args.ended else 0.0
        record_step(Path(args.steps), args.name, status, rc=args.rc, seconds=seconds, reason=reason,
                    title=args.title, command=args.command, model=args.model, bench_dir=args.bench_dir, log=args.log)
        return 0
    report = write_report(Path(args.work), Path(args.out_dir), started=args.started or None)
    print(f"written: {Path(args.out_dir) / REPORT_JSON}, {Path(args.out_dir) / REPORT_MD}")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
