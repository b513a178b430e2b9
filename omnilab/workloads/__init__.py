"""Workloads: what experiments do with their stacks.

- :mod:`omnilab.workloads.codegen`: an LLM (Ollama) writes code from prompt templates;
  omnilab caches the completions in the run's Redis, writes the files under
  ``generated-code/<run id>/``, and scores them with their tests in a sandbox.
- :mod:`omnilab.workloads.aer`: Qiskit Aer simulations on the GPU or the CPU (said
  which), with a memory check before statevector runs, timings and results tracked.

Both import their heavy libraries (qiskit) only when used.
"""
