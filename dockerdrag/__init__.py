"""dockerdrag: pull container images from Docker/OCI registries without a Docker daemon."""

__version__ = "0.1.0"
