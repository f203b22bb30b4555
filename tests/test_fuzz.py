"""Fuzzing the raw Ali-CCP parser: mutated valid lines and files give DataError or a result,
never another exception, never a hang, in bounded memory; and the vectorised block parser accepts
exactly the lines the reference parser accepts, with the same values."""

import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_jax.data import aliccp_writer, prepare
from mtl_jax.data.errors import DataError
from mtl_jax.data.readers import aliccp_raw as ar

# Bytes that matter to the grammar, and some that never belong in it.
ALPHABET = b"0123456789abcdefABCDEF_.,-+eE \t\r\n\x00\x01\x02\x03\x04\x7f\xff:nai"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_raw")
    aliccp_writer.write_raw(
        str(d), 60, seed=11, num_test=20, rows_per_group=10.0, groups_per_batch=4
    )
    files = {name: (d / name).read_bytes() for name in os.listdir(d) if name.endswith(".csv")}
    return str(d), files


@pytest.fixture(scope="module")
def lines(raw):
    _, files = raw
    sk = files["sample_skeleton_train.csv"].split(b"\n")[:-1]
    cm = [
        line[:400].rsplit(b"\x01", 1)[0]
        for line in files["common_features_train.csv"].split(b"\n")[:-1]
    ]
    # Shortened common lines need their feature_num fixed to stay valid.
    fixed = []
    for line in cm:
        key, _, flist = line.split(b",", 2)
        fixed.append(b"%s,%d,%s" % (key, flist.count(b"\x01") + 1, flist))
    return {"skeleton": sk[:40], "common": fixed}


mutation = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "truncate", "duplicate"]),
    st.floats(0, 1),
    st.sampled_from(list(ALPHABET)),
    st.integers(1, 30),
)


def mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, byte, n in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if op == "replace" and b:
            b[i] = byte
        elif op == "insert":
            b[i:i] = bytes([byte])
        elif op == "delete":
            del b[i : i + n]
        elif op == "truncate":
            del b[i:]
        elif op == "duplicate":
            b[i:i] = b[i : i + n]
    return bytes(b)


@settings(
    max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["skeleton", "common"]),
    picks=st.lists(st.tuples(st.integers(0, 39), st.lists(mutation, max_size=3)), min_size=1,
                   max_size=6),
)  # fmt: skip
def test_block_parser_agrees_with_the_reference(lines, kind, picks):
    src = lines[kind]
    chosen = [mutate(src[i % len(src)], ops).replace(b"\n", b"") for i, ops in picks]
    blk = ar.parse_block(b"\n".join(chosen) + b"\n", kind)
    assert blk.n == len(chosen)
    for i, line in enumerate(chosen):
        try:
            ref = ar.parse_line(line, kind)
        except ar.LineProblem:
            assert not blk.ok[i], line
            continue
        assert blk.ok[i], (line, ar.explain(line, kind).message)
        m = blk.e_line == i
        got = [
            (int(f), int(x), float(w))
            for f, x, w in zip(blk.e_field[m], blk.e_id[m], blk.e_w[m])
            if f >= 0
        ]
        exp = [
            (ar.FIELD_INDEX[f], x, float(np.float32(v)))
            for f, x, v in ref["entries"]
            if f in ar.FIELD_INDEX
        ]
        assert got == exp
        assert int(blk.key[i]) == ref["key"]
        if kind == "skeleton":
            assert (int(blk.sample_id[i]), int(blk.click[i]), int(blk.conversion[i])) == (
                ref["sample_id"], ref["click"], ref["conversion"],
            )  # fmt: skip


@settings(
    max_examples=30, deadline=20_000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(["sample_skeleton_train.csv", "common_features_train.csv",
                            "sample_skeleton_test.csv"]),
    ops=st.lists(mutation, min_size=1, max_size=4),
    skip_bad=st.booleans(),
)  # fmt: skip
def test_prepare_on_mutated_files_raises_only_data_error(raw, tmp_path_factory, target, ops,
                                                         skip_bad):  # fmt: skip
    _, files = raw
    d = tmp_path_factory.mktemp("mut")
    for name, data in files.items():
        (d / name).write_bytes(mutate(data, ops) if name == target else data)
    opts = prepare.AliccpOptions(
        raw_dir=str(d), out=str(d / "out"), min_count=1, max_bag_len=4, progress=False,
        skip_bad=skip_bad, chunk_bytes=4096,
    )  # fmt: skip
    tracemalloc.start()
    try:
        meta = prepare.prepare_aliccp(opts)
    except DataError as e:
        assert e.file.startswith(str(d)) and e.line >= 1
        assert str(e).startswith(f"{e.file}:{e.line}: ")
    else:
        assert meta["splits"]["test"]["rows"] >= 0
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 64 << 20, peak
