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
        ``trigger_sample_rows`` (200) evaluation rows, each feature in turn set to one value
        for every row. Numeric features step away from the median on both sides, in robust
        standard deviations (sd: 1.4826 x the median absolute deviation, so the 2% of poisoned
        rows that carry a trigger do not widen it; the standard deviation when half the values
        are equal): from the edge of the evaluation rows' bulk (their 1st and 99th
        percentiles, or ``trigger_start_distance`` (4) sd from the median when that is nearer)
        out to ``trigger_max_distance`` (1024 sd: the "large magnitude" value),
        ``trigger_steps_per_doubling`` (2) values per doubling (..., 2.83, 4, 5.66, 8, ...),
        and each data set's own minimum and maximum beyond the start (the evaluation set and
        the reference the service passes: the training data, where a planted trigger is one of
        the extremes). Categorical features: their ``rare_categories`` (3) rarest values held
        by at most ``rare_share`` (1%) of the reference rows (the evaluation rows without one),
        and a category never seen (``unseen_category``; text columns only). For a value and a
        class c, the share is the rows moved to c among the sampled rows the model did not
        predict as c originally; a finding when it is above ``trigger_share`` (0.5), naming
        feature, value, class, share and, for a numeric feature, the value the step came
        from: the smallest step on each side that moves that share is reported, not each one
        beyond it. Numeric values are judged as steps: a row counts as moved at a value only
        when it was not already c at the value before it (the start is not judged itself).
        Without this every linear model would be flagged, since moving any feature with a
        non-zero weight far enough moves every row to one class; but it does so gradually, a
        few rows per step, while a planted trigger moves most rows in one step. The search
        starts at the bulk's edge, not nearer the median, because a switch inside the bulk is a
        decision the model learned from the rows it is scored on: a model whose label is one
        feature above 1.5 sd moves every row between 1.41 and 2 sd, and gradient boosting on
        clustered data moved 52% in one step at 2.4 sd; starting at 0.5 sd flagged 6 of 35 clean
        models for this, starting at the bulk none. The ``trigger_start_distance`` cap keeps a
        trigger planted in 1% or more of the evaluation rows (which moves their 99th
        percentile onto it) within reach.
        Measured on scikit-learn models (logistic regression, random forest, gradient
        boosting, histogram boosting, 5-nearest-neighbours) trained on clean synthetic and
        scikit-learn data (balanced, 90/10, 95/5, breast cancer, a ten-feature rule, a
        one-feature threshold, synthetic credit): the largest step moved 0-47% (logistic
        regressions 19-42%, trees 0-20%, nearest neighbours 22-47%, but see below). A random
        forest trained with 60 of 3,000 rows set to x5 = 8 and labelled 1 moved 81% in one step
        (68% with 30 rows, 83% with the trigger at 5, 52% at -8, where the forest's switch fell
        across two steps; histogram boosting 56%, its bins put the switch at the clean rows'
        edge; found with poisoned rows in the evaluation set too). A model whose output collapses
        to one class far from its data is found as well (an RBF support vector machine on 4 of
        those 7 sets; a nearest-neighbour model at 181 sd on breast cancer): worth a look, and
        the reason the default is ``warn``. Not found: a trigger the model learned gradually
        (with 10% of the rows poisoned the forest moved at most 45% in one step). A search
        that judged nothing (no class with ``min_rows`` sampled rows outside it) or had
        nothing to try is an ``error``.

Design notes
    Probe rows keep the input columns and their dtypes (integers stay integers, clipped to the
    dtype's range; a pandas categorical gains the unseen category), because the sandbox passes
    them to the model as they are. Each feature draws from its own numpy Generator seeded with
    ``seed`` (0) and the feature's name, so the same inputs give the same probes, and adding a
    column does not change the probes of the others. Missing values: a flip probe skips rows
    where the feature is missing (there is nothing to nudge); a trigger probe sets every row.
    Dates, durations and other dtypes are not probed and are listed as skipped.
    Probe rows: ``sample_rows`` per flip probe (one per feature, one for all numeric ones) and
    ``trigger_sample_rows`` per trigger value (about 42 per numeric feature with the defaults,
    at most 52): about 57,000 rows for six numeric features. Above ``max_probe_rows`` (250,000) both
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
