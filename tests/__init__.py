"""omnilab's tests: one folder per part of the package, shared helpers in ``tests.support``.

The folders are packages so that test files of the same name in two folders (the local
and the docker runtime's ``test_runtime.py``) stay two modules.
"""

import pytest

# Before any helper is imported: their asserts then report values as the tests' do.
pytest.register_assert_rewrite("tests.support")
