"""The ``strop`` command: a thin shell over the library."""
