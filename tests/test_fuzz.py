"""Fuzzing the loader and the analysis with Hypothesis: whatever the input, archspec either succeeds or
raises its own ArchspecError whose diagnostics point into the file -- never another exception, and never
more than a few seconds per input.

(a) structural mutations of the shipped specs (and of the block libraries they include): delete, rename
    or retype a key; set a number to 0, -1, 10**12, 2.5 or "x"; drop, duplicate or swap nodes; rewire an
    input to another (or a made-up) name;
(b) arbitrary input: random bytes, random text, character-level edits of real specs, and random
    YAML built from the spec vocabulary.

CI runs a few hundred examples in total. For a long run:
    ARCHSPEC_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py
(the number is the total over all the tests here; it also switches from a fixed seed to fresh randomness).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import ArchspecError, SpecError
from archspec.ops import REGISTRY
from archspec.report import table
from conftest import ROOT, SPECS

TOTAL = int(os.environ.get("ARCHSPEC_FUZZ_EXAMPLES", "300"))
EXPLORE = "ARCHSPEC_FUZZ_EXAMPLES" in os.environ  # a long run: fresh randomness instead of a fixed seed
SHARE = {"mutate": 0.4, "edit_text": 0.2, "vocabulary": 0.2, "bytes": 0.1, "text": 0.1}


def fuzz_settings(test: str):
    return settings(
        max_examples=max(1, int(TOTAL * SHARE[test])),
        deadline=5000,  # ms per example
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


SPEC_FILES = sorted(p.name for p in SPECS.glob("*.yaml"))
BLOCKS = ROOT / "archspec" / "blocks"  # shipped block libraries, included as `archspec:<name>`
LIBRARIES = sorted(f"archspec:{p.stem}" for p in BLOCKS.glob("*.yaml"))
NODE_KEYS = sorted(
    {key for cls in REGISTRY.values() for key in cls.model_fields} | {"block", "args", "repeat", "first"}
)
TOP_KEYS = ["name", "input", "metadata", "include", "blocks", "stochastic_depth", "nodes", "outputs", "train_outputs"]
NUMBERS = [0, -1, 1, 2, 3, 10**12, 10**18, 2.5, 1e3, -0.5, "x", "3", True, None, [], {}, [3, 3], [0, 1]]
NUMBERS += ["=3 * 4", "=max(1, 64 // 0)", "=make_divisible(32 * 0.75, 8)", "=1 / 3", "$x * 2", "=(((", "n_$x"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A private copy of specs/ (so includes resolve), where each example writes its spec."""
    root = tmp_path_factory.mktemp("fuzz") / "specs"
    shutil.copytree(SPECS, root)
    shutil.copytree(BLOCKS, root / "mutant_blocks")  # a mutated library keeps its sibling includes
    return root


def check(path: Path) -> None:
    """The property: success, or an ArchspecError whose diagnostics are located in a file."""
    try:
        model = archspec.load(str(path))
        analysis = model.analyze()
        table.render_table(analysis)  # printing the (possibly huge) exact numbers must work too
        table.render_json(analysis)
    except SpecError as exc:
        assert exc.diagnostics, "a SpecError without diagnostics"
        for diagnostic in exc.diagnostics:
            assert diagnostic.location is not None, f"no location: {diagnostic.render()}"
            assert diagnostic.location.line >= 1 and diagnostic.location.col >= 1
        exc.render()
        # For --hypothesis-show-statistics: which kinds of error the inputs reached.
        event(f"error: {_kind(exc.diagnostics[0].message)}")
    except ArchspecError as exc:  # e.g. ResourceError: allowed, but it must render
        exc.render()
        event(f"error: {type(exc).__name__}")
    else:
        event("analyzed")


def _kind(message: str) -> str:
    """A message without its specifics: "node 'x': unknown key 'y'" -> "node: unknown key"."""
    text = re.sub(r"'[^']*'|\d[\d,]*|\[[^\]]*\]|\([^)]*\)", "", message)
    return " ".join(text.replace("node :", "node:").split()[:5])


# ---- (a) structural mutations of the shipped specs ------------------------------------------------------


def _paths(data, where=()):
    """Every (container path, key or index) in a parsed YAML tree."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (where, key)
            yield from _paths(value, (*where, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield (where, i)
            yield from _paths(value, (*where, i))


def _get(data, where):
    for part in where:
        data = data[part]
    return data


def _node_lists(data):
    """Paths of every list of nodes: the top-level one and each block's."""
    found = []
    if isinstance(data.get("nodes"), list):
        found.append(("nodes",))
    blocks = data.get("blocks")
    for name, block in blocks.items() if isinstance(blocks, dict) else ():
        if isinstance(block, dict) and isinstance(block.get("nodes"), list):
            found.append(("blocks", name, "nodes"))
    return found


def _typo(draw, word: str) -> str:
    if not word:
        return "x"
    i = draw(st.integers(0, len(word) - 1))
    kind = draw(st.sampled_from(["drop", "double", "swap", "upper", "random"]))
    if kind == "drop":
        return word[:i] + word[i + 1 :] or "x"
    if kind == "double":
        return word[:i] + word[i] + word[i:]
    if kind == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == "upper":
        return word.upper()
    return draw(st.text(min_size=1, max_size=12))


@st.composite
def mutation(draw, data):
    """Apply one random mutation to `data` in place; return a description."""
    kind = draw(
        st.sampled_from(["delete", "rename", "retype", "number", "drop_node", "dup_node", "swap_nodes", "rewire"])
    )
    places = list(_paths(data))
    if kind in ("delete", "rename", "retype", "number") and places:
        if kind == "number":
            numeric = [p for p in places if isinstance(_get(data, p[0])[p[1]], (int, float))]
            places = numeric or places
        where, key = draw(st.sampled_from(places))
        parent = _get(data, where)
        if kind == "delete":
            del parent[key]
        elif kind == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from([_typo(draw, str(key)), *NODE_KEYS, *TOP_KEYS]))
            parent[new] = parent.pop(key)
        else:
            value = draw(st.sampled_from(NUMBERS) | st.text(max_size=8) | st.integers(-(10**20), 10**20))
            parent[key] = copy.deepcopy(value)  # never share one list between two places (or put it inside itself)
        return f"{kind} {(*where, key)}"
    lists = [w for w in _node_lists(data)]
    if not lists:
        return "nothing to mutate"
    where = draw(st.sampled_from(lists))
    nodes = _get(data, where)
    if not nodes:
        return "empty node list"
    i = draw(st.integers(0, len(nodes) - 1))
    if kind == "drop_node":
        del nodes[i]
    elif kind == "dup_node":
        nodes.insert(draw(st.integers(0, len(nodes))), copy.deepcopy(nodes[i]))
    elif kind == "swap_nodes":
        j = draw(st.integers(0, len(nodes) - 1))
        nodes[i], nodes[j] = nodes[j], nodes[i]
    elif isinstance(nodes[i], dict):
        names = [n.get("name") for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)]
        target = draw(st.sampled_from([*names, "input", "nope"]) | st.text(max_size=6))
        nodes[i]["inputs"] = draw(st.sampled_from([target, [target], [target, *names[:1]], []]))
    return f"{kind} {(*where, i)}"


@fuzz_settings("mutate")
@given(data=st.data(), spec=st.sampled_from(SPEC_FILES + LIBRARIES))
def test_mutated_shipped_specs(workdir, data, spec):
    source = BLOCKS / f"{spec.removeprefix('archspec:')}.yaml" if spec in LIBRARIES else SPECS / spec
    tree = yaml.safe_load(source.read_text())  # trusted shipped file; the mutant goes through archspec's loader
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        data.draw(mutation(tree), label="mutation")
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)
    if spec in LIBRARIES:
        # Mutate the library in a copy of its folder, and load a shipped spec that includes it.
        library = workdir / "mutant_blocks" / source.name
        library.write_text(text)
        users = [s for s in SPEC_FILES if f"[{spec}]" in (SPECS / s).read_text()] or SPEC_FILES[:1]
        user = data.draw(st.sampled_from(users), label="spec using the library")
        target = workdir / f"mutant_{user}"
        target.write_text((SPECS / user).read_text().replace(f"[{spec}]", f"[mutant_blocks/{library.name}]"))
    else:
        target = workdir / f"mutant_{spec}"
        target.write_text(text)
    check(target)


# ---- (b) arbitrary input --------------------------------------------------------------------------------


@fuzz_settings("bytes")
@given(raw=st.binary(max_size=4096))
def test_arbitrary_bytes(workdir, raw):
    path = workdir / "bytes.yaml"
    path.write_bytes(raw)
    check(path)


@fuzz_settings("text")
@given(text=st.text(max_size=2048))
def test_arbitrary_text(workdir, text):
    path = workdir / "text.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(path)


YAML_CHARS = [*":-[]{},#&*!|>'\"%@`?\t\n ", "\n  ", "\n- ", ": ", "$", "0", "1e3", "no", "010", "1:20", "~"]


@fuzz_settings("edit_text")
@given(data=st.data(), spec=st.sampled_from(SPEC_FILES))
def test_character_edits_of_shipped_specs(workdir, data, spec):
    text = (SPECS / spec).read_text()
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        i = data.draw(st.integers(0, len(text)), label="position")
        kind = data.draw(st.sampled_from(["insert", "delete", "replace", "cut"]), label="edit")
        piece = data.draw(st.sampled_from(YAML_CHARS) | st.text(max_size=3), label="piece")
        if kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "delete":
            text = text[:i] + text[i + 1 :]
        elif kind == "replace":
            text = text[:i] + piece + text[i + 1 :]
        else:
            text = text[: i + 1]
    path = workdir / f"edited_{spec}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    check(path)


OPS = sorted(REGISTRY)
scalars = (
    st.integers(-3, 300)
    | st.sampled_from([0, 1, 2, 3, 64, 10**12, 10**18, 2.5, -1.0, True, False, None])
    | st.sampled_from(["input", "a", "b", "c", "$p", "$q", "x", "", *OPS])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NODE_KEYS), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def node(draw, names):
    result = {"name": draw(st.sampled_from(names))}
    if draw(st.booleans()):
        result["op"] = draw(st.sampled_from(OPS))
    else:
        result["block"] = draw(st.sampled_from(["blk", "other"]))
        result["args"] = draw(st.dictionaries(st.sampled_from(["p", "q", "r"]), scalars, max_size=2))
        if draw(st.booleans()):
            result["repeat"] = draw(st.sampled_from([1, 2, 3, 0, 1001, {"count": 2, "name": "u{i}"}]))
    for key in draw(st.lists(st.sampled_from(NODE_KEYS), max_size=4)):
        result[key] = draw(values)
    if draw(st.booleans()):
        result["inputs"] = draw(st.lists(st.sampled_from([*names, "input", "zz"]), max_size=3))
    return result


@st.composite
def vocabulary_spec(draw):
    names = ["a", "b", "c", "d", "e"]
    spec = {
        "name": "fuzz",
        "input": draw(st.sampled_from([[3, 32, 32], [1, 1, 1], [3, 7, 5], [3, 0, 4], [3, 32], [3, 10**18, 10**18]])),
        "metadata": {"source": "fuzz"},
    }
    if draw(st.booleans()):
        spec["blocks"] = {
            "blk": {
                "params": draw(st.dictionaries(st.sampled_from(["p", "q"]), scalars, max_size=2)),
                "nodes": draw(st.lists(node(names), min_size=1, max_size=4)),
            }
        }
    spec["nodes"] = draw(st.lists(node(names), min_size=1, max_size=6))
    if draw(st.booleans()):
        spec["outputs"] = draw(st.lists(st.sampled_from([*names, "input", "zz"]), max_size=2))
    for key in draw(st.lists(st.sampled_from(TOP_KEYS), max_size=2)):
        spec[key] = draw(values)
    return spec


@fuzz_settings("vocabulary")
@given(spec=vocabulary_spec())
def test_random_specs_from_the_vocabulary(workdir, spec):
    path = workdir / "vocabulary.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    check(path)
