"""Token tasks' scores: strict entity-level precision/recall/F1 (seqeval) per scheme, per type, token accuracy."""

from __future__ import annotations

import pytest

from unfreeze.errors import UnfreezeError
from unfreeze.metrics import TOKEN_METRICS, entity_report, score_range, tag_scheme, token_metrics

TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
# PER right; LOC called ORG; ORG right; MISC cut short (2-2 for 2-3)
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-MISC", "O"]]


def test_entity_scores_iob2():
    assert token_metrics(TRUE, PRED, "IOB2") == {
        "entity_f1": 0.5,
        "entity_precision": 0.5,
        "entity_recall": 0.5,
        "token_accuracy": 0.75,
    }
    assert tuple(token_metrics(TRUE, PRED)) == TOKEN_METRICS


def test_per_type():
    assert entity_report(TRUE, PRED, "BIO") == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1.0},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1.0},
        "ORG": {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1.0},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1.0},
    }


def test_strict_differs_from_conlleval():
    from seqeval.metrics import f1_score

    truth, predicted = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    # conlleval reads an I- after O as the start of an entity; strict IOB2 reads no entity there
    assert f1_score(truth, predicted) == 1.0
    scores = token_metrics(truth, predicted, "IOB2")
    assert scores["entity_f1"] == 0.0 and scores["entity_recall"] == 0.0
    assert scores["token_accuracy"] == pytest.approx(2 / 3)


def test_iobes_strict():
    truth = [["S-PER", "O", "B-LOC", "E-LOC"]]
    predicted = [["S-PER", "O", "B-LOC", "I-LOC"]]  # a B- I- with no E- closes no entity in IOBES
    expected = {
        "entity_f1": pytest.approx(2 / 3),
        "entity_precision": 1.0,
        "entity_recall": 0.5,
        "token_accuracy": 0.75,
    }
    assert token_metrics(truth, predicted, "IOBES") == expected
    assert token_metrics(truth, predicted, "bioes") == expected


def test_nothing_to_find_scores_zero_without_warning(recwarn):
    assert token_metrics([["O", "O"]], [["O", "O"]])["entity_f1"] == 0.0
    assert token_metrics([["O", "O"]], [["O", "O"]])["token_accuracy"] == 1.0
    assert not [w for w in recwarn if "ill-defined" in str(w.message)]


def test_schemes_and_ranges():
    assert tag_scheme("bio") == "IOB2" and tag_scheme("IOB1") == "IOB1"
    with pytest.raises(UnfreezeError, match=r"Unknown tagging scheme 'BILUO'; choose one of: IOB1, IOB2, IOBES, BILOU"):
        tag_scheme("BILUO")
    with pytest.raises(ValueError, match="same number"):
        token_metrics([["O"]], [["O", "O"]])
    assert all(score_range(m) == (0.0, 1.0) for m in TOKEN_METRICS)
