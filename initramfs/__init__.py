"""The image: recipe and builder of talos-init's initramfs (``python -m initramfs.build``)."""
