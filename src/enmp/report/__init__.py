"""Reports: console tables, report.json and PNG plots of a run directory."""

from .plots import plot_convergence, plot_mask
from .tables import results_table, print_report

__all__ = ["plot_convergence", "plot_mask", "results_table", "print_report"]
