"""Export torchvision reference data for benchmarks/torch_crosscheck.py. Runs under a Python that has
torch and torchvision, NOT archspec's (archspec never depends on torch, so this file must not import it):

    TORCH_PYTHON benchmarks/_torch_export.py --out DIR [--size S] [--force] [--runs N] BUILDER...

Per torchvision builder NAME (weights=None: nothing is downloaded), writes into DIR unless all three
exist already (or --force):
  NAME.npz      float32 state_dict (keys == state_dict keys, num_batches_tracked skipped)
  NAME_out.npy  float32 logits for DIR/input_S.npy, shape (1, 1000)
  NAME.json     num_params, input file, leaf-module calls in forward execution order, params per leaf module
                (and per parameter held directly by a module with children: ConvNeXt's layer_scale),
                and `training_saved`: what autograd saves for backward in a training-mode forward (below)
and once DIR/input_S.npy (seed 1, 1x3xSxS float32 ~ N(0,1); S = --size, default 224: every BUILDER of one
run takes the same input size). Every model is also timed on
every run (not stored with the export, so the timing is as fresh as archspec's), and one line
`RESULT {"model", "exported", "seconds", "threads"}` is printed per model for the caller to parse.
"""

import argparse
import gc
import json
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision import models as tvm

# GoogLeNet as archspec's googlenet_torchvision spec describes it: no auxiliary heads, no input rescaling.
BUILD_KWARGS = {"googlenet": dict(aux_logits=False, init_weights=True, transform_input=False)}
# Inception-v3 as archspec's inception_v3 spec describes it: the auxiliary head is built (it is in the released
# state_dict and in num_params; eval mode never runs it) and the input rescaling (transform_input, which the
# pretrained builder turns on) is left to preprocessing.
BUILD_KWARGS["inception_v3"] = dict(aux_logits=True, init_weights=True, transform_input=False)

BN_RECIPE = (
    "per BatchNorm module, torch.Generator seeded 1234 (shared, modules in named_modules order): "
    "running_mean~N(0,0.1), running_var~U(0.5,1.5), weight~U(0.5,1.5), bias~N(0,0.1)"
)


def input_file(size: int) -> str:
    return f"input_{size}.npy"


def get_input(out: Path, size: int) -> torch.Tensor:
    path = out / input_file(size)
    if not path.exists():
        g = torch.Generator().manual_seed(1)
        np.save(path, torch.randn(1, 3, size, size, generator=g, dtype=torch.float32).numpy())
    x = np.load(path)
    assert x.shape == (1, 3, size, size) and x.dtype == np.float32
    return torch.from_numpy(x)


def randomize_bn(model) -> int:
    # Fresh BatchNorm is the identity in eval mode (mean 0, var 1, weight 1, bias 0), which would let a
    # wrong BN (swapped mean/var, missing eps, ...) in archspec pass unnoticed; random statistics catch it.
    g = torch.Generator().manual_seed(1234)
    n = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                n += 1
    return n


def shape_of(o):
    if isinstance(o, torch.Tensor):
        return list(o.shape[1:])
    if isinstance(o, (tuple, list)):
        return [shape_of(t) for t in o]
    return None


def export(name: str, model, x: torch.Tensor, out: Path, n_bn: int, size: int) -> None:
    sd = {
        k: v.detach().numpy().astype(np.float32)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    np.savez(out / f"{name}.npz", **sd)

    # Forward hooks on leaf modules record what torchvision actually runs, in order; a module reused in
    # forward (ResNet's one `relu`) appears once per call.
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    leaf_params = {
        n: {
            "type": type(m).__name__,
            "num_params": sum(p.numel() for p in m.parameters(recurse=False)),
            "num_trainable_params": sum(p.numel() for p in m.parameters(recurse=False) if p.requires_grad),
        }
        for n, m in leaves
    }
    # Parameters a module with children holds itself (ConvNeXt's CNBlock.layer_scale), by state_dict key.
    direct_params = {
        f"{n}.{k}" if n else k: p.numel()
        for n, m in model.named_modules()
        if list(m.children())
        for k, p in m.named_parameters(recurse=False)
        if p.requires_grad
    }
    calls = []

    def hook_for(n):
        def hook(mod, inp, output):
            calls.append(
                {
                    "name": n,
                    "type": type(mod).__name__,
                    "input_shape": shape_of(inp[0]) if inp else None,
                    "output_shape": shape_of(output),
                    "num_params": leaf_params[n]["num_params"],
                }
            )

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in leaves]
    with torch.no_grad():
        y = model(x)
    for h in handles:
        h.remove()
    if not isinstance(y, torch.Tensor):  # GoogLeNetOutputs and the like
        y = y[0]
    y = y.numpy().astype(np.float32)
    np.save(out / f"{name}_out.npy", y)

    called = [c["name"] for c in calls]
    meta = {
        "model": name,
        "builder_kwargs": dict(weights=None, **BUILD_KWARGS.get(name, {})),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "seed": 0,
        "input": input_file(size),
        "bn_randomization": BN_RECIPE,
        "num_batchnorm": n_bn,
        "num_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "num_params_total": sum(p.numel() for p in model.parameters()),
        "num_state_dict_arrays": len(sd),
        "output_shape": list(y.shape),
        "output_sum": float(y.astype(np.float64).sum()),
        "leaf_calls_note": (
            "one entry per forward-hook call of a leaf module, in execution order; functional "
            "ops (torch.flatten, F.relu, torch.cat, residual adds) are not modules and do not appear"
        ),
        "leaf_calls": calls,
        "leaf_first_call_order": list(dict.fromkeys(called)),
        "leaf_modules_never_called": [n for n, _ in leaves if n not in called],
        "leaf_params": leaf_params,
        "direct_params": direct_params,
        "training_saved": export_training(model, size),
    }
    # Written last: an export interrupted earlier lacks its .json and so counts as missing next time.
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1))


TRAIN_BATCHES = (1, 8)
TRAIN_CONVENTION = (
    "model.train(), float32, parameters requires_grad, input N(0,1) (seed 2) without grad; every tensor passed "
    "to torch.autograd.graph.saved_tensors_hooks' pack hook, counted once per untyped storage (data_ptr); "
    "storages of parameters and buffers excluded; a storage is charged to the innermost module running when "
    "it is first saved ('' = the model's own forward)"
)


def training_saved(model, batch: int, size: int) -> dict:
    """Unique storages autograd saves in one training-mode forward at this batch, charged to modules."""
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    stack = [""]
    handles = []
    for n, m in model.named_modules():
        if n:
            handles.append(m.register_forward_pre_hook(lambda mod, inp, n=n: stack.append(n)))  # returns None
            handles.append(m.register_forward_hook(lambda mod, inp, out: stack.pop() and None))  # None: keep out
    first: dict[int, tuple[str, int]] = {}  # storage data_ptr -> (module charged, bytes)
    keep = []  # storages stay alive (backward holds them), so a data_ptr is never reused meanwhile

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in own and storage.nbytes() and ptr not in first:
            first[ptr] = (stack[-1], storage.nbytes())
            keep.append(storage)
        return t

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = model(x)
    finally:
        for h in handles:
            h.remove()
        model.eval()
    by_module: dict[str, int] = {}
    for name, nbytes in first.values():
        by_module[name] = by_module.get(name, 0) + nbytes
    del y
    keep.clear()
    return {"total_bytes": sum(b for _, b in first.values()), "storages": len(first), "by_module": by_module}


def memory_budget() -> int:
    """A third of the memory available now (Linux), so a large model's batch-8 forward is skipped, not killed."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 // 3
    except OSError:
        pass
    return 1 << 62


def export_training(model, size: int) -> dict:
    saved = model.state_dict()
    state = OrderedDict((k, v.clone()) for k, v in saved.items())  # a training forward updates BN statistics
    state._metadata = getattr(saved, "_metadata", None)  # module versions: MNASNet's loader refuses a dict without
    try:
        batches = {}
        for b in TRAIN_BATCHES:
            if b > 1 and "total_bytes" in batches.get("1", {}) and batches["1"]["total_bytes"] * b > memory_budget():
                batches[str(b)] = {"skipped": f"batch {b} would need about {batches['1']['total_bytes'] * b:,} B"}
                continue
            try:
                batches[str(b)] = training_saved(model, b, size)
            except (RuntimeError, ValueError) as e:  # BN over 1 x 1 maps cannot train at batch 1 (Inception-v3's aux)
                batches[str(b)] = {"error": str(e).splitlines()[0]}
    finally:
        model.load_state_dict(state)
    return {
        "convention": TRAIN_CONVENTION,
        "batches": batches,
        "param_bytes": sum(p.untyped_storage().nbytes() for p in model.parameters()),
        "buffer_bytes": sum(b.untyped_storage().nbytes() for b in model.buffers()),
        "param_tensors": sum(1 for _ in model.parameters()),
        "modules": [n for n, _ in model.named_modules()],
    }


def time_forward(model, x: torch.Tensor, runs: int) -> float:
    with torch.no_grad():
        model(x)  # warm-up: first call allocates and picks kernels
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="re-export even when the files exist")
    p.add_argument("--runs", type=int, default=5, help="timed forward passes (median reported)")
    p.add_argument("--size", type=int, default=224, help="input height and width for every BUILDER")
    p.add_argument("builders", nargs="+")
    args = p.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    x = get_input(args.out, args.size)
    for name in args.builders:
        t0 = time.time()
        torch.manual_seed(0)  # the weights torchvision's initializers draw
        model = getattr(tvm, name)(weights=None, **BUILD_KWARGS.get(name, {})).eval()
        n_bn = randomize_bn(model)
        exported = args.force or not all((args.out / f"{name}{end}").exists() for end in (".npz", "_out.npy", ".json"))
        # Exports made before training_saved was recorded are made again.
        exported = exported or "training_saved" not in json.loads((args.out / f"{name}.json").read_text())
        if exported:
            export(name, model, x, args.out, n_bn, args.size)
        result = {"model": name, "exported": exported, "seconds": time_forward(model, x, args.runs)}
        result["threads"] = torch.get_num_threads()
        print(
            f"  torch {name}: {'exported' if exported else 'export exists'}, forward "
            f"{result['seconds'] * 1e3:.1f} ms ({time.time() - t0:.1f} s)",
            flush=True,
        )
        print("RESULT " + json.dumps(result), flush=True)
        del model
        gc.collect()


if __name__ == "__main__":
    main()
