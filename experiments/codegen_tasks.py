"""An LLM writes solutions to small programming tasks; their tests score them.

    omnilab run experiments/codegen_tasks.py
    omnilab run experiments/codegen_tasks.py -p model=qwen2.5-coder:7b -p temperature=0.2
    omnilab run experiments/codegen_tasks.py -p cache_from=production   # reuse a promoted cache

Needs Ollama (an `ollama` binary on PATH, OLLAMA_BASE_URL, or the docker runtime); the
model is pulled, with a progress bar, when the server lacks it. Generated files and their
manifest land in generated-code/<run id>/; completions are cached in the run's Redis
under omnilab:completion:*; `omnilab promote RUN` copies them into production Redis for
later runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from omnilab import Experiment, Ollama, Params, Redis
from omnilab.promote import RedisKeys
from omnilab.workloads.codegen import CACHE_PATTERN, CodeGen, CodingTask
from omnilab.workloads.sandbox import Limits

MODEL = "qwen2.5-coder:1.5b"

TASKS = [
    CodingTask(
        name="fizzbuzz",
        description="Return the FizzBuzz sequence from 1 to n as strings: 'Fizz' for "
        "multiples of 3, 'Buzz' for multiples of 5, 'FizzBuzz' for both, else the number.",
        signature="def fizzbuzz(n: int) -> list[str]",
        tests="""
from solution import fizzbuzz

def test_first_fifteen():
    assert fizzbuzz(15) == ["1", "2", "Fizz", "4", "Buzz", "Fizz", "7", "8", "Fizz",
                            "Buzz", "11", "Fizz", "13", "14", "FizzBuzz"]

def test_empty():
    assert fizzbuzz(0) == []
""",
    ),
    CodingTask(
        name="palindrome",
        description="Tell whether a string reads the same backwards, ignoring case and "
        "every character that is not a letter or a digit.",
        signature="def is_palindrome(text: str) -> bool",
        tests="""
from solution import is_palindrome

def test_sentence():
    assert is_palindrome("A man, a plan, a canal: Panama")

def test_not():
    assert not is_palindrome("omnilab")

def test_empty_and_symbols():
    assert is_palindrome("")
    assert is_palindrome("!!")
""",
    ),
    CodingTask(
        name="word_count",
        description="Count the words of a text, case-insensitively; words are runs of "
        "letters, digits and apostrophes. Return a dict from word to count.",
        signature="def word_count(text: str) -> dict[str, int]",
        tests="""
from solution import word_count

def test_counts():
    assert word_count("The cat and the hat.") == {"the": 2, "cat": 1, "and": 1, "hat": 1}

def test_apostrophes():
    assert word_count("Don't stop, don't!") == {"don't": 2, "stop": 1}

def test_empty():
    assert word_count("") == {}
""",
    ),
    CodingTask(
        name="roman",
        description="Convert an integer from 1 to 3999 to Roman numerals, using subtractive "
        "notation (4 is IV, 9 is IX, 40 is XL, 90 is XC, 400 is CD, 900 is CM).",
        signature="def to_roman(n: int) -> str",
        tests="""
from solution import to_roman

def test_simple():
    assert to_roman(3) == "III"
    assert to_roman(8) == "VIII"

def test_subtractive():
    assert to_roman(4) == "IV"
    assert to_roman(1994) == "MCMXCIV"

def test_largest():
    assert to_roman(3999) == "MMMCMXCIX"
""",
    ),
    CodingTask(
        name="intervals",
        description="Merge overlapping or touching closed intervals given as (start, end) "
        "pairs in any order; return them sorted by start.",
        signature="def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]",
        tests="""
from solution import merge_intervals

def test_overlapping():
    assert merge_intervals([(8, 10), (1, 3), (2, 6)]) == [(1, 6), (8, 10)]

def test_touching():
    assert merge_intervals([(1, 4), (4, 5)]) == [(1, 5)]

def test_nested_and_empty():
    assert merge_intervals([(1, 10), (2, 3)]) == [(1, 10)]
    assert merge_intervals([]) == []
""",
    ),
]


class CodegenTasks(Experiment):
    """Generate solutions to five small tasks with an LLM and score them with their tests."""

    services = [Ollama(model=MODEL), Redis()]
    gpu = False
    # `omnilab promote RUN` (or `run --promote`) copies the completions into production
    # Redis, where later runs find them with `-p cache_from=production`.
    promotes = [RedisKeys(CACHE_PATTERN)]

    class Params(Params):
        model: str = MODEL
        temperature: float = 0.0
        seed: int = 0
        mode: Literal["chat", "generate"] = "chat"
        stream: bool = True
        #: Ask the model for the tests too, instead of using the given ones.
        generate_tests: bool = False
        #: Redis URL, or "production", read for completions this run's Redis lacks.
        cache_from: str | None = None
        sandbox: Literal["auto", "local", "local-strict", "container"] = "auto"
        timeout_s: float = 10.0
        memory_mb: int = 1024
        #: Times a failing solution goes back to the model with its failures.
        repairs: int = Field(0, ge=0)

    def run(self, ctx):
        p = ctx.params
        tasks = TASKS
        if p.generate_tests:
            tasks = [t.model_copy(update={"tests": None, "generate_tests": True}) for t in TASKS]
        with CodeGen(
            ctx,
            model=p.model,
            mode=p.mode,
            stream=p.stream,
            options={"temperature": p.temperature, "seed": p.seed},
            cache_from=p.cache_from,
            sandbox=p.sandbox,
            limits=Limits(wall_s=p.timeout_s, cpu_s=int(p.timeout_s) + 1, memory_mb=p.memory_mb),
            repairs=p.repairs,
        ) as gen:
            return gen.run(tasks).summary()
