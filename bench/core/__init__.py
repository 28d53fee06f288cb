"""The core benchmark: one training step of gperc and of peer Perceiver implementations.

Modules: `shapes` (the benchmark shapes), `flops` (the analytic FLOP count), `worker` (one
measurement in one process), `impl_*` (one model builder per implementation), `matmul_peak`
(the machine's matmul peak), `runner` (subprocess orchestration and limits), `report` (the
Markdown table and goal checks). `bench/run.py` is the entry point.
"""
