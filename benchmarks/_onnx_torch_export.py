"""Export torchvision models to ONNX with PyTorch's own exporter, for benchmarks/onnx_crosscheck.py.
Runs under a Python with torch and torchvision, NOT archspec's (this file must not import archspec):

    TORCH_PYTHON benchmarks/_onnx_torch_export.py --out DIR [--dynamo] [--force] BUILDER[:SIZE]...

Per torchvision builder NAME (weights=None: nothing is downloaded), writes into DIR:
  NAME_eval.onnx       model.eval(), the exporter's defaults: BatchNorm folded into the convolutions
  NAME_preserved.onnx  model.train(), training=TrainingMode.PRESERVE: BatchNorm kept as its own nodes
Input 1 x 3 x SIZE x SIZE (default 224) with a dynamic batch axis; opset 18. Files already there are kept unless --force.
"""

import argparse
import warnings
from pathlib import Path

import torch
from torchvision import models as tvm

BUILD_KWARGS = {
    "googlenet": dict(aux_logits=False, init_weights=True, transform_input=False),
    "inception_v3": dict(aux_logits=False, init_weights=True, transform_input=False),
}


def export(model, path: Path, size: int, dynamo: bool, preserve: bool) -> None:
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    kwargs = {"input_names": ["input"], "output_names": ["logits"], "opset_version": 18, "dynamo": dynamo}
    if preserve:
        model.train()
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
        kwargs["do_constant_folding"] = False
    else:
        model.eval()
    if dynamo:
        kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch")}}
    else:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--dynamo", action="store_true", help="torch.export-based exporter (default: TorchScript)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("builders", nargs="+")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for entry in args.builders:
        name, _, size = entry.partition(":")
        for kind, preserve in (("eval", False), ("preserved", True)):
            path = out / f"{name}_{kind}.onnx"
            if path.exists() and not args.force:
                continue
            torch.manual_seed(0)
            model = getattr(tvm, name)(weights=None, **BUILD_KWARGS.get(name, {}))
            export(model, path, int(size or 224), args.dynamo, preserve)
            print(f"exported {path} ({path.stat().st_size:,} bytes)", flush=True)


if __name__ == "__main__":
    main()
