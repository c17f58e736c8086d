"""The `dse` command: `dse eval` (one design point) and `dse catalog` (what the catalog holds)."""
from __future__ import annotations

import argparse
import json
import re
import signal
import sys

from dse import __version__, cli_study, plan, report
from dse import config as cfg
from dse.catalog import KINDS, registry
from dse.errors import DSEError, UnknownNameError
from dse.evaluation import evaluate_point


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other dse error, and no option
    abbreviations (``--bat 2`` is refused, not read as ``--batch 2``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


_NEGATIVE = re.compile(r"^-(\d|\.\d)")


def _attach_negative_values(argv: list[str]) -> list[str]:
    """`--tokens -5` reaches our validation (which explains the error) instead of argparse reading
    -5 as an option: an option followed by a negative-looking value becomes `--option=-5`."""
    out: list[str] = []
    for arg in argv:
        if out and _NEGATIVE.match(arg) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate one design point",
                       description="Evaluate one design point with the analytical models. Every option "
                       "also takes the form --option=VALUE.")
    src = p.add_argument_group("workload and hardware")
    src.add_argument("--workload", help="catalog workload name (see `dse catalog workloads`)")
    src.add_argument("--workload-file", help="a workload TOML file")
    src.add_argument("--hardware", help="catalog accelerator name (see `dse catalog hardware`)")
    src.add_argument("--hardware-file", help="an accelerator TOML file")
    p.add_argument("--mode", default="infer", help="infer | train | serve (default infer)")
    p.add_argument("--precision", help="arithmetic: fp32 tf32 bf16 fp16 fp8 fp4 int8 int4 (default fp16)")
    p.add_argument("--weight-precision", help="store weights narrower than the arithmetic (weight-only quantization)")
    p.add_argument("--sparsity", help="2:4 (structured) or a fraction of zero weights")
    p.add_argument("--recompute", help="activation recomputation: none | selective | full (train)")
    p.add_argument("--scheduler", help="serve: continuous (default; continuous batching with chunked prefill) | "
                   "static (whole batches)")
    p.add_argument("--decode-attention", help="serve: grouped (default; one read of a KV head's cache serves its "
                   "query heads) | per-head (one read per query head, as kernels before FlashAttention-2's decode "
                   "path and TensorRT-LLM's XQA)")
    p.add_argument("--cuda-graphs", help="serve: on | off: decode steps replay a CUDA graph (default on for "
                   "continuous batching, off for static batches; off is vLLM's --enforce-eager)")
    for key, spec in cfg.NUMERIC.items():
        p.add_argument(cfg.option(key), dest=key, metavar="X", help=spec.help)
    money = p.add_argument_group("economics (with --tokens or --duration-days)")
    money.add_argument("--region", help="where the fleet runs (see `dse catalog regions`; default us-average)")
    money.add_argument("--purchase", help="how the GPUs are paid for: rent (hyperscaler on-demand) | rent-reserved "
                       "| rent-gpu-cloud | buy (default rent)")
    p.add_argument("--json", action="store_true", help="print one JSON object: config, metrics, notes")


def _run_eval(args: argparse.Namespace) -> int:
    keys = set(cfg.ALL_KEYS)
    given = {k: v for k, v in vars(args).items() if k in keys and v is not None}
    result = evaluate_point(**given)
    if args.json:
        print(json.dumps({"config": result.config, "metrics": result.metrics, "notes": result.notes}, indent=2))
    else:
        print(report.eval_text(result.config, result.metrics, result.notes))
    return 0


def _run_catalog(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    if args.name and not args.kind:
        raise UnknownNameError("catalog kind", args.name, KINDS, hint="Name the kind first, e.g. "
                               "`dse catalog hardware h100`.")
    entries = {k: [registry(k).get(args.name, k)] if args.name else list(registry(k)) for k in kinds}
    if args.json:
        if not args.kind:
            print(json.dumps({k: [report.catalog_json(k, i) for i in entries[k]] for k in kinds}, indent=2))
        else:
            print(json.dumps([report.catalog_json(args.kind, i) for i in entries[args.kind]], indent=2))
        return 0
    for kind in kinds:
        header, rows, sources = report.catalog_rows(kind, entries[kind])
        print(f"{kind} ({len(rows)})\n{report.table(rows, header)}")
        for i, s in enumerate(sources, 1):
            print(f"  [{i}] {s}")
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `dse catalog | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = _Parser(prog="dse", description="Design-space exploration for ML systems.")
    parser.add_argument("--version", action="version", version=f"dse {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _eval_parser(sub)
    c = sub.add_parser("catalog", help="list accelerators, nodes, fabrics, workloads or regions with sources")
    c.add_argument("kind", nargs="?", choices=KINDS)
    c.add_argument("name", nargs="?", help="one entry by name or alias, e.g. h100")
    c.add_argument("--json", action="store_true", help="print a JSON list of objects, each with `name`")
    cli_study.add_parsers(sub)
    plan.add_parser(sub)
    args, extra = parser.parse_known_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:  # bare `dse`: what it can do
        parser.print_help()
        return 2
    try:
        if extra:
            known = [o for a in sub.choices[args.command]._actions for o in a.option_strings]
            raise UnknownNameError("option", extra[0].split("=")[0], known, where=f"dse {args.command} --help")
        commands = {"eval": _run_eval, "catalog": _run_catalog, "run": cli_study.run_run,
                    "front": cli_study.run_front, "sweep": cli_study.run_sweep, "plan": plan.run_cli,
                    "report": cli_study.run_report, "worker": cli_study.run_worker,
                    "dashboard": cli_study.run_dashboard}
        return commands[args.command](args)
    except DSEError as exc:
        print(f"dse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
