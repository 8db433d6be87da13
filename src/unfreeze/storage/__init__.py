"""Files this tool writes: the cache directory, atomic writes, and the guard on output paths.

- ``cache``: ``$UNFREEZE_CACHE``, content hashes, writes renamed into place;
- ``outputs``: ``check_output``, which refuses a path that would replace something of the user's.
"""
