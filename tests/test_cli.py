"""The command line as a user drives it: analyze formats, run, report, schema, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import archspec
from archspec.cli import main
from conftest import SPECS

ALEXNET = str(SPECS / "alexnet.yaml")


def run_cli(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_table_shows_seed_figures(capsys):
    code, out, _ = run_cli(capsys, "analyze", ALEXNET)
    assert code == 0
    # The seed notes: conv1 55 x 55 x 96 with (11*11*3)*96 + 96 = 34,944 params; pool1 27 x 27 x 96.
    # Kernel column: conv1 11x11 stride 4 no padding, pool1 3x3 stride 2 (Krizhevsky et al. 2012).
    assert re.search(r"conv1\s+conv2d\s+11x11 /4 p0\s+96 x 55 x 55\s+34,944", out)
    assert re.search(r"pool1\s+max_pool2d\s+3x3 /2 p0\s+96 x 27 x 27\s+0", out)
    assert (
        "60,965,224" in out
    )  # Caffe bvlc_alexnet as taught in CS231n (Krizhevsky et al. 2012, groups 2, 227 input): total with biases


def test_analyze_json_contract(capsys):
    code, out, _ = run_cli(capsys, "analyze", ALEXNET, "--format", "json", "--batch", "8", "--dtype", "float16")
    assert code == 0
    data = json.loads(out)
    assert {"name", "input_shape", "batch", "dtype", "layers", "totals"} <= set(data)
    assert data["input_shape"] == [3, 227, 227] and data["batch"] == 8 and data["dtype"] == "float16"
    layer = data["layers"][0]
    assert {"name", "op", "inputs", "output_shape", "params", "macs", "activations", "receptive_field"} <= set(layer)
    assert layer["inputs"] == ["input"] and layer["output_shape"] == [96, 55, 55]
    # conv1: (11*11*3)*96 = 34,848 weights + 96 biases (the seed notes' "(11x11x3) x 96").
    assert layer["param_tensors"] == {"weight": 34_848, "bias": 96}
    # conv1: 11x11 kernel, stride 4, no padding.
    assert layer["receptive_field"]["size"] == [11, 11] and layer["receptive_field"]["stride"] == [4, 4]
    assert data["layers"][-1]["receptive_field"] is None  # softmax after fc: global
    totals = data["totals"]
    assert {"params", "macs", "activations", "param_bytes", "activation_bytes"} <= set(totals)
    # float16: 2 bytes per value; activation bytes scale with the batch.
    assert totals["param_bytes"] == 2 * totals["params"]
    assert totals["activation_bytes"] == 8 * 2 * totals["activations"]
    # Rows add up to the totals.
    assert sum(layer["params"] for layer in data["layers"]) == totals["params"]
    assert sum(layer["macs"] for layer in data["layers"]) == totals["macs"]


def test_analyze_with_other_input_size(capsys):
    # VGG-style conv at 3,64,64 -> the spec's linear layers follow the new size (no in_features given).
    code, out, _ = run_cli(capsys, "analyze", ALEXNET, "--input", "3,227,227", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("name,op,output_shape")


@pytest.mark.parametrize("bad", ["3,224", "a,b,c", "3,0,224", "-1,2,3"])
def test_bad_input_shape_is_a_usage_error(capsys, bad):
    code, _, err = run_cli(capsys, "analyze", ALEXNET, "--input", bad)
    assert code == 2 and ("--input" in err or "argument" in err) and "Traceback" not in err


def run_saved(capsys, tmp_path, spec=ALEXNET):
    """`archspec run` on the w.npz and x.npy saved in tmp_path, writing y.npy there."""
    files = {name: str(tmp_path / f"{name}.np{'z' if name == 'w' else 'y'}") for name in ("w", "x", "y")}
    code, _, err = run_cli(capsys, "run", spec, "--weights", files["w"], "--input", files["x"], "--out", files["y"])
    return code, err


def test_run_matches_python_forward(tmp_path, capsys):
    model = archspec.load(ALEXNET)
    weights = model.init_weights(seed=3)
    np.savez(tmp_path / "w.npz", **weights)
    x = np.random.default_rng(4).normal(size=(2, 3, 227, 227)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _ = run_saved(capsys, tmp_path)
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.forward(x, weights))


def test_run_reports_missing_extra_and_misshaped_tensors(tmp_path, capsys):
    model = archspec.load(ALEXNET)
    weights = model.init_weights(seed=0)
    del weights["conv1.bias"]
    weights["conv2.weight"] = weights["conv2.weight"][:, :10]
    weights["conv9.weight"] = np.zeros(3, np.float32)
    np.savez(tmp_path / "w.npz", **weights)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 227, 227), np.float32))
    code, err = run_saved(capsys, tmp_path)
    assert code == 2
    assert "missing tensor 'conv1.bias'" in err
    assert "tensor 'conv2.weight' has shape [256, 10, 5, 5], expected [256, 48, 5, 5]" in err
    assert "unexpected tensor 'conv9.weight'" in err
    assert not (tmp_path / "y.npy").exists()


def test_verify_passes_on_alexnet(capsys):
    code, out, _ = run_cli(capsys, "verify", ALEXNET)
    assert code == 0 and "PASS" in out


def test_schema_is_valid_json_and_names_every_op(tmp_path, capsys):
    code, _, _ = run_cli(capsys, "schema", "--out", str(tmp_path / "s.json"))
    assert code == 0
    text = (tmp_path / "s.json").read_text()
    for op in ("conv2d", "max_pool2d", "batch_norm", "concat", "stochastic_depth"):
        assert f'"{op}"' in text


def test_shipped_schema_is_current():
    from archspec.spec.jsonschema import spec_json_schema

    shipped = json.loads((SPECS / "archspec.schema.json").read_text())
    assert shipped == spec_json_schema(), "run: archspec schema --out specs/archspec.schema.json"


# ---- bad specs: exit 2 and a file:line:col message naming the problem ---------------------------

BASE = """name: t
input: [3, 32, 32]
metadata: {source: test}
nodes:
"""


@pytest.mark.parametrize(
    ("nodes", "line", "message"),
    [
        ("  - {name: c, op: conv2d, out_channels: 4, kernal: 3}\n", 5, "unknown key 'kernal'"),
        ("  - {name: c, op: conv3d, out_channels: 4, kernel: 3}\n", 5, "unknown op 'conv3d'"),
        (
            "  - {name: c, op: conv2d, out_channels: 4, kernel: 3, inputs: [inptu]}\n",
            5,
            "'inptu', which is not defined",
        ),
        ("  - {name: c, op: conv2d, out_channels: 4, kernel: 2.5}\n", 5, "invalid value 2.5 for 'kernel'"),
        ("  - name: c\n    op: conv2d\n    out_channels: 4\n    kernel: 2.5\n", 8, "should be a valid integer"),
        ("  - {name: c, op: conv2d, out_channels: 4, kernel: 40}\n", 5, "kernel 40 is larger than the padded input 32"),
    ],
)
def test_bad_spec_gives_location_and_exit_2(write_spec, capsys, nodes, line, message):
    path = write_spec(BASE + nodes)
    code, _, err = run_cli(capsys, "analyze", path)
    assert code == 2
    assert err.startswith(f"{path}:{line}:")
    assert message in err
    assert "Traceback" not in err


def test_did_you_mean_for_ops(write_spec, capsys):
    path = write_spec(BASE + "  - {name: c, op: conv2D, out_channels: 4, kernel: 3}\n")
    _, _, err = run_cli(capsys, "analyze", path)
    assert "did you mean 'conv2d'?" in err


def test_compare_lists_models_cheapest_first(capsys):
    vgg16 = str(SPECS / "vgg16.yaml")
    code, out, _ = run_cli(capsys, "compare", vgg16, ALEXNET, "--format", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("model,input_c,input_h,input_w,batch,dtype,params,macs")
    # AlexNet (724,406,816 MACs by hand from the seed table) before VGG16 (15.47 GMACs, torchvision).
    assert lines[1].startswith("alexnet,3,227,227,1,float32,60965224,") and lines[2].startswith("vgg16,3,224,224,")
    code, out, _ = run_cli(capsys, "compare", ALEXNET, "--format", "json")
    assert json.loads(out)[0]["params"] == 60_965_224


def test_compare_formats_agree(capsys):
    """JSON has everything the table has (input, receptive field, top-1), in the same order; CSV is raw integers."""
    specs = [str(SPECS / "vgg16.yaml"), ALEXNET]
    _, table_out, _ = run_cli(capsys, "compare", *specs)
    _, json_out, _ = run_cli(capsys, "compare", *specs, "--format", "json")
    _, csv_out, _ = run_cli(capsys, "compare", *specs, "--format", "csv")
    records = json.loads(json_out)
    table_names = [line.split()[0] for line in table_out.splitlines()[2:]]
    assert [r["name"] for r in records] == table_names == ["alexnet", "vgg16"]
    alex = records[0]
    assert alex["input_shape"] == [3, 227, 227]
    # pool5: 195 pixels, stride 32, padding 64 (Araujo et al. 2019); top-1 59.3 is the spec's cited figure.
    assert alex["receptive_field"]["size"] == [195, 195] and alex["receptive_field"]["stride"] == [32, 32]
    assert alex["receptive_field"]["padding"] == [64, 64] and alex["receptive_field"]["layer"] == "pool5"
    assert alex["top1"] == 59.3 and "59.3" in table_out
    row = csv_out.splitlines()[1].split(",")
    assert all(cell.lstrip("-").replace(".", "", 1).isdigit() for cell in row[1:5] + row[6:10] + row[11:])


def test_compare_takes_input_batch_dtype(capsys):
    _, out, _ = run_cli(
        capsys,
        "compare",
        str(SPECS / "vgg16.yaml"),
        "--input",
        "3,32,32",
        "--batch",
        "4",
        "--dtype",
        "float16",
        "--format",
        "json",
    )
    record = json.loads(out)[0]
    assert record["input_shape"] == [3, 32, 32] and record["batch"] == 4 and record["dtype"] == "float16"


def test_analyze_csv_has_totals_and_numeric_receptive_field(capsys):
    _, out, _ = run_cli(capsys, "analyze", ALEXNET, "--format", "csv")
    lines = out.splitlines()
    header = lines[0].split(",")
    conv1 = dict(zip(header, lines[1].split(","), strict=True))
    # conv1: 11x11 kernel, stride 4, no padding -> field 11, stride 4, padding 0.
    assert (conv1["rf_size_h"], conv1["rf_stride_w"], conv1["rf_padding_h"]) == ("11", "4", "0")
    assert conv1["kernel"] == "11x11 /4 p0" and conv1["train_only"] == "0"
    total = dict(zip(header, lines[-1].split(","), strict=True))
    assert total["name"] == "TOTAL" and total["params"] == "60965224"  # Caffe's bvlc_alexnet (CS231n's AlexNet)


def test_json_with_depth_is_an_error(capsys):
    code, _, err = run_cli(capsys, "analyze", ALEXNET, "--format", "json", "--depth", "1")
    assert code == 2 and "--depth" in err and "Traceback" not in err


def test_training_only_is_its_own_column(capsys):
    _, out, _ = run_cli(capsys, "analyze", str(SPECS / "googlenet.yaml"), "--depth", "1")
    aux = next(line for line in out.splitlines() if line.startswith("aux1"))
    assert aux.split()[1] == "block(9" and aux.rstrip().endswith("yes") and "[train]" not in out


def test_batch_says_what_is_per_image(capsys):
    _, out, _ = run_cli(capsys, "analyze", ALEXNET, "--batch", "8")
    assert "per image" in out.splitlines()[1] and "batch of 8" in out.splitlines()[1]


def test_markdown_totals_are_a_right_aligned_table(capsys):
    _, out, _ = run_cli(capsys, "analyze", ALEXNET, "--format", "markdown")
    table, totals = out.split("\n\n")[1:3]
    assert table.splitlines()[1].count("--:|") == 4  # output, params, MACs, activations right-aligned
    assert totals.splitlines()[0].startswith("| total") and totals.splitlines()[1].count("--:|") == 1
    assert re.search(r"\|\s+60,965,224 \| ", totals)  # the total params (Caffe bvlc_alexnet) in its own cell


def test_columns_choose_what_is_shown(capsys):
    _, out, _ = run_cli(capsys, "analyze", str(SPECS / "resnet18.yaml"), "--columns", "layer,inputs,kernel")
    header = out.splitlines()[2].split()
    assert header == ["layer", "inputs", "kernel"]
    add = next(line for line in out.splitlines() if line.startswith("layer1.0.add"))
    assert "layer1.0.bn2" in add and "maxpool" in add  # the residual add's two inputs
    code, _, err = run_cli(capsys, "analyze", ALEXNET, "--columns", "layer,bogus")
    assert code == 2 and "bogus" in err


def _small_net(tmp_path):
    """A conv + linear net (the linear layer fixes the input size) and its weights, saved as w.npz."""
    spec = tmp_path / "net.yaml"
    spec.write_text(
        "name: net\ninput: [3, 8, 8]\nmetadata: {source: test}\nnodes:\n"
        "  - {name: conv, op: conv2d, out_channels: 4, kernel: 3}\n"
        "  - {name: flat, op: flatten}\n"
        "  - {name: fc, op: linear, out_features: 2}\n"
    )
    np.savez(tmp_path / "w.npz", **archspec.load(str(spec)).init_weights(seed=1))
    return str(spec)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 3, 8, 8), np.float32), "x.npy: error: input has batch size 0 (shape [0, 3, 8, 8])"),
        (np.zeros((1, 3, 8, 8), np.complex64), "x.npy: error: input is complex (complex64)"),
        (np.zeros((1, 3, 8, 8), np.str_), "x.npy: error: input must be a real numeric array, got dtype <U1"),
        (np.zeros((1, 1, 8, 8), np.float32), "x.npy: error: the input's images are 1 x 8 x 8 (C x H x W), but net"),
        (np.zeros((1, 3, 9, 9), np.float32), "hint: resize the input to the spec's input size"),
    ],
    ids=["batch0", "complex", "text", "channels", "size"],
)
def test_run_refuses_bad_inputs_and_blames_the_input(tmp_path, capsys, array, message):
    spec = _small_net(tmp_path)
    np.save(tmp_path / "x.npy", array)
    code, err = run_saved(capsys, tmp_path, spec)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err and "Warning" not in err
    assert not (tmp_path / "y.npy").exists()


def test_run_accepts_other_real_dtypes_as_float32(tmp_path, capsys):
    spec = _small_net(tmp_path)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    np.save(tmp_path / "x.npy", x.astype(">f4"))  # big-endian float32
    assert run_saved(capsys, tmp_path, spec)[0] == 0
    big_endian = np.load(tmp_path / "y.npy")
    np.save(tmp_path / "x.npy", x.astype(">f4").astype(np.float64))  # the same values as float64
    assert run_saved(capsys, tmp_path, spec)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), big_endian)


def test_corrupt_weights_member_is_a_located_usage_error(tmp_path, capsys):
    import io
    import zipfile

    spec = _small_net(tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.ones((4, 3, 3, 3), np.float32))
    raw = bytearray(buffer.getvalue())
    raw[20:30] = b"((((((((((("[:10]  # an unbalanced header: numpy's parser raises TokenError/SyntaxError
    good = dict(np.load(tmp_path / "w.npz"))
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as archive:
        archive.writestr("conv.weight.npy", bytes(raw))
        for key in ("conv.bias", "fc.weight", "fc.bias"):
            member = io.BytesIO()
            np.save(member, good[key])
            archive.writestr(f"{key}.npy", member.getvalue())
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    code, err = run_saved(capsys, tmp_path, spec)
    assert code == 2, err
    assert re.search(r"w\.npz: error: tensor 'conv\.weight' cannot be read", err)


def test_weights_errors_name_the_weights_file(tmp_path, capsys):
    spec = _small_net(tmp_path)
    weights = dict(np.load(tmp_path / "w.npz"))
    del weights["fc.bias"]
    np.savez(tmp_path / "w.npz", **weights)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    code, err = run_saved(capsys, tmp_path, spec)
    assert code == 2
    assert f"{tmp_path / 'w.npz'}: error: missing tensor 'fc.bias' (shape [2])" in err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and re.fullmatch(r"archspec \S+.*\n", out)
