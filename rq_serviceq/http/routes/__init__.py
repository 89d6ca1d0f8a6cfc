"""The JSON API, one module per tag: ``push`` (tasks in), ``read`` (reports out), ``control`` (settings, workers).

``common`` holds what they share: the answers every route may give, the path
parameters, reading a body (checked in ``codec``, as on the fast path), and
running work on an existing service queue.  Every call reaches Redis through
the library's facade (``ServiceQ``), on the service's threads.
"""
