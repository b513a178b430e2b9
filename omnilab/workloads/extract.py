"""The code in a model's answer: models wrap it in Markdown fences, with prose around."""

from __future__ import annotations

import re

# An opening fence may follow prose on its line ("Sure! ```python"); a closing one
# starts its own line, so a ``` inside a string of the code does not end the block.
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
_PYTHON_TAGS = {"python", "py", "python3"}


def extract_code(answer: str) -> str:
    """The first fenced block tagged Python, else the first fenced block, else all of it.

    An unterminated fence (the answer was cut off at the token limit) keeps what follows
    it: the parse check then reports the truncation instead of scoring prose.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(answer)]
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body.rstrip() + "\n"
    if blocks:
        return blocks[0][1].rstrip() + "\n"
    opening = re.search(r"```[^\n]*\n", answer)
    if opening:
        return answer[opening.end() :].rstrip() + "\n"
    return answer.strip() + "\n"
