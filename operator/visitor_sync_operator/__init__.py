"""The visitor-sync Kubernetes operator: DistrictSync resources, their children and runs.

Kept apart from the importer (``visitor_sync``): the operator imports the
importer's contract (``ImportConfig`` in, ``ImportSummary`` out), never the reverse.
"""
