"""``omnilab aer``: what Qiskit Aer would run on here, and how large a simulation fits."""

from __future__ import annotations

import typer

from omnilab.cli import render

app = typer.Typer(help="Qiskit Aer on this machine: device and memory.", no_args_is_help=True)


@app.command("info")
def info(
    gpu: bool = typer.Option(
        None,
        "--gpu/--no-gpu",
        help="Ask as a run with --gpu (GPU required) or --no-gpu would. Default: auto, "
        "with QISKIT_AER_USE_GPU applied.",
        show_default=False,
    ),
    fraction: float = typer.Option(
        0.9, "--memory-fraction", min=0.01, max=1.0, help="Share of free memory a run may use."
    ),
    json_output: bool = typer.Option(False, "--json", help="JSON on stdout."),
) -> None:
    """Which device Aer would use and why, and the largest dense simulations that fit.

    Examples:

      omnilab aer info

      omnilab aer info --gpu      # exit status 2, with the reason, when no GPU is usable

      QISKIT_AER_USE_GPU=0 omnilab aer info --json
    """
    from omnilab.workloads.aer_resources import (
        choose_device,
        free_gpu_memory,
        free_memory,
        max_qubits,
        size_text,
    )
    from omnilab.workloads.settings import get_workload_settings

    device = choose_device("auto" if gpu is None else gpu, get_workload_settings().aer_use_gpu)
    free = free_gpu_memory() if device.name == "GPU" else free_memory()
    budget = int(free * fraction) if free is not None else None
    fits = {
        method: {p: max_qubits(budget, method, p) for p in ("double", "single")}
        for method in ("statevector", "density_matrix")
        if budget is not None
    }
    if json_output:
        render.print_json(
            {**device.to_dict(), "free_bytes": free, "budget_bytes": budget, "max_qubits": fits}
        )
        return
    render.out.print(f"aer: {device.describe()}", markup=False)
    if free is None or budget is None:  # one is None when the other is
        render.out.print("memory: unknown (nvidia-smi did not answer)")
        return
    where = "GPU memory" if device.name == "GPU" else "memory"
    render.out.print(
        f"free {where}: {size_text(free)} ({fraction:.0%} usable by a run: {size_text(budget)})"
    )
    for method, by_precision in fits.items():
        render.out.print(
            f"  {method:15s} up to {by_precision['double']} qubits (double), "
            f"{by_precision['single']} (single)"
        )
    render.out.print("  stabilizer and matrix_product_state are not bounded this way")
