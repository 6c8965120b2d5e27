"""osctl: the operator's CLI for talos-init nodes."""
