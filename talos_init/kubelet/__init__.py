"""The kubelet: its files and flags prepared from the machine config, then exec'd."""
