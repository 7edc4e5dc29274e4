"""Make tests/onnx/asymmetric_pads.onnx with onnx.helper (not run by the tests).

    python tests/onnx/make_asymmetric_pads.py [--out tests/onnx]

Neither of PyTorch's exporters writes asymmetric `pads` (PyTorch pads both sides alike; an F.pad before a
conv stays a separate Pad node). TensorFlow's SAME padding at stride 2 does (tf2onnx writes pads
[0, 0, 1, 1] on Conv and pooling), so this file is built by hand in that form: a Conv, a MaxPool and an
AveragePool, each with pads [top, left, bottom, right] where top != bottom or left != right, and one
input with onnxruntime's output beside it (asymmetric_pads_io.npz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).parent))
    out = Path(parser.parse_args().out)
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "conv.weight")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "conv.bias")
    nodes = [
        # TensorFlow's SAME at stride 2 on 8 x 8: out 4, total padding 1, all of it after (bottom, right)
        helper.make_node(
            "Conv",
            ["x", "conv.weight", "conv.bias"],
            ["c"],
            name="conv",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[0, 0, 1, 1],
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["m"], name="max_pool", kernel_shape=[2, 2], pads=[1, 0, 0, 1]),
        helper.make_node(
            "AveragePool", ["m"], ["y"], name="avg_pool", kernel_shape=[2, 2], pads=[0, 1, 1, 0], count_include_pad=0
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "asymmetric_pads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4, 4])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="onnx.helper")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = out / "asymmetric_pads.onnx"
    onnx.save(model, str(path))
    x = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.savez(out / "asymmetric_pads_io.npz", x=x, y=y)
    print(f"asymmetric_pads: {path.stat().st_size:,} bytes, output {list(y.shape)}")


if __name__ == "__main__":
    main()
