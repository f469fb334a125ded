"""The quickstart demo: an embedded MLflow, two example versions, one gatekeeper.

Not product code: `service` never imports it (tests/unit/test_layout_rules.py).
"""
