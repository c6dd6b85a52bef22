"""/v1/medqa request validation and error bodies (no Ray)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medforge.serve.qa import QARequest, safe_validation_errors

SECRET_Q = "Mrs. Quorra Blint, MRN 55123, has fever."


def test_options_as_dict_or_list_become_lettered_dict():
    assert QARequest(question="q", options=["x", "y"]).options == {"A": "x", "B": "y"}
    assert QARequest(question="q", options={"A": "x", "C": "y"}).options == {"A": "x", "C": "y"}


@pytest.mark.parametrize("options", [["only"], [f"o{i}" for i in range(11)], {"A": "x", "AB": "y"},
                                     {"A": "x", "b": "y"}, ["x", "  "], {"A": 1, "B": 2}])
def test_bad_options_are_refused_without_echoing_the_input(options):
    with pytest.raises(ValidationError) as exc:
        QARequest(question=SECRET_Q, options=options)
    safe = safe_validation_errors(exc.value.errors())
    assert safe and all(set(e) == {"loc", "msg", "type"} for e in safe)
    assert "Quorra" not in str(safe) and "only" not in str(safe) and "o10" not in str(safe)


def test_unknown_and_missing_fields_are_refused():
    with pytest.raises(ValidationError):
        QARequest(question="q", options=["a", "b"], patient_name="x")
    with pytest.raises(ValidationError):
        QARequest.model_validate({"options": ["a", "b"]})
