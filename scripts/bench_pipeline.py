#!/usr/bin/env python3
"""Run the pipeline benchmark; see itinerary/bench.py for what it measures."""

import sys

from itinerary.bench import main

if __name__ == "__main__":
    sys.exit(main())
