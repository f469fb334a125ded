"""Signing a passing artifact against `sha256sum` of the same files, in one run.

A 1 GiB model directory (8 files of 128 MiB of random bytes, as a sharded checkpoint) in a
temporary directory. The gatekeeper signs it with model-signing (service/integrity/signing.py:
every file hashed with sha256, an in-toto statement, a DSSE envelope signed with the ECDSA
P-256 key); the peer is coreutils `sha256sum` over the same files, which is the least any
integrity check must do. Files are read once before timing, so both run on a warm page cache;
median of REPEATS interleaved pairs.

Goal (issue 14): signing costs at most 1.2x sha256sum.

    .venv/bin/python -m bench.signing [MIB_PER_FILE] [FILES] [REPEATS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.integrity.keys import generate_key_pair
from service.integrity.signing import SignedClaims, sign_directory


def main(mib: int, files: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        root = Path(tmp)
        model = root / "model"
        model.mkdir()
        for i in range(files):
            with (model / f"shard-{i:02d}.safetensors").open("wb") as handle:
                for _ in range(mib):
                    handle.write(os.urandom(1024**2))
        key = generate_key_pair(root / "keys" / "key.pem")
        paths = sorted(str(p) for p in model.iterdir())
        subprocess.run(["sha256sum", *paths], check=True, capture_output=True)  # warm cache
        sums, signs = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(["sha256sum", *paths], check=True, capture_output=True)
            sums.append(time.perf_counter() - started)
            started = time.perf_counter()
            claims = SignedClaims("bench", 1, "0" * 64, "0" * 64, "run", key.key_id)
            bundle = sign_directory(model, key.private_path, claims)
            signs.append(time.perf_counter() - started)
        assert '"dsseEnvelope"' in bundle
    total = mib * files
    peer, ours = statistics.median(sums), statistics.median(signs)
    print("| directory | sha256sum (s) | gatekeeper signs (s) | ratio |")
    print("|---|---|---|---|")
    print(f"| {files} files, {total} MiB | {peer:.2f} | {ours:.2f} | {ours / peer:.2f}x |")
    print(f"\ngoal: at most 1.2x sha256sum -> {'met' if ours / peer <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [128, 8, 3][len(args) :]))
