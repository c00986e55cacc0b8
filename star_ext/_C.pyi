"""The compiled extension: importing it registers the ``torch.ops.star`` ops; it exports nothing used from Python."""
