"""The shell-init baseline image (benchmarks only)."""
