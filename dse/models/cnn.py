"""Convolutional networks from a sequential layer grammar: per-layer FLOP, weights and activations.

A convolution with a kh x kw kernel, C_in/groups input channels per group and an H_out x W_out x C_out
output costs 2*H_out*W_out*C_out*(C_in/groups)*kh*kw FLOP and holds C_out*(C_in/groups)*kh*kw weights
(He et al. 2016; one multiply-accumulate = 2 FLOP). "Same" padding: H_out = ceil(H_in / stride).
Composite blocks expand to their convolutions: the ResNet v1.5 bottleneck (He et al. 2016, Fig. 5,
with the stride on the 3x3 convolution), the MobileNetV2 inverted residual (Sandler et al. 2018,
Table 1) and the depthwise-separable block (Howard et al. 2017; Zhang et al. 2017 "Hello Edge").
Depthwise convolutions do not map onto matrix units and count as vector work. Batch-norm,
activations and residual additions follow convolutions: folded and fused into them for inference
(TensorRT's conv+bias+add+ReLU fusion, which reads the shortcut once), and separate element-wise
kernels in training. On-chip cache reuse between layers is not modelled: devices with large L2
relative to their bandwidth (L4: 48 MB against 300 GB/s) run CNNs faster than predicted here.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from dse.catalog.types import CNN
from dse.errors import CatalogFileError
from dse.models.roofline import OpTable

_OPS = {
    "conv": {"out", "k", "kh", "kw", "stride", "groups"},
    "dwconv": {"k", "stride"},
    "maxpool": {"k", "stride"},
    "avgpool": set(),
    "fc": {"out"},
    "bottleneck": {"mid", "out", "stride", "repeat"},
    "inverted_residual": {"expand", "out", "stride", "repeat"},
    "ds_block": {"out", "k", "stride", "repeat"},
}


def _int(spec: Mapping, key: str, where: str, default: int | None = None) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogFileError(f"{where}.{key}", value, "a positive integer")
    return value


def _stride(spec: Mapping, where: str) -> tuple[int, int]:
    s = spec.get("stride", 1)
    if isinstance(s, list | tuple) and len(s) == 2:
        return _int({"s": s[0]}, "s", f"{where}.stride"), _int({"s": s[1]}, "s", f"{where}.stride")
    s = _int(spec, "stride", where, 1)
    return s, s


def expand_layers(cnn: CNN, where: str = "") -> tuple[dict, ...]:
    """Primitive layers with per-sample FLOP, weights and activation elements; validates the specs."""
    h, w, c = cnn.input
    out: list[dict] = []

    def conv(name: str, cout: int, kh: int, kw: int, stride: tuple[int, int], groups: int) -> None:
        nonlocal h, w, c
        if c % groups or cout % groups:
            raise CatalogFileError(f"{where}.{name}.groups", groups, f"a divisor of {c} and {cout}")
        ho, wo = math.ceil(h / stride[0]), math.ceil(w / stride[1])
        weights = cout * (c // groups) * kh * kw
        flops = 2.0 * ho * wo * weights
        depthwise = groups > 1
        out.append(dict(name=name, weights=float(weights), tensor=0.0 if depthwise else flops,
                        vector=flops if depthwise else 0.0, act_in=float(h * w * c),
                        act_out=float(ho * wo * cout), conv=True, rows=float(ho * wo)))
        h, w, c = ho, wo, cout

    def eltwise(name: str, elems: float, reads: int) -> None:
        out.append(dict(name=name, weights=0.0, tensor=0.0, vector=float(elems), act_in=float(elems * reads),
                        act_out=float(elems), conv=False, residual=True))

    for i, spec in enumerate(cnn.layers):
        spec = dict(spec)
        op = spec.pop("op", None)
        at = f"{where}.layers[{i}]"
        if op not in _OPS:
            raise CatalogFileError(f"{at}.op", op, f"one of {', '.join(_OPS)}")
        extra = set(spec) - _OPS[op]
        if extra:
            raise CatalogFileError(f"{at}.{sorted(extra)[0]}", spec[sorted(extra)[0]],
                                   f"a field of {op}: {', '.join(sorted(_OPS[op])) or 'none'}")
        if op == "conv":
            k = spec.get("k")
            if k is None and not ("kh" in spec and "kw" in spec):
                raise CatalogFileError(f"{at}.k", None, "a kernel size: k, or both kh and kw")
            kh = _int(spec, "kh", at, k if k is not None else None)
            kw = _int(spec, "kw", at, k if k is not None else None)
            conv(f"conv{i}", _int(spec, "out", at), kh, kw, _stride(spec, at), _int(spec, "groups", at, 1))
        elif op == "dwconv":
            k = _int(spec, "k", at, 3)
            conv(f"dwconv{i}", c, k, k, _stride(spec, at), c)
        elif op == "maxpool":
            k, s = _int(spec, "k", at), _stride(spec, at)
            ho, wo = math.ceil(h / s[0]), math.ceil(w / s[1])
            out.append(dict(name=f"maxpool{i}", weights=0.0, tensor=0.0, vector=float(ho * wo * c * k * k),
                            act_in=float(h * w * c), act_out=float(ho * wo * c), conv=False))
            h, w = ho, wo
        elif op == "avgpool":
            out.append(dict(name=f"avgpool{i}", weights=0.0, tensor=0.0, vector=float(h * w * c),
                            act_in=float(h * w * c), act_out=float(c), conv=False))
            h = w = 1
        elif op == "fc":
            n_in, n_out = h * w * c, _int(spec, "out", at)
            out.append(dict(name=f"fc{i}", weights=float(n_in * n_out), tensor=2.0 * n_in * n_out, vector=0.0,
                            act_in=float(n_in), act_out=float(n_out), conv=False))
            h, w, c = 1, 1, n_out
        else:
            for r in range(_int(spec, "repeat", at, 1)):
                stride = _stride(spec, at) if r == 0 else (1, 1)
                name = f"{op}{i}.{r}"
                cin, hin, win = c, h, w
                if op == "bottleneck":
                    mid, cout = _int(spec, "mid", at), _int(spec, "out", at)
                    conv(f"{name}.reduce", mid, 1, 1, (1, 1), 1)
                    conv(f"{name}.conv3x3", mid, 3, 3, stride, 1)
                    conv(f"{name}.expand", cout, 1, 1, (1, 1), 1)
                    if stride != (1, 1) or cin != cout:
                        h, w, c = hin, win, cin
                        conv(f"{name}.shortcut", cout, 1, 1, stride, 1)
                    eltwise(f"{name}.add", h * w * c, 2)
                elif op == "inverted_residual":
                    t, cout = _int(spec, "expand", at), _int(spec, "out", at)
                    if t != 1:
                        conv(f"{name}.expand", cin * t, 1, 1, (1, 1), 1)
                    conv(f"{name}.depthwise", c, 3, 3, stride, c)
                    conv(f"{name}.project", cout, 1, 1, (1, 1), 1)
                    if stride == (1, 1) and cin == cout:
                        eltwise(f"{name}.add", h * w * c, 2)
                else:  # ds_block
                    k = _int(spec, "k", at, 3)
                    conv(f"{name}.depthwise", c, k, k, stride, c)
                    conv(f"{name}.pointwise", _int(spec, "out", at), 1, 1, (1, 1), 1)
    return tuple(out)


@lru_cache(maxsize=64)
def _per_sample(cnn: CNN, training: bool) -> tuple:
    layers = expand_layers(cnn)
    rows = []
    for layer in layers:  # GEMM rows per sample: output pixels of a convolution (implicit GEMM), 1 for fc
        if layer.get("residual") and not training:  # fused into the preceding convolution's epilogue:
            rows.append((layer["name"], 0.0, 0.0, 1.0, layer["vector"], layer["act_out"], 0.0))  # one read
            continue
        rows.append((layer["name"], layer["weights"], layer["tensor"], layer.get("rows", 1.0), layer["vector"],
                     layer["act_in"] + layer["act_out"], 1.0))
        if training and layer["conv"]:  # batch-norm and ReLU as their own kernels (read + write each)
            rows.append((layer["name"] + ".bn_relu", 0.0, 0.0, 1.0, 6.0 * layer["act_out"],
                         4.0 * layer["act_out"], 2.0))
    # identical layers (the repeated blocks of a stage) become one operator with a repeat count
    counts: dict[tuple, int] = {}
    first: dict[tuple, str] = {}
    for name, *values in rows:
        key = tuple(values)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, name)
    names = tuple(first[key] for key in counts)
    weights, ft, gemm_rows, fv, act, kernels = (np.array(col) for col in zip(*counts, strict=True))
    return names, np.array(list(counts.values()), dtype=float), weights, ft, gemm_rows, fv, act, kernels


@lru_cache(maxsize=64)
def parameters(cnn: CNN) -> float:
    return float(sum(layer["weights"] for layer in expand_layers(cnn)))


@lru_cache(maxsize=64)
def forward_flops(cnn: CNN) -> float:
    """FLOP of one sample's forward pass (matrix and vector work)."""
    return float(sum(layer["tensor"] + layer["vector"] for layer in expand_layers(cnn)))


@lru_cache(maxsize=64)
def training_activation_elements(cnn: CNN) -> float:
    """Activation elements one sample keeps for the backward pass: each convolution's output and its
    batch-norm output (the ReLU runs in place), and every other layer's output."""
    return float(sum(layer["act_out"] * (2 if layer["conv"] else 1) for layer in expand_layers(cnn)))


@lru_cache(maxsize=64)
def peak_activation_elements(cnn: CNN) -> float:
    """Largest input+output pair of any layer: the live working set of an inference pass per sample."""
    return float(max(layer["act_in"] + layer["act_out"] for layer in expand_layers(cnn)))


def pass_ops(cnn: CNN, batch, act_bytes: float, training: bool = False) -> OpTable:
    """Operators of one forward pass over `batch` samples (a float or a numpy column)."""
    names, repeat, weights, ft, gemm_rows, fv, act, kernels = _per_sample(cnn, training)
    scale = np.multiply.outer
    if np.ndim(batch):
        weights = weights[:, None]  # broadcasts against (ops, points) without a copy
    return OpTable(names=names, repeat=repeat, weights=weights, flops_tensor=scale(ft, batch),
                   rows=scale(gemm_rows, batch), flops_vector=scale(fv, batch),
                   act_bytes=scale(act * act_bytes, batch), kernels=kernels)
