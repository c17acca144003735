"""Reports: console tables and PNG plots of a run directory (its report.json is `engine.run_report`)."""

from .plots import plot_convergence, plot_mask, write_run_plots
from .tables import print_report, results_table

__all__ = ["plot_convergence", "plot_mask", "print_report", "results_table", "write_run_plots"]
