"""The checks. Importing any of them puts HuggingFace offline (tools/offline.py)."""

from tools.offline import go_offline

go_offline()
