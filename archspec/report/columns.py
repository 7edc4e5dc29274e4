"""Column keys of the per-layer table (no heavy imports: the argument parser reads them)."""

# Per-layer table columns: key -> (header, alignment). `--columns` picks from these keys.
COLUMNS = {
    "layer": ("layer", "left"),
    "op": ("op", "left"),
    "kernel": ("kernel", "left"),
    "inputs": ("inputs", "left"),
    "output": ("output (C x H x W)", "right"),
    "params": ("params", "right"),
    "macs": ("MACs", "right"),
    "activations": ("activations", "right"),
    "rf": ("receptive field", "left"),
    "train": ("train-only", "left"),
    "saved": ("saved", "right"),  # analyze --train: bytes autograd saves for this layer's backward
}
DEFAULT_COLUMNS = ("layer", "op", "kernel", "output", "params", "macs", "activations", "rf")
