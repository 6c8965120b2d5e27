"""trustd: signs the API serving certificates of nodes that hold no machine CA key (workers)."""
