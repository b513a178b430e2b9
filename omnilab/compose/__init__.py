"""``omnilab compose export``: the experiment stack as a docker-compose file."""

from omnilab.compose.export import DEFAULT_PATH, ENV_FILE, export, gpu_path, render, render_gpu

__all__ = ["DEFAULT_PATH", "ENV_FILE", "export", "gpu_path", "render", "render_gpu"]
