"""Suite-wide test settings."""

from __future__ import annotations

from hypothesis import settings

# CI machines are small and shared: wall-clock deadlines would make property tests flaky, not stricter.
settings.register_profile("nnseg", deadline=None)
settings.load_profile("nnseg")
