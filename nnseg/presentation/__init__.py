"""Pictures and pages on top of run folders, evaluation summaries and images.

This layer imports the library; nothing in the library imports it. :func:`write_overlays` draws one PNG
per case (each label's outline on the slice with the most foreground), :func:`overlay_case` and
:func:`overlay_arrays` draw one, and :func:`write_report` turns a run or work folder into one
self-contained HTML page.
"""

from nnseg.presentation._overlay import Overlay, overlay_arrays, overlay_case, write_overlays
from nnseg.presentation._report import write_report

__all__ = ["Overlay", "overlay_arrays", "overlay_case", "write_overlays", "write_report"]
