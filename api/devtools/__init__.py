"""Tools for running and testing the service locally: the local servers behind `make dev`,
the test suite and the benchmarks (`devtools.devstack`).

Not part of the application: nothing in `backend_app` imports this package, and it is not
in the image (the root `.dockerignore` leaves `api/devtools/` out of the build context).
"""
