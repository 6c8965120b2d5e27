"""Booting from a disk: the ESP's layout, the A/B boot-entry state machine, its I/O."""
