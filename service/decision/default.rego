# The gatekeeper's own decision rules. A policy's `rego:` modules join this package and add
# to `deny` and `warn`. Passed = no `deny`; passed only because of a waiver = `waived`.
# The input document is described in the README ("The decision input").
package gatekeeper

import rego.v1

blocking_statuses := {"fail", "error"}

minor_severities := {"INFO", "LOW"}

# -- waivers -----------------------------------------------------------------------------------

# A waiver counts while it is not revoked and not expired at the decision's time (the worker
# only passes active ones; a replay re-judges them at the time it was made).
active_waivers contains w if {
	some w in input.waivers
	not w.revoked
	w.expires_at_ns > input.now_ns
}

# A CRITICAL security finding (a dangerous callable, a code-execution path) is never waived
# unless the policy says so in so many words.
unwaivable(gate, finding) if {
	gate.name == "security"
	finding.severity == "CRITICAL"
	not input.policy.waivers.allow_critical
}

has_unwaivable(gate) if {
	some finding in gate.findings
	unwaivable(gate, finding)
}

rule_waiver(gate, finding) := w.id if {
	not unwaivable(gate, finding)
	some w in active_waivers
	w.rule_id == finding.rule_id
}

finding_covered(gate, finding) if finding.severity in minor_severities

finding_covered(gate, finding) if rule_waiver(gate, finding)

# The waivers that let a blocking gate through: one for the whole gate ...
gate_waivers(gate) := {w.id |
	some w in active_waivers
	w.gate == gate.name
} if {
	not has_unwaivable(gate)
} else := set()

# ... or one for every finding that is not minor.
rule_waivers(gate) := {id |
	some finding in gate.findings
	id := rule_waiver(gate, finding)
} if {
	gate.status == "fail"
	every finding in gate.findings {
		finding_covered(gate, finding)
	}
} else := set()

waivers_for(gate) := gate_waivers(gate) | rule_waivers(gate)

blocking(gate) if {
	gate.mode == "enforce"
	gate.status in blocking_statuses
}

# -- gates -------------------------------------------------------------------------------------

# Gates the policy does not configure for the model are listed as `not_configured`; they
# are not a run of the gate.
ran_gates := [gate | some gate in input.gates; gate.status != "not_configured"]

deny contains msg if {
	count(ran_gates) == 0
	msg := "no gate ran"
}

deny contains msg if {
	some gate in input.gates
	blocking(gate)
	count(waivers_for(gate)) == 0
	msg := sprintf("%s: %s", [gate.name, gate.message])
}

# Gates that blocked and were let through by a waiver: the run is `waived`, not `passed`
# (the gatekeeper adds a warning naming the waivers for each).
waived contains {"gate": gate.name, "waivers": sort(waivers_for(gate)), "message": gate.message} if {
	some gate in input.gates
	blocking(gate)
	count(waivers_for(gate)) > 0
}

warn contains msg if {
	some gate in input.gates
	gate.mode == "warn"
	gate.status in {"fail", "error", "warn"}
	msg := sprintf("%s: %s", [gate.name, gate.message])
}

warn contains msg if {
	some gate in input.gates
	gate.mode == "enforce"
	gate.status == "warn"
	msg := sprintf("%s: %s", [gate.name, gate.message])
}

# -- data classification (`data.columns` of the policy entry) ----------------------------------

classification_waived(rule_id) if {
	some w in active_waivers
	w.rule_id == rule_id
}

deny contains msg if {
	some column, class in input.data.columns
	class == "secret"
	column in input.model.inputs
	not classification_waived("DATA-SECRET-INPUT")
	msg := sprintf("DATA-SECRET-INPUT: column '%s' is classified secret and is a model input", [column])
}

deny contains msg if {
	some column, class in input.data.columns
	class == "secret"
	some dataset in input.datasets
	dataset.name == "training"
	column in dataset.columns
	not classification_waived("DATA-SECRET-TRAINING")
	msg := sprintf("DATA-SECRET-TRAINING: column '%s' is classified secret and is in the training data (%s)", [column, dataset.source])
}

deny contains msg if {
	some column, class in input.data.columns
	class == "pii"
	column in input.model.inputs
	not column in input.data.pii_inputs
	not classification_waived("DATA-PII-INPUT")
	msg := sprintf("DATA-PII-INPUT: column '%s' is classified pii and is a model input; the policy's data.pii_inputs does not allow it", [column])
}

# The security gate's PII findings know the column: one the model takes as input is named.
warn contains msg if {
	some gate in input.gates
	gate.name == "security"
	some finding in gate.findings
	finding.rule_id == "SEC-PII-001"
	column := finding.evidence.column
	column in input.model.inputs
	msg := sprintf("SEC-PII-001: undeclared personal data in column '%s', a model input", [column])
}
