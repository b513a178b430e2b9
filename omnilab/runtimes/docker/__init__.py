"""The docker runtime and everything particular to Docker: engine access (:mod:`.engine`),
labels (:mod:`.labels`), the images omnilab builds itself (:mod:`.images`) and the
leftovers ``omnilab gc`` removes (:mod:`.leftovers`).

Importing this package does not import the docker SDK; :mod:`.runtime` does.
"""
