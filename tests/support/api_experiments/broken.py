"""Does not import: the server lists it as a problem and serves the others."""

import not_a_module_anywhere  # noqa: F401
