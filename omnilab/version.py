"""omnilab's version, in a module of its own: labels, image tags, the API's health answer and
``--version`` need it, and taking it from ``omnilab`` itself would make each of them depend
on the package's root, which imports every layer (the SDK's public names) and so sits above
them all."""

from importlib import metadata

try:
    __version__ = metadata.version("omnilab")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"
