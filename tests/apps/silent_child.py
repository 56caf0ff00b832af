"""Stands in for the delivery process in tests: starts, reads nothing, never says it is ready."""

import time

time.sleep(60)
