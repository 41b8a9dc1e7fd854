"""How complete Integrated Gradients is, by quadrature rule and number of steps.

    .venv/bin/python benchmarks/ig_completeness.py [--quick] [--out FILE]

Completeness: IG's pixels should sum to S_c(x) - S_c(x'). For each rule and step count this
prints the mean and the largest relative error (sanity_lib.saliency.completeness_error) on
EfficientNet-Lite0 over every offline photo (zero baseline in the model's input space, the
argmax class) and on the trained MNIST CNN over 100 test digits. Results go to
benchmarks/results/ig_completeness.json.
"""
import argparse
import json
import time
from pathlib import Path

import torch

import sanity_lib as sl

RULES = ("riemann_middle", "gausslegendre", "gausslegendre_quadratic")


def measure(model, x, steps, batch_size):
    rows = []
    for rule in RULES:
        for n in steps:
            start = time.perf_counter()
            ig = sl.saliency.explain(model, x, "integrated_gradients", n_steps=n,
                                     integration=rule, batch_size=batch_size)
            err = sl.saliency.completeness_error(model, x, ig)
            rows.append({"rule": rule, "n_steps": n, "mean_error": float(err.nanmean()),
                         "max_error": float(err[~err.isnan()].max()), "n_images": len(x),
                         "seconds": time.perf_counter() - start})
            print(f"  {rule:24s} {n:4d} steps: mean {rows[-1]['mean_error']:.3f}, "
                  f"max {rows[-1]['max_error']:.3f}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer step counts and digits")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "ig_completeness.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    steps = (8, 32) if args.quick else (8, 16, 32, 50, 128)
    out = {}
    effnet = sl.models.efficientnet_lite0()
    photos = effnet.preprocess(sl.data.sample_images(names="all"))
    print(f"EfficientNet-Lite0, {len(photos)} photos")
    out["efficientnet_lite0"] = measure(effnet, photos, steps, batch_size=16)
    cnn, _ = sl.training.trained_mnist_model("cnn", "true", progress=False)
    digits = sl.data.load_mnist("test")[0][:20 if args.quick else 100]
    print(f"MNIST CNN, {len(digits)} digits")
    out["mnist_cnn"] = measure(cnn, cnn.preprocess(digits), steps, batch_size=512)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
