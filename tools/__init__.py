"""Code the course's commands share (generate.py, bench.py, the checks): not a lesson."""
