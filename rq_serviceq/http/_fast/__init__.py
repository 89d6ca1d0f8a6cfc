"""The HTTP service's speed tricks, kept apart from the plain path they stand in for.

``fastpath.serve`` answers the single-task push in plain ASGI, ahead of
FastAPI's routing (``app.ServiceApp`` asks it first); ``packer.OneBufferPacker`` packs the service's Redis
commands in one buffer.  Each does what the plain path does, only faster, and
``tests/surfaces/test_http_fastpath.py`` holds it to that: the same requests answered
the same and stored the same through the FastAPI route, the same bytes on the
wire as redis-py's own packer.  Remove either and the service still works.
"""
