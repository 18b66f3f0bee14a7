"""The ``raycompat`` command line (Ray's ``ray`` command: ``ray/scripts/scripts.py``)."""
