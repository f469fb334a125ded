"""Signatures: the gatekeeper's key, and OpenSSF model-signing bundles of passing artifacts."""
