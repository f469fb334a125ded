"""Which columns reach a model, and how its failures are worded for viewers (issue 21).

Pure parts, no sandbox: the selection of the signature's columns with MLflow's own dtype
rules, the classified reasons built from what a child reports, and the performance gate's
note when a model's predict_proba failed. The sandboxed behaviour is in
tests/integration/test_sandbox_inputs.py and tests/e2e/test_credit_policy.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gates.base import GateContext, Status
from gates.evaluation import EvaluationData, ModelOutputs, Task
from gates.mlmodel import InputColumn, model_inputs, signature_columns
from gates.performance import PerformanceConfig, check
from service.sandbox.inputs import (
    EVERY_COLUMN,
    FITTED,
    SIGNATURE,
    InputMismatch,
    SentColumns,
    select_model_inputs,
    type_name,
)
from service.sandbox.reasons import MAX_NAMES_SHOWN, exception_type, input_reasons


def _mlmodel(*specs: dict[str, Any]) -> dict[str, Any]:
    return {"signature": {"inputs": json.dumps(list(specs))}}


ROWS = pd.DataFrame(
    {
        "income": [39580.0, 52490.0],
        "age": [58, 40],
        "gender": ["F", "M"],
        "flag": [0, 1],
    }
)


def test_the_signature_columns_in_its_order_and_nothing_else() -> None:
    mlmodel = _mlmodel(
        {"type": "long", "name": "age", "required": True},
        {"type": "double", "name": "income", "required": True},
        {"type": "string", "name": "region", "required": False},
    )
    assert signature_columns(mlmodel) == (
        InputColumn("age", "long"),
        InputColumn("income", "double"),
        InputColumn("region", "string", required=False),
    )
    selected = select_model_inputs(mlmodel, ROWS)
    assert list(selected.rows.columns) == ["age", "income"]  # an optional one may be absent
    assert selected.source == SIGNATURE
    assert model_inputs(mlmodel) == (frozenset({"age", "income", "region"}), "signature")


@pytest.mark.parametrize(
    "mlmodel",
    [{}, {"signature": {"inputs": "not json"}}, _mlmodel({"type": "tensor", "tensor-spec": {}})],
    ids=["no-signature", "unreadable", "tensor"],
)
def test_without_named_columns_every_column_goes_and_the_child_narrows(
    mlmodel: dict[str, Any],
) -> None:
    selected = select_model_inputs(mlmodel, ROWS)
    assert selected.source is None and selected.rows is ROWS


def test_a_required_column_the_data_lacks_is_named() -> None:
    mlmodel = _mlmodel({"type": "double", "name": "debt_ratio"}, {"type": "long", "name": "age"})
    with pytest.raises(InputMismatch) as caught:
        select_model_inputs(mlmodel, ROWS)
    assert caught.value.reasons == ["missing input column 'debt_ratio'"]


def test_an_unprintable_signature_name_is_not_shown() -> None:
    with pytest.raises(InputMismatch) as caught:
        select_model_inputs(_mlmodel({"type": "double", "name": "\x1b[2Jx"}), ROWS)
    assert caught.value.reasons == ["missing input column a column whose name is not printable"]


@pytest.mark.parametrize(
    ("declared", "values", "problem"),
    [
        ("double", [58, 40], "expected double, got long"),  # MLflow refuses int64 -> double
        ("long", [1.5, 2.0], "expected long, got double"),
        ("double", ["$1,200", "$900"], "expected double, got string"),
        ("boolean", [1.5, 2.0], "expected boolean, got double"),
        ("double", [0, 1], None),  # 0/1 integers MLflow does convert
        ("double", [1.5, 2.0], None),
        ("long", np.array([1, 2], dtype="int32"), None),
        ("string", ["a", "b"], None),
    ],
)
def test_dtypes_are_judged_by_mlflows_own_rules(
    declared: str, values: Any, problem: str | None
) -> None:
    rows = pd.DataFrame({"x": values})
    mlmodel = _mlmodel({"type": declared, "name": "x"})
    if problem is None:
        assert list(select_model_inputs(mlmodel, rows).rows.columns) == ["x"]
        return
    with pytest.raises(InputMismatch) as caught:
        select_model_inputs(mlmodel, rows)
    assert caught.value.reasons == [f"dtype mismatch in column 'x' ({problem})"]


def test_type_names_are_mlflows_words() -> None:
    assert type_name(pd.Series([1, 2])) == "long"
    assert type_name(pd.Series([1, 2], dtype="int32")) == "integer"
    assert type_name(pd.Series([1.0])) == "double"
    assert type_name(pd.Series(["a"])) == "string"
    assert type_name(pd.Series(["a"], dtype="string")) == "string"
    assert type_name(pd.Series([True])) == "boolean"
    assert type_name(pd.Series(["a"], dtype="category")) == "category"
    assert type_name(pd.Series([{"a": 1}])) == "object"


def test_exception_types_come_from_the_list_only() -> None:
    assert exception_type("ValueError") == "ValueError"
    assert exception_type("MlflowException") == "MlflowException"
    for hostile in ("LeakyError", "ValueError: sk_live_123", "x" * 5000, None, 7, ["KeyError"]):
        assert exception_type(hostile) == "an exception"


KNOWN = frozenset({"income", "age", "gender", "age_band", "approved"})


def test_reported_names_are_shown_only_when_the_data_has_them() -> None:
    reasons = input_reasons(
        sent=("age",),
        known=KNOWN,
        fitted=["age", "income", "sk_live_abc", "gender\n", "x" * 300],
    )
    assert reasons == [
        "missing input column 'income'",
        "the model expects 3 input column(s) the evaluation data does not have",
    ]


def test_a_count_of_names_the_data_lacks_is_capped() -> None:
    reasons = input_reasons(sent=(), known=KNOWN, fitted=[f"x{i}" for i in range(500)])
    assert reasons == [
        "the model expects more than 10 input column(s) the evaluation data does not have"
    ]


def test_unexpected_columns_are_the_sent_ones_the_model_was_not_fitted_on() -> None:
    reasons = input_reasons(sent=("age", "income", "gender"), known=KNOWN, fitted=["age", "income"])
    assert reasons == ["unexpected column 'gender'"]
    # without a signature the child drops them itself: only what is missing counts
    none = input_reasons(
        sent=("age", "gender"), known=KNOWN, fitted=["age", "income"], report_unexpected=False
    )
    assert none == ["missing input column 'income'"]


def test_a_keyerror_counts_only_when_it_names_a_data_column_not_sent() -> None:
    reasons = input_reasons(
        sent=("age",), known=KNOWN, fitted=None, missing_keys=["income", "age", "some_dict_key"]
    )
    assert reasons == ["missing input column 'income'"]


def test_long_lists_of_names_are_cut_and_counted() -> None:
    known = frozenset(f"c{i}" for i in range(20))
    reasons = input_reasons(sent=(), known=known, fitted=sorted(known))
    assert len(reasons) == MAX_NAMES_SHOWN + 1
    assert reasons[-1] == f"{20 - MAX_NAMES_SHOWN} more missing input column(s)"


def test_malformed_reports_from_the_child_are_ignored() -> None:
    columns = SentColumns(("age",), KNOWN, SIGNATURE)
    assert columns.reasons({"fitted_columns": "income", "missing_keys": [1, 2]}) == []
    assert columns.reasons({"fitted_columns": [{"x": 1}]}) == []


def test_the_evidence_names_where_the_columns_came_from() -> None:
    signed = SentColumns(("age", "income"), KNOWN, SIGNATURE)
    assert signed.evidence(None) == {"source": SIGNATURE, "columns": ["age", "income"]}
    unsigned = SentColumns(("age", "income", "gender"), KNOWN, None)
    assert unsigned.evidence(["age", "income"]) == {"source": FITTED, "columns": ["age", "income"]}
    # a kept list that is not a subset of what was sent is not believed
    claimed = unsigned.evidence(["age", "sk_live_abc"])
    assert claimed == {"source": EVERY_COLUMN, "columns": ["age", "income", "gender"]}


def test_the_performance_note_says_why_there_are_no_scores() -> None:
    y = np.array([0, 1] * 20)
    outputs = ModelOutputs(predictions=y, scores_error="ValueError raised in predict_proba")
    data = EvaluationData(pd.DataFrame({"t": y}), "t", Task.CLASSIFICATION, outputs)
    ctx = GateContext(
        artifact_dir=Path("."), model_name="m", model_version="1", mlmodel={},
        datasets={"evaluation": data},
    )  # fmt: skip
    result = check(ctx, PerformanceConfig(min={"roc_auc": 0.75}))
    assert result.status == Status.ERROR
    assert result.message == (
        "roc_auc has a bound but the model returned no class scores (predict_proba): "
        "ValueError raised in predict_proba"
    )
