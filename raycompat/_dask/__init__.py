"""The engine layer: everything that imports ``dask`` or ``distributed`` lives here.

Public modules (``raycompat``, ``raycompat.exceptions``, ``raycompat.remote_function``...)
hold Ray's names and signatures and reach Dask only through this package.
"""
