"""Text from the node reaches a terminal with its control characters shown, not obeyed."""

from talos_init.osctl.output import for_terminal


def test_controls_are_shown_as_hex_on_a_terminal_and_kept_elsewhere():
    """ESC, BEL, CR, DEL and the one-byte CSI are escaped for a terminal; tab and text stay."""
    text = "a\tb\x1b[31mred\x07\rX\x7f\x9bZ é"
    assert for_terminal(text, True) == "a\tb\\x1b[31mred\\x07\\x0dX\\x7f\\x9bZ é"
    assert for_terminal(text, False) == text
