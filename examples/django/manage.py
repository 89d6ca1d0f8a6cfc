#!/usr/bin/env python
"""The example project's manage.py: `python manage.py serviceq_worker deliveries`, `python manage.py test notes`."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
