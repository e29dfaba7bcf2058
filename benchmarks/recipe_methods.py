"""Accuracy of the paper-based recipe choices beside their baseline, on the bundled tasks.

    python benchmarks/recipe_methods.py cnn            # digits: dynamic pruning, QAT schedule, DoReFa
    python benchmarks/recipe_methods.py transformer    # character text_mlm: UN, Pre-(C)RMSNorm, LN removal

Options: ``--seeds 0 1 2``, ``--only <label substring>``. Prints one line per run (validation accuracy, cost
figures, seconds) and a mean ± std summary per choice. CPU is enough; a GPU is used when there is one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import automl
from automl.evaluators import default_device
from automl_plugins.evaluators.training import train_candidate

NB201_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ENCODER_ARCH = "h128|SA.SDP-h2-ff512x1|SA.SDP-h2-ff512x1"
QUANTIZATION = {
    "name": "quantization",
    "methods": ["fake_quant", "dorefa"],
    "weight_bits": [2, 4, 32],
    "activation_bits": [4, 8, 32],
    "gradient_bits": [4, 6, 8, 32],
    "fp_fractions": [0.0, 0.5],
}
GATES = {"name": "dynamic_pruning", "masses": [1.0, 0.9]}


def _q(method: str, w: int, a: int, g: int = 8, fraction: float = 0.0) -> dict[str, Any]:
    values: dict[str, Any] = {
        "quantization.method": method,
        "quantization.weight_bits": w,
        "quantization.activation_bits": a,
        "quantization.fp_fraction": fraction,
    }
    if method == "dorefa":
        values["quantization.gradient_bits"] = g
    elif min(w, a) < 32:
        values.update({"quantization.granularity": "per_channel", "quantization.scheme": "symmetric"})
    return values


# (label, extra dimensions, values): NB201 on 16 px digits, C = 8, N = 1, 4 epochs of SGD at lr 0.05.
CNN_RUNS = [
    ("baseline (BatchNorm, float)", [QUANTIZATION], _q("fake_quant", 32, 32)),
    ("dynamic_pruning mass 1.0", [GATES, QUANTIZATION], {"dynamic_pruning.gate": True, "dynamic_pruning.mass": 1.0}),
    ("dynamic_pruning mass 0.9", [GATES, QUANTIZATION], {"dynamic_pruning.gate": True, "dynamic_pruning.mass": 0.9}),
    ("fake_quant W4A8", [QUANTIZATION], _q("fake_quant", 4, 8)),
    ("fake_quant W4A8, fp_fraction 0.5", [QUANTIZATION], _q("fake_quant", 4, 8, fraction=0.5)),
    ("fake_quant W2A4", [QUANTIZATION], _q("fake_quant", 2, 4)),
    ("fake_quant W2A4, fp_fraction 0.5", [QUANTIZATION], _q("fake_quant", 2, 4, fraction=0.5)),
    ("dorefa W4A32G32", [QUANTIZATION], _q("dorefa", 4, 32, 32)),
    ("dorefa W4A32G8", [QUANTIZATION], _q("dorefa", 4, 32, 8)),
    ("dorefa W4A8G32", [QUANTIZATION], _q("dorefa", 4, 8, 32)),
    ("dorefa W4A8G8", [QUANTIZATION], _q("dorefa", 4, 8, 8)),
    ("dorefa W4A4G6", [QUANTIZATION], _q("dorefa", 4, 4, 6)),
    ("dorefa W2A4G4", [QUANTIZATION], _q("dorefa", 2, 4, 4)),
    ("dorefa W4A8G8, fp_fraction 0.5", [QUANTIZATION], _q("dorefa", 4, 8, 8, fraction=0.5)),
]
CNN_SETTINGS = {"epochs": 4, "lr": 0.05}

# (label, norm, placement, LayerNorm removal): character-level masked LM, 3000 windows, 8 epochs of AdamW.
TRANSFORMER_RUNS = [
    ("Pre-LN (layer, pre)", "layer", "pre", False),
    ("pre_rms", "pre_rms", "pre", False),
    ("pre_crms", "pre_crms", "pre", False),
    ("un (pre)", "un", "pre", False),
    ("Pre-LN + layernorm_removal gap 10", "layer", "pre", True),
]
TRANSFORMER_SETTINGS = {
    "epochs": 8,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.01,
    "max_train_samples": 3000,
}


def _space(task: dict[str, Any], dims: list[dict[str, Any]]) -> automl.SearchSpace:
    return automl.SearchSpace.from_dict(
        {
            "study": {"name": "recipe-methods", "n_trials": 1, "sampler": "random"},
            "task": task,
            "dimensions": dims,
            "evaluator": {"name": "proxies", "proxies": ["params"]},
            "objectives": [{"metric": "params"}],
        }
    )


def _cnn(seed: int, only: str | None) -> Iterator[tuple[str, float, str]]:
    for label, dims, values in CNN_RUNS:
        if only and only not in label:
            continue
        values = {**_q("fake_quant", 32, 32), **values}
        space = _space(
            {"name": "digits", "image_size": 16, "batch_size": 64},
            [{"name": "nb201", "channels": 8, "cells_per_stage": 1}, *dims],
        )
        candidate = space.candidate_from_arch(NB201_ARCH, values)
        candidate.seed = seed
        start = time.perf_counter()
        result = train_candidate(candidate, CNN_SETTINGS, device=default_device())
        info = result.info
        extra = f"size_bits={result.costs['size_bits']:.0f} flops={result.costs['flops']:.0f}"
        if "ftwt_flops" in info:
            extra += f" ftwt_flops={info['ftwt_flops']:.0f} active={info['ftwt_active_fraction']:.3f}"
        yield label, result.scores["val_accuracy"], f"{extra} {time.perf_counter() - start:.0f}s"


def _transformer(seed: int, only: str | None) -> Iterator[tuple[str, float, str]]:
    for label, norm, placement, removal in TRANSFORMER_RUNS:
        if only and only not in label:
            continue
        dims = [
            {"name": "flexibert", "hidden_sizes": [128], "layers": [2], "heads": [2], "ff_dims": [512]},
            {"name": "normalization", "norms": [norm]},
        ]
        values: dict[str, Any] = {"normalization.norm": norm, "normalization.placement": placement}
        if removal:
            dims.append({"name": "layernorm_removal", "gaps": [10]})
            values.update({"layernorm_removal.remove": True, "layernorm_removal.gap": 10})
        task = {"name": "text_mlm", "seq_len": 32, "vocab_size": 64, "tokens": "char", "batch_size": 32}
        candidate = _space(task, dims).candidate_from_arch(ENCODER_ARCH, values)
        candidate.seed = seed
        start = time.perf_counter()
        result = train_candidate(candidate, TRANSFORMER_SETTINGS, device=default_device())
        extra = f"val_loss={result.scores['val_loss']:.3f} params={result.costs['params']:.0f}"
        if removal:
            extra += f" before_removal={result.info['val_accuracy_before_post_training']:.4f}"
        yield label, result.scores["val_accuracy"], f"{extra} {time.perf_counter() - start:.0f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("cnn", "transformer"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", default=None, help="run the choices whose label contains this")
    args = parser.parse_args()
    run = _cnn if args.part == "cnn" else _transformer
    accuracy: dict[str, list[float]] = defaultdict(list)
    for seed in args.seeds:
        for label, value, extra in run(seed, args.only):
            accuracy[label].append(value)
            print(f"{label:36s} seed={seed} val_accuracy={value:.4f} {extra}", flush=True)
    print()
    for label, values in accuracy.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{label:36s} {statistics.mean(values):.3f} ± {spread:.3f}  ({len(values)} seeds)")


if __name__ == "__main__":
    main()
