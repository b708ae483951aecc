"""The benchmarks: ``python -m benchmarks`` (``make bench``) prints one table.

Everything is measured side by side in one run, interleaved, and reported as
medians, because the machine is small and shared. Nothing here is a test: the
test suite asserts correctness only (``tests/system/test_benchmarks.py`` just runs
this code on tiny counts).
"""
