"""ctr's image listing is read into typed records."""

from __future__ import annotations

from talos_init.containerd.images import parse_images


def test_ctr_listing_is_parsed():
    """ctr's two-word sizes and comma-separated platforms are read correctly."""
    text = ("REF TYPE DIGEST SIZE PLATFORMS LABELS\n"
            "a/b:1 application/vnd.oci.image.index.v1+json sha256:ab 1.5 KiB "
            "linux/amd64,linux/arm64 -\n")
    (img,) = parse_images(text)
    assert img.size == 1536 and img.platforms == ("linux/amd64", "linux/arm64")
