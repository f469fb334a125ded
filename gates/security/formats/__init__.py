"""Parsers for model formats that are not pickles, recognised by content, never loaded.

One module per format; each exposes a content sniff and a pure scan returning findings made
from the rule catalogue (``gates/security/rules.py``). Adapters in
``gates/security/scanners.py`` fit them to the ``FormatScanner`` protocol, and the walker
(``gates/security/walker.py``) hands each blob to the first scanner of that ordered registry
whose sniff claims it: content decides, names only break ties. Rule ids, all documented in the
modules and in the catalogue:

- ``safetensors``: SEC-SAFETENSORS-001 header length over the limit, -002 invalid header,
  -003 data offsets that do not tile the data region, -004 bytes after the last tensor.
- ``numpy_files``: SEC-NPY-001 object array (pickle inside, also sent to the pickle
  engine), -002 malformed header or data, -003 bytes after the array.
- ``skops``: SEC-SKOPS-001 untrusted type, -002 dangerous callable, -003 schema that
  cannot be audited, -004 unknown loader.
- ``keras``: SEC-KERAS-001 Lambda layer / serialized lambda, -002 callable outside Keras or
  a Keras API that reaches files/network/loader, -003 custom object, -004 unreadable config.
- ``tensorflow``: SEC-TF-001 Python-executing op, -002 file op, -003 unparseable protobuf.
- ``onnx_format``: SEC-ONNX-001 custom operator domain, -002 external data path leaving the
  model directory, -003 missing/broken external data, -004 unparseable model.

Nothing here imports, unpickles, unmarshals or executes the inspected model: headers and
JSON are parsed as data, protobufs with a hand-written wire walker (TensorFlow) or the
``onnx`` protobuf classes, HDF5 attributes with h5py.
"""
