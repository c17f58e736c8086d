"""Human-readable tables for `dse eval` and `dse catalog` (units chosen for reading, SI underneath)."""
from __future__ import annotations

from collections.abc import Iterable

from dse.catalog import Accelerator, Fabric, Node, Quantity, Region, Transformer, Workload
from dse.models import cnn, transformer

_SCALES = {"_s": [(1.0, "s"), (1e-3, "ms"), (1e-6, "us")], "_bytes": [(1e12, "TB"), (1e9, "GB"), (1e6, "MB"),
                                                                       (1e3, "kB"), (1.0, "B")]}


def readable(key: str, value: object) -> str:
    """Format one metric value with a unit fit for reading (ms for short times, GB for memory)."""
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return "; ".join(value) if value else "-"
    if isinstance(value, int):
        return f"{value:,}"
    for suffix, scales in _SCALES.items():
        if key.endswith(suffix) and not key.endswith("_per_s"):
            for factor, unit in scales:
                if abs(value) >= factor or factor == scales[-1][0]:
                    return f"{value / factor:,.4g} {unit}"
    return f"{value:,.4g}"


def table(rows: Iterable[Iterable[object]], header: Iterable[str]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    header = list(header)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def eval_text(config: dict, metrics: dict, notes: list[str]) -> str:
    head = ", ".join(f"{k}={v}" for k, v in config.items())
    rows = ([k, readable(k, v)] for k, v in metrics.items() if k != "infeasible_reasons")
    body = table(rows, ["metric", "value"])
    reasons = "".join(f"\ninfeasible: {r}" for r in metrics.get("infeasible_reasons", []))
    tail = "".join(f"\nnote: {n}" for n in notes)
    return f"{head}\n\n{body}\n{reasons}{tail}"


def _q(q: Quantity | None) -> str:
    return "-" if q is None else f"{q.value:g} {q.unit}".strip()


def catalog_rows(kind: str, items: list) -> tuple[list[str], list[list[str]], list[str]]:
    """Columns, rows and numbered sources for the text catalog listing."""
    sources: list[str] = []

    def cite(qs: Iterable[Quantity | None]) -> str:
        refs = []
        for q in qs:
            if q is not None:
                if q.source not in sources:
                    sources.append(q.source)
                refs.append(sources.index(q.source) + 1)
        return ",".join(str(r) for r in sorted(set(refs)))

    rows: list[list[str]] = []
    if kind == "hardware":
        header = ["name", "class", "16-bit dense (fp32 if none)", "fp8", "int8", "memory", "bandwidth", "TDP",
                  "sources"]
        for a in items:
            a: Accelerator
            half = a.peaks.get("bf16") or a.peaks.get("fp16") or a.peaks.get("fp32")
            spec = [a.spec.get(k) for k in ("memory_capacity", "memory_bandwidth", "tdp")]
            rows.append([a.name, a.device_class, _q(half), _q(a.peaks.get("fp8")), _q(a.peaks.get("int8")),
                         *(_q(q) for q in spec), cite([*a.peaks.values(), *a.spec.values()])])
    elif kind == "workloads":
        header = ["name", "family", "parameters", "shape", "source"]
        for w in items:
            w: Workload
            if isinstance(w, Transformer):
                shape = f"L{w.layers} h{w.hidden} a{w.heads}/{w.kv_heads} {w.ffn} {w.ffn_hidden}"
                shape += f" E{w.experts}k{w.top_k}" if w.experts > 1 else ""
                params = transformer.parameters(w)
            else:
                shape = f"{len(cnn.expand_layers(w))} layers, input {'x'.join(map(str, w.input))}"
                params = cnn.parameters(w)
            rows.append([w.name, w.family, f"{params / 1e9:.3g} B" if params >= 1e9 else f"{params / 1e6:.3g} M",
                         shape, f"{w.source} ({w.date})"])
        return header, rows, []
    elif kind == "regions":
        header = ["name", "grid", "PUE", "WUE (on-site)", "water (generation)", "electricity", "sources"]
        for r in items:
            r: Region
            fs = [r.fields.get(k) for k in ("grid_intensity", "pue", "wue", "water_offsite", "electricity_price")]
            rows.append([r.name, *(_q(q) for q in fs), cite(fs)])
    elif kind == "nodes":
        header = ["name", "accelerator", "count", "scale-up", "scale-out", "power", "sources"]
        for n in items:
            n: Node
            rows.append([n.name, n.accelerator, n.accelerators, n.scale_up, n.scale_out,
                         _q(n.fields.get("system_power")), cite(n.fields.values())])
    else:
        header = ["name", "kind", "bandwidth", "latency", "base latency", "sources"]
        for f in items:
            f: Fabric
            rows.append([f.name, f.kind, _q(f.fields.get("bandwidth")), _q(f.fields.get("latency")),
                         _q(f.fields.get("base_latency")), cite(f.fields.values())])
    return header, rows, sources


def catalog_json(kind: str, item) -> dict:
    """One catalog entry as JSON: its name, its fields, each number with unit, source and date."""
    if kind == "hardware":
        return {"name": item.name, "display": item.display, "vendor": item.vendor, "class": item.device_class,
                "year": item.year, "aliases": list(item.aliases), "sparsity_2_4": item.sparsity_2_4, "note": item.note,
                "peak": {k: q.as_dict() for k, q in item.peaks.items()},
                "spec": {k: q.as_dict() for k, q in item.spec.items()}}
    if kind == "workloads":
        data = {k: getattr(item, k) for k in item.__slots__ if k not in ("layers",) or item.family != "cnn"}
        data["aliases"] = list(item.aliases)
        if item.family == "cnn":
            data["layers"] = [dict(layer) for layer in item.layers]
            data["parameters"] = cnn.parameters(item)
            data["forward_flops"] = cnn.forward_flops(item)
        else:
            data["parameters"] = transformer.parameters(item)
        data["family"] = item.family
        return data
    base = {"name": item.name, "display": item.display, "aliases": list(item.aliases)}
    if kind == "nodes":
        base.update(accelerator=item.accelerator, accelerators=item.accelerators, scale_up=item.scale_up,
                    scale_out=item.scale_out, nics=item.nics, cpu=item.cpu)
        base.update({k: getattr(item, k) for k in ("source", "date") if getattr(item, k)})
    if kind == "fabrics":
        base["kind"] = item.kind
    if kind == "regions":
        base["country"] = item.country
    base.update({k: q.as_dict() for k, q in item.fields.items()})
    return base
