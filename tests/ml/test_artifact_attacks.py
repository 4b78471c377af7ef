"""Crafted skops artifacts: a store writer edits a model file, recomputes its digest, and tries to make
loading create files, bind sockets, import modules or call functions. Nothing may happen, and the
predict route must answer a problem. Each payload is shown to be real first: skops, told to trust
what the file names (what the old prefix policy amounted to), does run it."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import socket
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import nubes
from nubes.ml import UnsafeModel, serialization, train
from nubes.ml.allowlist import audit, builtin_names, skops_io
from nubes.testing import Client

sio = skops_io()  # skops.io, without letting scikit-learn's estimator walk import torch


# -- crafting ----------------------------------------------------------------------------------
def json_node(value: Any) -> dict[str, Any]:
    return {"__class__": type(value).__name__, "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def tuple_node(*items: dict[str, Any]) -> dict[str, Any]:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def node(loader: str, module: str, cls: str, **fields: Any) -> dict[str, Any]:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **fields}


def schema_of(data: bytes) -> dict[str, Any]:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))


def rezip(data: bytes, schema: dict[str, Any]) -> bytes:
    """The artifact ``data`` with its schema replaced (every array file kept)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, json.dumps(schema) if info.filename == "schema.json" else src.read(info))
    return out.getvalue()


def with_payload(data: bytes, payload: dict[str, Any]) -> bytes:
    """``data`` with ``payload`` added as an attribute of the root estimator: built when the model is."""
    schema = schema_of(data)
    schema["content"]["content"]["evil"] = payload  # the root's attribute dict, and the type of its new key
    schema["content"]["key_types"]["content"].append({"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    return rezip(data, schema)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def socket_fds() -> int:
    """How many sockets this process holds open (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # the directory listing's own descriptor
    return count


@pytest.fixture(scope="module")
def wine(wine_labels: pl.DataFrame) -> pl.DataFrame:
    return wine_labels


@pytest.fixture(scope="module")
def artifact(wine: pl.DataFrame) -> bytes:
    model = train(LogisticRegression(max_iter=500), wine, target="cultivar", cv=2).model
    return serialization.dumps(model)


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on sys.path whose import creates a marker file: any node naming it would import it."""
    marker = tmp_path / "module-imported"
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "nubes_evil_payload.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\ndef run(*a):\n    return 0\n")
    monkeypatch.syspath_prepend(str(folder))
    yield "nubes_evil_payload", marker
    sys.modules.pop("nubes_evil_payload", None)


def payloads(tmp: Path, port: int, module: str) -> dict[str, dict[str, Any]]:
    """name -> node; each would create something under ``tmp``, bind ``port``, or import ``module``."""
    memmap_args = tuple_node(json_node(str(tmp / "memmap-created")), json_node("uint8"), json_node("w+"),
                             json_node(0), tuple_node(json_node(16)))
    return {
        "numpy.memmap(path, mode='w+')": node("ConstructorFromReduceNode", "numpy", "memmap", content=memmap_args),
        "multiprocessing Listener via sklearn.callback._transport": node(
            "ConstructorFromReduceNode", "sklearn.callback._transport", "Listener",
            content=tuple_node(tuple_node(json_node("127.0.0.1"), json_node(port)))),
        "Listener() as a dict class (binds an ephemeral port)": node(
            "DictNode", "sklearn.callback._transport", "Listener", content={},
            key_types={"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}),
        "tempfile.TemporaryDirectory via sklearn.datasets._openml": node(
            "ConstructorFromReduceNode", "sklearn.datasets._openml", "TemporaryDirectory",
            content=tuple_node(json_node("-x"), json_node("made-"), json_node(str(tmp)))),
        "numpy.memmap as a loss constructor": node(
            "LossNode", "numpy", "memmap", __reduce__={"args": memmap_args},
            content={"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
                     "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}}),
        "a module imported by a type node": node("TypeNode", module, "Thing"),
        "a module imported by a function node": node("FunctionNode", module, "run"),
        "a module imported as an object's class": node("ObjectNode", module, "Thing"),
        "os.system as a function": node("FunctionNode", "os", "system"),
        "numpy.save reached under numpy": node("FunctionNode", "numpy", "save"),
        "numpy.memmap as an array class": node("NdArrayNode", "numpy", "memmap", type="json", content=[],
                                               shape=json_node([0])),
        "a named tuple class": node("TupleNode", "sklearn.utils._testing", "TempMemmap", content=[]),
        "operator.methodcaller": node("OperatorFuncNode", "operator", "methodcaller",
                                      attrs=tuple_node(json_node("system"))),
        "a bound method": node("MethodNode", "sklearn.linear_model._logistic", "LogisticRegression",
                               content={"func": "fit", "obj": node("ObjectNode", "sklearn.linear_model._logistic",
                                                                   "LogisticRegression")}),
        "an unknown loader": node("QuantileForestNode", "sklearn.tree._tree", "Tree"),
    }


def test_crafted_payloads_are_real(artifact: bytes, tmp_path: Path) -> None:
    """Control: skops trusting what the file names (the old prefix policy) creates the file and binds the port."""
    port = free_port()
    crafted = payloads(tmp_path, port, "json")
    model = sio.loads(with_payload(artifact, crafted["numpy.memmap(path, mode='w+')"]),
                      trusted=sio.get_untrusted_types(data=with_payload(artifact, crafted["numpy.memmap(path, mode='w+')"])))
    assert (tmp_path / "memmap-created").exists()
    del model
    data = with_payload(artifact, crafted["multiprocessing Listener via sklearn.callback._transport"])
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert listening(port)
    model.evil.close()
    data = with_payload(artifact, crafted["tempfile.TemporaryDirectory via sklearn.datasets._openml"])
    model = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert any(p.name.startswith("made-") for p in tmp_path.iterdir())
    model.evil.cleanup()


@pytest.mark.parametrize("which", list(payloads(Path("/x"), 1, "m")))
def test_every_crafted_artifact_is_refused_before_anything_is_built(
        which: str, artifact: bytes, tmp_path: Path, marker_module: tuple[str, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    module, marker = marker_module
    port = free_port()
    sockets = socket_fds()
    data = with_payload(artifact, payloads(tmp_path, port, module)[which])
    with pytest.raises(UnsafeModel) as info:
        serialization.loads(data, what="crafted")
    assert info.value.reason == "untrusted-types", str(info.value)
    assert info.value.types and "nothing from it was imported or built" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mods"]  # no memmap file, no temporary directory
    assert not marker.exists() and module not in sys.modules
    assert not listening(port) and socket_fds() == sockets


def test_the_predict_route_answers_a_problem_and_nothing_runs(wine: pl.DataFrame, tmp_path: Path,
                                                              marker_module: tuple[str, Path]) -> None:
    module, marker = marker_module
    app = nubes.App("attacked", storage=f"file://{tmp_path}/home")
    client = Client(app)
    forest = train(RandomForestClassifier(n_estimators=5), wine, target="cultivar", cv=2).model
    rows = wine.drop("cultivar").head(2).to_dicts()
    port = free_port()
    for i, (which, payload) in enumerate(payloads(tmp_path / "home", port, module).items()):
        mv = app.models.register(f"victim{i}", forest)
        assert client.post(f"/_nubes/models/victim{i}/predict", json=rows).status_code == 200
        # the store writer: replace the artifact and recompute the digest in the version record
        crafted = with_payload(app.storage.get(mv.artifact["key"]), payload)
        app.storage.put(mv.artifact["key"], crafted)
        key = f"models/victim{i}/versions/{mv.version:06d}.json"
        meta = json.loads(app.storage.get(key))
        meta["artifact"]["sha256"] = hashlib.sha256(crafted).hexdigest()
        meta["artifact"]["size"] = len(crafted)  # and the size the registry checks before fetching
        app.storage.put(key, json.dumps(meta).encode())
        cold = nubes.App("attacked", storage=f"file://{tmp_path}/home")  # a new instance: nothing cached
        r = Client(cold).post(f"/_nubes/models/victim{i}/predict", json=rows)
        assert r.status_code == 500, (which, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["reason"] == "untrusted-types", which
    home = {p.name for p in (tmp_path / "home").iterdir()}
    assert home <= {"models", ".nubes-internal", "_nubes"}, home  # no memmap file, no temporary directory
    assert not marker.exists() and not listening(port)


def test_refusals_are_logged(artifact: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = with_payload(artifact, payloads(tmp_path, 1, "m")["os.system as a function"])
    with pytest.raises(UnsafeModel):
        serialization.loads(data, what="model 'x' version 3")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    refusal = [e for e in lines if e.get("msg") == "model artifact refused"]
    assert refusal and refusal[0]["types"] == ["os.system"] and refusal[0]["artifact"] == "model 'x' version 3"
    assert refusal[0]["level"] == "warning" and refusal[0]["reason"] == "untrusted-types"


def test_allow_list_is_exact(artifact: bytes) -> None:
    for name in ("numpy.memmap", "numpy.load", "numpy.save", "numpy.savetxt", "builtins.eval", "subprocess.Popen",
                 "sklearn.callback._transport.Listener", "sklearn.datasets._openml.TemporaryDirectory",
                 "sklearn.datasets._base.NamedTemporaryFile", "numpy.testing.assert_equal", "os.system",
                 "sklearn.neighbors._kd_tree.KDTree", "sklearn.utils._testing.TempMemmap"):
        assert not serialization.is_trusted(name), name
    for name in ("sklearn.linear_model._logistic.LogisticRegression", "numpy.dtype", "numpy.log1p", "numpy.ndarray",
                 "sklearn.feature_selection._univariate_selection.f_classif", "nubes.ml.train.FrameInput",
                 "sklearn.tree._tree.Tree", "sklearn.ensemble._forest.RandomForestClassifier"):
        assert serialization.is_trusted(name), name
    table = builtin_names()
    assert "ConstructorFromReduceNode" not in table and "MethodNode" not in table and "OperatorFuncNode" not in table
    assert not audit(schema_of(artifact))


def test_trust_is_exact_and_explicit(artifact: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = with_payload(artifact, node("FunctionNode", "numpy", "sort"))
    with pytest.raises(UnsafeModel):
        serialization.loads(data)
    assert serialization.loads(data, extra=["numpy.sort"]).evil is np.sort
    assert serialization.loads(data, extra=[np.sort]).evil is np.sort
    monkeypatch.setenv("NUBES_MODEL_TRUST", "numpy.sort")
    assert serialization.loads(data).evil is np.sort
    from nubes.errors import ConfigError

    monkeypatch.setenv("NUBES_MODEL_TRUST", "numpy.*")
    with pytest.raises(ConfigError, match="patterns are not accepted"):
        serialization.loads(data)
    with pytest.raises(ConfigError, match="patterns"):
        nubes.ml.trust("xgboost.*")


def test_zip_limits_and_malformed_nodes(artifact: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUBES_MODEL_MAX_BYTES", "1000")
    with pytest.raises(UnsafeModel) as info:
        serialization.loads(artifact)
    assert info.value.reason == "too-large" and "NUBES_MODEL_MAX_BYTES" in str(info.value)
    monkeypatch.delenv("NUBES_MODEL_MAX_BYTES")
    schema = schema_of(artifact)
    schema["content"]["content"]["evil"] = {"__loader__": "ObjectNode", "__module__": 3, "__class__": None}
    with pytest.raises(UnsafeModel, match="malformed"):
        serialization.loads(rezip(artifact, schema))
    deep: Any = json_node(1)
    for _ in range(300):  # 600 JSON levels: deeper than the audit's limit of 400
        deep = tuple_node(deep)
    schema = schema_of(artifact)
    schema["content"]["content"]["evil"] = deep
    with pytest.raises(UnsafeModel, match="nests deeper"):
        serialization.loads(rezip(artifact, schema))


def test_tree_arrays_are_bounds_checked(wine: pl.DataFrame) -> None:
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(wine.drop("cultivar").to_numpy(), wine["cultivar"])
    data = serialization.dumps(forest)
    assert serialization.loads(data).predict(wine.drop("cultivar").to_numpy()[:3]).tolist() == forest.predict(
        wine.drop("cultivar").to_numpy()[:3]).tolist()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    schema = json.loads(files["schema.json"])
    tree_nodes = _find(schema, "TreeNode")
    nodes_file = tree_nodes[0]["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(files[nodes_file]), allow_pickle=False)
    for field, value in (("left_child", 0), ("left_child", 10**8), ("feature", 10**6)):
        bad = nodes.copy()
        internal = np.flatnonzero(bad["left_child"] != -1)
        bad[field][internal[-1]] = value  # a loop back to the root, past the end, a feature past the input
        buf = io.BytesIO()
        np.save(buf, bad, allow_pickle=False)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name, content in files.items():
                z.writestr(name, buf.getvalue() if name == nodes_file else content)
        with pytest.raises(UnsafeModel) as info:
            serialization.loads(out.getvalue())
        assert info.value.reason == "bad-structure", field


def _find(value: Any, loader: str) -> list[dict[str, Any]]:
    found = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if v.get("__loader__") == loader:
                found.append(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


# -- fuzzing the schema walker ------------------------------------------------------------------
LOADERS = ["ObjectNode", "FunctionNode", "TypeNode", "ConstructorFromReduceNode", "DictNode", "ListNode", "TupleNode",
           "NdArrayNode", "LossNode", "TreeNode", "MethodNode", "JsonNode", "CachedNode", "OperatorFuncNode", "Nope"]
NAMES = [("numpy", "memmap"), ("numpy", "ndarray"), ("builtins", "dict"), ("builtins", "list"), ("os", "system"),
         ("sklearn.callback._transport", "Listener"), ("sklearn.linear_model._logistic", "LogisticRegression"),
         ("numpy", "log1p"), ("builtins", "tuple"), ("sklearn.tree._tree", "Tree"), ("nubes_evil_payload", "Thing"),
         ("builtins", "str"), ("collections", "OrderedDict"), ("", ""), ("numpy", "float64")]

nodes_strategy = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=5),
              st.builds(lambda ln, nm: {"__loader__": ln, "__module__": nm[0], "__class__": nm[1], "content": "1"},
                        st.sampled_from(LOADERS), st.sampled_from(NAMES))),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.builds(lambda ln, nm, kids: {"__loader__": ln, "__module__": nm[0], "__class__": nm[1], "content": kids},
                  st.sampled_from(LOADERS), st.sampled_from(NAMES), st.dictionaries(st.text(max_size=4), children, max_size=3)),
        st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=20)


def _all_nodes(value: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(value, dict):
        if "__loader__" in value:
            out.append(value)
        for v in value.values():
            out += _all_nodes(v)
    elif isinstance(value, list):
        for v in value:
            out += _all_nodes(v)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_strategy)
def test_fuzz_audit_passes_only_allowed_pairs(schema: Any) -> None:
    refused = audit(schema)
    table = builtin_names()
    for n in _all_nodes(schema):
        loader, name = n["__loader__"], f"{n['__module__']}.{n['__class__']}"
        if loader == "JsonNode":
            ok = isinstance(n.get("content"), str)
        elif loader == "CachedNode":
            ok = any(name in names for names in table.values())
        else:
            ok = loader in table and name in table[loader]
        if not ok:
            assert any(r[1] == name and r[0] == loader for r in refused), (loader, name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_artifacts_load_or_are_refused(artifact: bytes, marker_module: tuple[str, Path], data: st.DataObject) -> None:
    module, marker = marker_module
    schema = schema_of(artifact)
    nodes = _all_nodes(schema)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(nodes))
        loader = data.draw(st.sampled_from(LOADERS))
        mod, cls = data.draw(st.sampled_from(NAMES))
        target.update({"__loader__": loader, "__module__": mod, "__class__": cls})
    with contextlib.suppress(UnsafeModel):
        serialization.loads(rezip(artifact, copy.deepcopy(schema)))
    assert not marker.exists() and module not in sys.modules
