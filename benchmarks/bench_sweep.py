"""Speed and memory of a cascading model-randomization sweep (run by ``make bench``).

Three contenders do the *same* work: the cascading randomization test of Adebayo et al.
(2018) on EfficientNet-Lite0 and the bundled photos, every layer group from the logits
down (10 groups, so 11 models: the trained one and 10 randomized), the paper's seven
methods, Spearman rank correlation of the absolute-value maps (``spearman_abs``) between
each step's maps and the trained model's:

``ours``
    ``sl.model_randomization_test`` as a reader calls it (shared passes, batching, the
    batch-norm-folded channels-last copy; maps kept).
``floor``
    The same number of forward-backward passes that our sweep needs, done naively: plain
    eager PyTorch, the unchanged model, ``torch.autograd.grad`` of the target logit to the
    input, batches of 32 rows. No randomization, no comparisons: only the passes.
``quantus``
    ``quantus.MPRT`` (Quantus 0.6) on identical work. Quantus' own layer steps reset every
    module with parameters one at a time, so its model wrapper is given our 10 layer
    groups (``sl.randomization.cascading``, same init and seed); its ``explain_func`` is
    ``sl.saliency.explain`` for one method (Captum underneath, the same settings) followed
    by our ``normalize(maps, "abs")``; ``similarity_func`` is Quantus' Spearman;
    ``y_batch`` is the trained model's class, and our sweep uses ``target="original"`` to
    match. Quantus runs one method per call and explains the trained model twice (once
    for ``a_batch``, once for its "original" row), as it always does.

Two settings: ``paper`` (IG 50 Gauss-Legendre steps, SmoothGrad 50 samples at noise 0.15)
and ``book`` (8 steps, 8 samples, as chapter 3 uses). Each contender runs in its own
subprocess (one thread count, its own peak memory: ``ru_maxrss``), after loading the model
and the photos and one warm-up pass. A last run measures our sweep's peak memory on
``--memory-images`` images at paper settings.

Usage::

    .venv/bin/python benchmarks/bench_sweep.py                  # full run
    .venv/bin/python benchmarks/bench_sweep.py --quick          # 1 image, book settings
    .venv/bin/python benchmarks/bench_sweep.py --images 4 --threads 2

Writes ``benchmarks/results/bench_sweep.json`` (``--out``) and prints a table. Timings on
a shared machine are only as good as the machine's quiet: the JSON records the load
average before and after.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INIT = "truncated_normal"   # the paper's re-initialization (chapter 3 uses it too)
SEED = 0
ROWS_PER_PASS = 32          # the batch size of the naive floor (and explain's default)

PAPER = {
    "gradient": {}, "gradient_x_input": {},
    "integrated_gradients": {"n_steps": 50},
    "smoothgrad": {"n_samples": 50, "noise_level": 0.15},
    "guided_backprop": {}, "gradcam": {}, "guided_gradcam": {},
}
BOOK = {**PAPER, "integrated_gradients": {"n_steps": 8}, "smoothgrad": {"n_samples": 8}}
SETTINGS = {"paper": PAPER, "book": BOOK}


# ----------------------------------------------------------------------------- workers

def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _setup(n_images, threads):
    import torch

    import sanity_lib as sl

    torch.set_num_threads(threads)
    model = sl.models.efficientnet_lite0().eval()
    photos = sl.data.sample_images(224)
    reps = -(-n_images // photos.shape[0])
    x = model.preprocess(photos.repeat(reps, 1, 1, 1)[:n_images]).contiguous()
    with torch.no_grad():
        targets = model(x).argmax(1)
    # Warm-up: one plain forward-backward pass (oneDNN primitives, allocator).
    xi = x[:1].clone().requires_grad_(True)
    torch.autograd.grad(model(xi)[0, 0], xi)
    return sl, torch, model, x, targets


def work_ours(args):
    sl, torch, model, x, targets = _setup(args.images, args.threads)
    base = _rss_mb()
    t0 = time.perf_counter()
    result = sl.model_randomization_test(
        model, x, SETTINGS[args.settings], mode="cascading", init=INIT, batchnorm="keep",
        seed=SEED, target="original", metrics=["spearman_abs"], progress=False,
        keep_maps=True, cache=False, device="cpu")
    seconds = time.perf_counter() - t0
    table = result.table
    scores = {f"{r.method}|{r.layer}|{r.image}": r.value for r in table.itertuples()}
    return {"seconds": seconds, "base_rss_mb": base, "scores": scores,
            "steps": len(result.layers), "targets_original": targets.tolist()}


def _n_passes(sl, methods, n_images, n_models):
    from sanity_lib.saliency._shared import passes_per_image

    return passes_per_image(methods) * n_images * n_models


def work_floor(args):
    sl, torch, model, x, targets = _setup(args.images, args.threads)
    n_models = len(sl.models.layer_groups(model)) + 1
    n_rows = _n_passes(sl, SETTINGS[args.settings], args.images, n_models)
    base = _rss_mb()
    t0 = time.perf_counter()
    done = 0
    while done < n_rows:  # the photos, repeated: only the count of rows matters
        k = min(ROWS_PER_PASS, n_rows - done)
        idx = torch.arange(done, done + k) % x.shape[0]
        rows = x[idx].clone().requires_grad_(True)
        out = model(rows)
        torch.autograd.grad(out.gather(1, targets[idx][:, None]).sum(), rows)
        done += k
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "base_rss_mb": base, "passes": n_rows}


def work_quantus(args):
    import warnings

    import numpy as np

    sl, torch, model, x, targets = _setup(args.images, args.threads)
    import quantus
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.helpers import utils as qutils
    from quantus.helpers.model.pytorch_model import PyTorchModel

    groups = sl.models.layer_groups(model)

    class OurSteps(PyTorchModel):
        """Quantus' torch wrapper, randomizing our layer groups instead of every module."""

        def get_random_layer_generator(self, order="top_down", seed=42):
            yield from sl.randomization.cascading(self.model, order="top_down", init=INIT,
                                                  seed=SEED, batchnorm="keep")

        @property
        def random_layer_generator_length(self):
            return len(groups)

    def wrapped(model, channel_first, softmax, device=None, model_predict_kwargs=None):
        return OurSteps(model=model, channel_first=channel_first, softmax=softmax,
                        device=device, model_predict_kwargs=model_predict_kwargs)

    qutils.get_wrapped_model = wrapped

    # Quantus refuses an all-zero map (e.g. GradCAM of a randomized head: every class
    # weight negative). Our sweep records NaN there; let Quantus do the same (scipy gives
    # NaN for a constant map) instead of stopping the whole run.
    from quantus.helpers import asserts as qasserts

    strict = qasserts.assert_attributions

    def lenient(x_batch, a_batch):
        if np.all(a_batch == 0):
            return None
        return strict(x_batch=x_batch, a_batch=a_batch)

    qasserts.assert_attributions = lenient

    def spearman(a, b, batched=False, **kwargs):
        # Quantus' own Spearman; for one image and a constant map scipy returns a bare
        # NaN float, which Quantus 0.6 then fails to index.
        try:
            return correlation_spearman(a, b, batched=batched, **kwargs)
        except AttributeError:
            return np.full(len(a), np.nan)

    def explain_func(model, inputs, targets, method=None, settings=None, **kwargs):
        maps = sl.saliency.explain(model, torch.as_tensor(inputs), method,
                                   target=torch.as_tensor(targets), **settings)
        return sl.similarity.normalize(maps, "abs").unsqueeze(1).numpy()

    x_np, y_np = x.numpy(), targets.numpy()
    base = _rss_mb()
    t0 = time.perf_counter()
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, settings in SETTINGS[args.settings].items():
            metric = quantus.MPRT(similarity_func=spearman, layer_order="top_down",
                                  abs=False, normalise=False, disable_warnings=True,
                                  display_progressbar=False)
            res = metric(model=model, x_batch=x_np, y_batch=y_np, a_batch=None,
                         explain_func=explain_func,
                         explain_func_kwargs={"method": method, "settings": settings},
                         batch_size=len(x_np), device="cpu")
            for layer, values in res.items():
                if layer != "original":
                    for i, v in enumerate(values):
                        scores[f"{method}|{layer}|{i}"] = float(v)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "base_rss_mb": base, "scores": scores}


WORKERS = {"ours": work_ours, "floor": work_floor, "quantus": work_quantus}


def worker_main(args):
    out = WORKERS[args.worker](args)
    out["peak_rss_mb"] = _peak_mb()
    sys.stdout.write("\nRESULT " + json.dumps(out) + "\n")


# ----------------------------------------------------------------------------- driver

def run_worker(name, settings, images, threads):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--settings", settings, "--images", str(images), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {name} ({settings}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def agreement(ours, theirs):
    common = set(ours) & set(theirs)
    if not common or len(common) != len(ours):
        return {"compared": len(common), "max_abs_diff": None}
    both_nan = sum(1 for k in common if ours[k] != ours[k] and theirs[k] != theirs[k])
    diffs = {k: abs(ours[k] - theirs[k]) for k in common
             if ours[k] == ours[k] and theirs[k] == theirs[k]}  # NaN: constant maps
    per_method = {}
    for k, d in diffs.items():
        m = k.split("|")[0]
        per_method[m] = max(per_method.get(m, 0.0), d)
    return {"compared": len(common), "both_nan": both_nan,
            "nan_in_one_only": len(common) - len(diffs) - both_nan,
            "max_abs_diff": max(diffs.values()) if diffs else None,
            "max_abs_diff_per_method": per_method}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 image, book settings, no memory run")
    p.add_argument("--images", type=int, default=2, help="images in the timed runs (default 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per run (default 1: on a busy machine two OpenMP "
                        "threads wait on each other at every barrier and time becomes noise)")
    p.add_argument("--settings", choices=["paper", "book", "both"], default="both")
    p.add_argument("--memory-images", type=int, default=8,
                   help="images for the peak-memory run of our sweep at paper settings "
                        "(default 8; 0 skips it)")
    p.add_argument("--no-quantus", action="store_true", help="leave Quantus out")
    p.add_argument("--out", default=str(HERE / "results" / "bench_sweep.json"))
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if args.images < 1 or args.threads < 1:
        p.error("--images and --threads must be >= 1")
    if args.quick:
        args.images, args.settings, args.memory_images = 1, "book", 0
    names = ["paper", "book"] if args.settings == "both" else [args.settings]
    contenders = ["ours", "floor"] + ([] if args.no_quantus else ["quantus"])

    import torch

    import sanity_lib as sl
    from sanity_lib.saliency._shared import passes_per_image

    n_models = len(sl.models.layer_groups(sl.models.efficientnet_lite0(pretrained=False))) + 1
    record = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "torch": torch.__version__, "load_before": os.getloadavg()},
        "config": {"images": args.images, "threads": args.threads, "models": n_models,
                   "init": INIT, "metric": "spearman_abs", "target": "original",
                   "rows_per_pass_floor": ROWS_PER_PASS},
        "runs": [],
    }
    for name in names:
        methods = SETTINGS[name]
        passes = passes_per_image(methods) * args.images * n_models
        naive = sum(_naive_passes(m, s) for m, s in methods.items()) * args.images * n_models
        got = {}
        for c in contenders:
            sys.stderr.write(f"running {c} ({name}, {args.images} images) ...\n")
            got[c] = run_worker(c, name, args.images, args.threads)
        floor = got["floor"]["seconds"]
        for c in contenders:
            g = got[c]
            row = {"settings": name, "contender": c, "images": args.images,
                   "seconds": round(g["seconds"], 2), "vs_floor": round(g["seconds"] / floor, 3),
                   "peak_rss_mb": round(g["peak_rss_mb"]),
                   "base_rss_mb": round(g["base_rss_mb"]),
                   "passes": passes, "passes_one_method_at_a_time": naive}
            if "quantus" in got:
                row["vs_quantus"] = round(g["seconds"] / got["quantus"]["seconds"], 3)
            if c == "quantus":
                row["agreement_with_ours"] = agreement(got["ours"]["scores"], g["scores"])
            record["runs"].append(row)
        _write(record, args.out)  # after each setting, so a long run leaves partial results
    if args.memory_images:
        sys.stderr.write(f"running ours (paper, {args.memory_images} images) for memory ...\n")
        g = run_worker("ours", "paper", args.memory_images, args.threads)
        record["memory_run"] = {"settings": "paper", "images": args.memory_images,
                                "seconds": round(g["seconds"], 2),
                                "peak_rss_mb": round(g["peak_rss_mb"]),
                                "base_rss_mb": round(g["base_rss_mb"])}
    out = _write(record, args.out)
    print_table(record)
    print(f"\nwritten: {out}")


def _write(record, path):
    record["machine"]["load_after"] = os.getloadavg()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return out


def _naive_passes(method, settings):
    if method == "integrated_gradients":
        return settings.get("n_steps", 50)
    if method in ("smoothgrad", "vargrad"):
        return settings.get("n_samples", 50)
    return 2 if method == "guided_gradcam" else 1


def _cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(record):
    cfg = record["config"]
    print(f"Cascading sweep, EfficientNet-Lite0, {cfg['models']} models, {cfg['images']} "
          f"image(s), {cfg['threads']} thread(s), {record['machine']['cpu']}")
    print(f"load average before {record['machine']['load_before']}, "
          f"after {record['machine']['load_after']}")
    head = (f"{'settings':8} {'contender':9} {'passes':>7} {'seconds':>9} {'vs floor':>9} "
            f"{'vs quantus':>10} {'peak MB':>8} {'agreement (max |d rho|)':>24}")
    print(head)
    print("-" * len(head))
    for r in record["runs"]:
        agree = r.get("agreement_with_ours", {}).get("max_abs_diff")
        agree = "" if agree is None else f"{agree:.2e}"
        vq = f"{r['vs_quantus']:.2f}x" if "vs_quantus" in r else ""
        print(f"{r['settings']:8} {r['contender']:9} {r['passes']:7d} {r['seconds']:9.1f} "
              f"{r['vs_floor']:8.2f}x {vq:>10} {r['peak_rss_mb']:8d} {agree:>24}")
    if "memory_run" in record:
        m = record["memory_run"]
        print(f"memory: ours, paper settings, {m['images']} images: peak {m['peak_rss_mb']} MB "
              f"(after loading: {m['base_rss_mb']} MB), {m['seconds']:.0f} s")


if __name__ == "__main__":
    main()
