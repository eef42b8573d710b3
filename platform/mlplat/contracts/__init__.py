"""Versioned contracts the planes publish to each other. Import from ``mlplat.contracts.v1``."""
