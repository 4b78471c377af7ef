"""Checks of an ONNX graph before ``onnxruntime`` sees it: size, operators, data and inputs.

An ONNX file cannot run Python, but it is still untrusted input to a native runtime. Before a
session is created, :func:`check` refuses a graph unless

* the file is at most :data:`MAX_BYTES` (``NUBES_ONNX_MAX_BYTES``) and has at most
  :data:`MAX_NODES` nodes;
* every operator is in the standard ONNX domain and on :data:`ALLOWED_OPS` -- the arithmetic,
  activation, shape and recurrent (``LSTM``, ``GRU``, ``RNN``) operators that PyTorch and Keras
  exports of sequence models use; no custom domains (custom-op libraries), no control flow
  (``Loop``, ``If``, ``Scan``), no random or string operators;
* every tensor is stored inside the file (no *external data*: a path the runtime would open);
* it has exactly one float input of rank 3 ``(batch, time, features)`` whose feature width
  matches the model's declared features, and at least one output.

``onnx`` (the reference parser) reads the file; nothing of it runs while it is checked.
"""

from __future__ import annotations

from typing import Any

MAX_BYTES_ENV = "NUBES_ONNX_MAX_BYTES"
MAX_BYTES = 64 << 20
MAX_NODES = 20_000

ALLOWED_OPS = frozenset({
    # recurrent layers
    "LSTM", "GRU", "RNN",
    # linear algebra and arithmetic
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Pow", "Exp", "Log", "Reciprocal",
    "Max", "Min", "Sum", "Mean", "Clip", "Floor", "Ceil", "Round", "Sign", "Erf",
    # activations
    "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Softmax", "LogSoftmax", "PRelu", "ThresholdedRelu", "Mish",
    # normalisation, pooling and 1-D convolutions
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "Dropout", "Conv", "MaxPool",
    "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad",
    # reductions and comparisons
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2", "ArgMax", "ArgMin",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Not", "And", "Or", "Where", "IsNaN",
    # shapes and constants
    "Shape", "Size", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
    "Gather", "GatherElements", "Expand", "Tile", "Constant", "ConstantOfShape", "Identity", "Cast", "CastLike",
    "Range",
})
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


class BadGraph(ValueError):
    """The ONNX file was refused (``str`` says why)."""


def max_bytes() -> int:
    from nubes.ml.serialization import env_limit

    return env_limit(MAX_BYTES_ENV, MAX_BYTES)


def check(data: bytes, *, features: int | None = None) -> dict[str, Any]:
    """Parse and check an ONNX file; returns ``{"input", "outputs", "ops", "opset"}`` or raises :class:`BadGraph`."""
    limit = max_bytes()
    if len(data) > limit:
        raise BadGraph(f"the ONNX file is {len(data):,} bytes (limit {limit:,}; raise it with {MAX_BYTES_ENV})")
    try:
        import onnx
    except ImportError as exc:
        from nubes.errors import BackendMissing

        raise BackendMissing("serving ONNX models needs onnx and onnxruntime: pip install 'nubes[onnx]'") from exc
    try:
        model = onnx.load_from_string(bytes(data))
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadGraph(f"not an ONNX model ({type(exc).__name__})") from None
    graph = model.graph
    domains = {o.domain for o in model.opset_import}
    if not domains <= {"", "ai.onnx"}:
        raise BadGraph(f"operator sets outside standard ONNX: {', '.join(sorted(d for d in domains if d not in ('', 'ai.onnx')))}")
    if len(model.functions):
        raise BadGraph("the model defines its own functions")
    ops: set[str] = set()
    count = 0
    stack = [graph]
    while stack:
        g = stack.pop()
        for tensor in list(g.initializer) + list(g.sparse_initializer):
            _check_tensor(getattr(tensor, "values", tensor))
        for n in g.node:
            count += 1
            if count > MAX_NODES:
                raise BadGraph(f"more than {MAX_NODES:,} nodes")
            if n.domain not in ("", "ai.onnx"):
                raise BadGraph(f"operator {n.domain}.{n.op_type} is from a custom domain")
            if n.op_type not in ALLOWED_OPS:
                raise BadGraph(f"operator {n.op_type} is not on nubes' allow-list for sequence models")
            ops.add(n.op_type)
            for attr in n.attribute:
                if attr.HasField("t"):
                    _check_tensor(attr.t)
                stack.extend([attr.g] if attr.HasField("g") else [])
                stack.extend(attr.graphs)
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) != 1:
        raise BadGraph(f"the model takes {len(inputs)} inputs; a sequence model takes one (batch, time, features) tensor")
    tensor_type = inputs[0].type.tensor_type
    dims = tensor_type.shape.dim
    if tensor_type.elem_type not in _FLOAT_TYPES or len(dims) != 3:
        raise BadGraph("the model's input is not a float tensor of shape (batch, time, features)")
    width = dims[2].dim_value if dims[2].HasField("dim_value") else None
    if features is not None and width is not None and width != features:
        raise BadGraph(f"the model takes {width} features per step, but {features} were declared")
    if not len(graph.output):
        raise BadGraph("the model has no output")
    steps = dims[1].dim_value if dims[1].HasField("dim_value") else None
    return {"input": inputs[0].name, "outputs": [o.name for o in graph.output], "ops": sorted(ops),
            "opset": max((o.version for o in model.opset_import), default=0), "steps": steps, "width": width}


def _check_tensor(tensor: Any) -> None:
    if tensor.data_location == 1 or len(tensor.external_data):  # TensorProto.EXTERNAL
        raise BadGraph(f"tensor {tensor.name!r} is stored outside the file (external data is refused)")


__all__ = ["ALLOWED_OPS", "MAX_BYTES", "MAX_BYTES_ENV", "BadGraph", "check"]
