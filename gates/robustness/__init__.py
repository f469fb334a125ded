"""Robustness gate: do tiny input changes flip the candidate's predictions, and does one rare or
out-of-range value of a feature take the model over (a planted trigger, a "backdoor")?

The gatekeeper never loads a model, so the gate comes in two pure halves around one sandbox
call. The service (1) asks `plan_probes` for every row the model must be asked about, built
from the evaluation rows and seeded: one DataFrame of the model's input columns plus the
bookkeeping of which row is which probe; (2) runs the candidate once on the evaluation rows
followed by the probe rows (``plan.batch(evaluation_inputs)``, split back with
``plan.split(outputs)``); (3) hands both to `judge` (or puts a `RobustnessData` under
``datasets["robustness"]`` and calls `check`, which takes the evaluation predictions and the
task from ``datasets["evaluation"]``). The candidate's predictions on the evaluation rows are
the baseline every probe is compared with.

Checks
    ROBUST-FLIP-001 (HIGH, fails)  prediction flip rate under small perturbations, on
        ``sample_rows`` (1,000) evaluation rows. Numeric features are moved by ``epsilon``
        (0.05) times their standard deviation, up or down at random (seeded); an integer
        feature by that amount rounded, and not at all when it rounds to 0 (a 0/1 flag cannot
        move "a little": it is listed as skipped). Each numeric feature is probed on its own
        (the per-feature table) and all of them at once (row ``<all numeric features>``: the
        realistic case, a whole row measured with a little noise). A classifier's row flips
        when its predicted class changes; a regressor's when the prediction moves by more than
        ``regression_tolerance`` (0.1) of its own size (the size is floored at 1% of the mean
        absolute prediction, so a prediction near zero does not turn a negligible change into
        an infinite relative one). The gate fails when the all-at-once rate or any single
        feature's rate is above ``max_flip_rate`` (0.05): the all-at-once rate catches a model
        brittle everywhere a little (a 1-nearest-neighbour classifier on 25% noisy labels:
        about 3% per feature, 7% together), the per-feature rates a model brittle in one
        feature only, which an average over many features would hide (an average of the
        per-feature rates is never judged: it cannot exceed the highest one). For scale:
        logistic regression, random forest, gradient boosting and 5-nearest-neighbours on
        scikit-learn's synthetic and breast-cancer data flipped 0-4.3% (gradient boosting on
        labels with 10% noise the most).
        Categorical features are swapped to another of their ``top_categories`` (5) most
        frequent values. That is not a small change (a model that relies on ``purpose`` should
        change its mind when the purpose changes), so their rates are in the table and judged
        only against ``max_categorical_flip_rate`` (null: reported, not judged). A feature
        probed on fewer than ``min_rows`` (30) rows is listed, not judged; a flip check that
        judged nothing is an ``error``. Evidence: per probe the rows, flips, rate, threshold,
        verdict and up to three flipped rows (position in the evaluation set, value before and
        after, prediction before and after), so a person can replay them.
    ROBUST-TRIGGER-001 (HIGH, confidence medium; ``warn`` by default, ``trigger_mode: fail``
        blocks, ``off`` skips; classifiers only)  backdoor trigger search on
        ``trigger_sample_rows`` (200) evaluation rows, each feature in turn set to a value the
        model never saw in training. The reference frame the service passes (the training
        data) defines what was seen; without one, the evaluation rows do. Numeric features:
        the range's edge (``max``, ``min``) and ``max + d std``, ``min - d std`` for ``d`` from 1
        to ``trigger_max_distance`` (1024: the "large magnitude" value),
        ``trigger_steps_per_doubling`` (2) values per doubling (1, 1.41, 2, 2.83, ...).
        Categorical features: their ``rare_categories`` (3) rarest values held by at most
        ``rare_share`` (1%) of the reference rows, and a category never seen
        (``unseen_category``; text columns only). For a value and a class c, the share is the
        rows moved to c among the sampled rows the model did not predict as c originally; a
        finding when it is above ``trigger_share`` (0.5), naming feature, value, class, share.
        Numeric values are judged as steps away from the range: a row counts as moved at a
        value only when it was not already c at the value before it (the first step starts at
        the edge, which is in range and not judged itself). Without this every linear model
        would be flagged, since moving any feature with a non-zero weight far enough moves
        every row to one class; but it does so gradually, a few rows per step, while a planted
        trigger moves most rows in one step. Measured on synthetic and scikit-learn data sets
        (balanced, 90/10, 95/5, breast cancer): the largest step of a logistic regression moved
        22-38% of the rows, trees and boosting 0% (they are constant beyond the range), a
        planted ``f3 > 10`` trigger 86%. With one step per doubling, logistic regressions on
        imbalanced data reached 46-60%, hence two. A model whose output collapses to one class
        just outside the training range is found as well (an RBF support vector machine, 59-96%
        on two of those sets; a nearest-neighbour model far from its data): worth a look, and
        the reason the default is ``warn``. A search that judged nothing (no class with
        ``min_rows`` sampled rows outside it) or had nothing to try is an ``error``.

Design notes
    Probe rows keep the input columns and their dtypes (integers stay integers, clipped to the
    dtype's range; a pandas categorical gains the unseen category), because the sandbox passes
    them to the model as they are. Each feature draws from its own numpy Generator seeded with
    ``seed`` (0) and the feature's name, so the same inputs give the same probes, and adding a
    column does not change the probes of the others. Missing values: a flip probe skips rows
    where the feature is missing (there is nothing to nudge); a trigger probe sets every row.
    Dates, durations and other dtypes are not probed and are listed as skipped.
    Probe rows: ``sample_rows`` per flip probe (one per feature, one for all numeric ones) and
    ``trigger_sample_rows`` per trigger value (44 per numeric feature with the defaults):
    about 60,000 rows for six numeric features. Above ``max_probe_rows`` (250,000) both
    samples shrink by the same factor (never below ``min_rows``) and the evidence says so;
    if even that is too many, ``error``. ``probe_rows`` in the evidence is the bill.
    A model that cannot predict on a probe row (an encoder that rejects an unseen category)
    fails the sandbox call; that is a robustness error too, but the service should then still
    evaluate the other gates on the evaluation rows alone.

Fails closed (``error``, which blocks like ``fail``): no rows, no features, a feature missing
from the frame or the reference, a plan that could not be made, a prediction count that does
not match the rows, missing predictions, labels whose type changed between the baseline and
the probes, a check that judged nothing. ``mode`` (enforce | warn | off) is accepted here and
applied by the policy decision.

Modules: config.py (the settings, rule ids), probes.py (the plan the two halves share),
plan.py and perturbations.py (planning: `plan_probes`, and how each feature is probed),
judge.py (judging, findings, `check`).
"""

from __future__ import annotations

from gates.evaluation import Task
from gates.robustness.config import (
    ALL_NUMERIC,
    GATE_NAME,
    MAX_SAMPLE_ROWS,
    ROBUSTNESS_KEY,
    RULE_FLIP,
    RULE_TRIGGER,
    UNSEEN,
    FeatureKind,
    GiskardLevel,
    ProbeKind,
    RobustnessConfig,
    TriggerMode,
)
from gates.robustness.giskard_issues import GiskardIssue, GiskardScan, judge_giskard, merge
from gates.robustness.judge import check, judge
from gates.robustness.plan import plan_probes
from gates.robustness.probes import Probe, ProbePlan, RobustnessData, Skipped

__all__ = [
    "ALL_NUMERIC",
    "GATE_NAME",
    "MAX_SAMPLE_ROWS",
    "ROBUSTNESS_KEY",
    "RULE_FLIP",
    "RULE_TRIGGER",
    "UNSEEN",
    "FeatureKind",
    "GiskardIssue",
    "GiskardLevel",
    "GiskardScan",
    "Probe",
    "ProbeKind",
    "ProbePlan",
    "RobustnessConfig",
    "RobustnessData",
    "Skipped",
    "Task",
    "TriggerMode",
    "check",
    "judge",
    "judge_giskard",
    "merge",
    "plan_probes",
]
