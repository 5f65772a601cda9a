"""Shared neural-network blocks used by vtok models (no model imports here)."""
