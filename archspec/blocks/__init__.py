"""Block libraries shipped with archspec (package data): a spec includes them by name,
`include: [archspec:resnet]`. See archspec/spec/load.py (shipped_libraries)."""
