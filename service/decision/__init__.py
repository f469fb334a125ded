"""The run's decision: gate results, waivers and the policy's Rego modules -> deny / warn."""
