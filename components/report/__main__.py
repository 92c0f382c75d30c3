import sys

from components.report.cli import main

sys.exit(main())
