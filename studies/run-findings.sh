#!/usr/bin/env bash
# Run the studies on the built-in data into docs/findings/STUDY/DATA--MODEL (cheapest first; each run resumes
# where it stopped, and cells shared between studies are computed once: --reuse), then rebuild docs/FINDINGS.md
# from the results. One study at a time, at the lowest CPU priority.
# cost-vs-k reads fit seconds, its own and those of the freeze cells it reuses: run it, and the studies before it,
# on an otherwise quiet machine (a paused or crowded cell keeps its slow seconds), or rerun it alone without --reuse.
#
#   studies/run-findings.sh [MODEL [DATASET...]]        e.g. studies/run-findings.sh mpnet-base movie-snippets
#   STUDIES="freeze-depth lora" studies/run-findings.sh  only these studies
set -euo pipefail
cd "$(dirname "$0")/.."
UNFREEZE=${UNFREEZE:-unfreeze}
MODEL=${1:-minilm-l6}
shift || true
DATASETS=${*:-movie-snippets bbc-news tweets}
# cheapest first: later studies reuse the cells of earlier ones (full fine-tuning at 300 and 1,000 examples,
# the freeze sweep), so the expensive ones left for last add only their own cells
mkdir -p docs/findings
STUDIES=${STUDIES:-features-vs-finetune freeze-depth frozen-head cost-vs-k feature-based setfit train-test-gap lora reinit-top}
for data in $DATASETS; do
  for study in $STUDIES; do
    nice -n 19 $UNFREEZE study "studies/$study.toml" --data "$data" --model "$MODEL" --reuse docs/findings \
      -o "docs/findings/$study/$data--$MODEL"
  done
done
$UNFREEZE study --summary docs/findings --studies studies -o docs/FINDINGS.md --overwrite
