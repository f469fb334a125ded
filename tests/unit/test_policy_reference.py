"""The README's policy reference is the configuration models' own: a drifted default fails."""

from __future__ import annotations

from pathlib import Path

from gates.fairness import FairnessConfig
from service.policy_reference import readme_block, reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_policy_reference_matches_the_gate_models() -> None:
    documented = readme_block(README.read_text(encoding="utf-8"))
    assert documented is not None, "README.md lost its policy-reference markers"
    assert documented == reference_markdown(), (
        "README.md's policy reference differs from the gates' configuration models: "
        "paste the output of `gatekeeper policy reference` over it"
    )


def test_a_documented_default_that_differs_from_the_model_is_caught() -> None:
    documented = readme_block(README.read_text(encoding="utf-8"))
    assert documented is not None
    row = "| `demographic_parity_ratio` | number or null | `0.8` |"
    assert row in documented  # the default the model holds
    assert FairnessConfig().demographic_parity_ratio == 0.8
    drifted = documented.replace(row, row.replace("`0.8`", "`0.75`"))
    assert drifted != reference_markdown()


def test_every_gate_setting_is_documented() -> None:
    text = reference_markdown()
    for name in FairnessConfig.model_fields:
        assert f"| `{name}` |" in text
    assert "| `time_budget_s` | number | `300` |" in text
    assert "| `min` | map one of accuracy, precision" in text
