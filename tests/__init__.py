"""Test suite for visitor-sync."""
