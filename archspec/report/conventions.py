"""The counting conventions, written once. The README's "Counting conventions" section, every Markdown
report and `archspec analyze --help` print these strings (tests/test_readme.py checks the README's copy),
so the explanation cannot drift from what the code does."""

from __future__ import annotations

# (name, Markdown text). Each text is pre-wrapped at about 105 columns so it reads well in the README.
CONVENTIONS: tuple[tuple[str, str], ...] = (
    (
        "MACs",
        """**MACs** = multiply-accumulates of conv and linear weights, one fused multiply-add = 1, bias
  excluded; BatchNorm, ReLU, pooling, add and concat are not counted. This is what torchvision's
  "GFLOPS" metadata and fvcore count. Papers since 2017 mostly print **FLOPs = 2 x MACs**; the table
  footer prints both.""",
    ),
    (
        "params",
        """**Params** = trainable tensors: weights, biases, BatchNorm gamma and beta (torchvision's
  `num_params`). BatchNorm running statistics are *buffers*, printed separately. CS231n counts conv
  weights **without** biases (`(3*3*3)*64 = 1,728`); `archspec report` and `analyze --cs231n` print
  that figure too.""",
    ),
    (
        "activations",
        """**Activations** = output elements per image of every node (ReLU outputs included). The CS231n
  VGG16 table says "TOTAL memory: 24M"; its own rows sum to 15,237,608 values (about 61 MB in float32)
  -- archspec prints the true sums. Per image: params, MACs and activation counts; per batch: the
  activation bytes and the peak (the batch is printed beside them).""",
    ),
    (
        "peak",
        """**Peak live activations** = what inference needs at once when each buffer is freed after its last
  reader (outputs stay alive; flatten, dropout, identity, channel_chunk and drop_path are views of their
  input, and ReLU, ReLU6, SiLU and Hardswish run in place when their input dies there, as PyTorch's
  `inplace=True` does). torchinfo's
  "forward/backward pass size" is 2 x the outputs of layers with parameters only, which is why users
  find it wrong on DenseNet and Inception concats.""",
    ),
    (
        "receptive field",
        """**Receptive field** `r /s pP` = size r, effective stride s and effective padding P per axis
  (Araujo et al., Distill 2019): unit u sees input pixels [s*u - P, s*u - P + r - 1]; "global" means
  the unit sees the whole input (after global pooling, flatten or a linear layer).""",
    ),
    ("K", """Paper tables use K = 1024 (GoogLeNet's "159K" for inception 3a is 163,328 weights)."""),
)

CS231N_FOOTNOTE = """\
CS231n view: volumes are H x W x C; "weights" are conv and linear weights without biases (the lecture's
count); rows are the input and every layer that has weights or changes the number of values (ReLU,
dropout, flatten and same-size pooling are folded into the row before, as the lecture does); "memory" is
the values of each row, input included, summed per image. archspec's default table instead counts
params with biases and BatchNorm, C x H x W order, and activations of every node without the input."""


def markdown() -> str:
    """The conventions as a Markdown bullet list (README and reports)."""
    return "\n".join(f"- {text}" for _, text in CONVENTIONS) + "\n"


def plain() -> str:
    """The conventions for `--help` (argparse keeps the line breaks with a raw formatter)."""
    text = markdown().replace("**", "").replace("`", "")
    return "counting conventions:\n" + "\n".join("  " + line for line in text.splitlines()) + "\n"
