"""Experiment planning: plans (nnU-Net v2 ``plans.json``), planners and memory reports."""

from __future__ import annotations

from nnseg.planning._configuration import ArchitecturePlan, ConfigurationPlan, MemoryReport
from nnseg.planning._memory import MemoryMeasurement, attach_memory_reports, measure_training_step_memory
from nnseg.planning._planner import Planner
from nnseg.planning._plans import Plans
from nnseg.planning._presets import ResEncLPlanner, ResEncMPlanner, ResEncXLPlanner

__all__ = [
    "ArchitecturePlan",
    "ConfigurationPlan",
    "MemoryMeasurement",
    "MemoryReport",
    "Planner",
    "Plans",
    "ResEncLPlanner",
    "ResEncMPlanner",
    "ResEncXLPlanner",
    "attach_memory_reports",
    "measure_training_step_memory",
]
