"""The policy file as its author writes it: `off` is a mode, not a boolean (issue 21, item 4).

YAML 1.1 (PyYAML's default) reads unquoted `off`, `on`, `yes`, `no` as booleans, so
`mode: off` used to be refused with "Input should be 'enforce', 'warn' or 'off'". The policy
is read with YAML 1.2's booleans (`true` / `false` only); errors still name file and line.
Real files in tmp_path, loaded the way `gatekeeper serve` loads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gates.base import GateMode
from gates.drift import SkewMode
from gates.robustness.config import TriggerMode
from service.errors import ConfigError
from service.policy import load_policy_file, policy_for

OFF_EVERYWHERE = """\
models:
  - match: "churn-*"
    data:
      evaluation: {uri: "file:///srv/eval/churn.csv", target: churned}
      sensitive_features: [gender]
    gates:
      security: {mode: enforce, allow_code: no}
      performance: {mode: off}
      fairness:
        mode: off
      robustness:
        mode: warn
        trigger_mode: off
      drift:
        mode: warn
        skew_mode: off
    waivers: {allow_critical: true}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_unquoted_off_is_the_off_mode_of_every_gate_that_has_one(tmp_path: Path) -> None:
    path = _write(tmp_path, OFF_EVERYWHERE)
    load_policy_file(path)  # what `gatekeeper serve` refuses to start on
    policy = policy_for("churn-classifier", path)
    assert policy.mode("performance") == GateMode.OFF
    assert policy.mode("fairness") == GateMode.OFF
    assert policy.robustness is not None and policy.robustness.trigger_mode == TriggerMode.OFF
    assert policy.drift is not None and policy.drift.skew_mode == SkewMode.OFF
    assert policy.mode("security") == GateMode.ENFORCE
    # genuine booleans still read as booleans: YAML 1.2's true/false, and pydantic's
    # yes/no for a (non-strict) boolean field
    assert policy.waivers.allow_critical is True
    assert policy.security.allow_code is False


@pytest.mark.parametrize(
    "value",
    ["of", "false", "'on'"],  # a typo, a real boolean, a quoted YAML 1.1 boolean
)
def test_a_bad_mode_still_names_the_file_and_the_line(tmp_path: Path, value: str) -> None:
    text = OFF_EVERYWHERE.replace("trigger_mode: off", f"trigger_mode: {value}")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    message = str(caught.value)
    expected = "models[0].gates.robustness.trigger_mode: Input should be 'warn', 'fail' or 'off'"
    assert f"{path}:13: {expected}" in message


def test_a_yaml_1_1_boolean_spelling_on_a_strict_boolean_says_what_to_write(
    tmp_path: Path,
) -> None:
    text = OFF_EVERYWHERE.replace("trigger_mode: off", "trigger_mode: off\n        giskard: no")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    message = str(caught.value)
    assert f"{path}:14: models[0].gates.robustness.giskard:" in message
    assert "true or false" in message
