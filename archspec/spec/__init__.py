"""Spec files: safe YAML, schema, blocks and includes -> validated op nodes."""

INPUT = "input"  # the graph input's name, reserved for it (a spec's `inputs: [input]`, a block's own input)
