import sys

from rq_serviceq.cli import main

sys.exit(main())
