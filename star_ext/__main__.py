"""``python -m star_ext``: print build information."""

from . import build_info, format_build_info

print(format_build_info(build_info()))
