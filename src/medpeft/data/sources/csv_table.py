"""Placeholder: this source is being written."""
