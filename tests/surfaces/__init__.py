"""Every way in: the facade, the CLI, the HTTP service and its pages, Django, Flask, metrics, deploy/,
producers in other languages, the progress feed, the bench."""
