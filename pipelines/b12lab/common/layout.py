"""The names of what a publication folder holds (OUTPUT/publications/<run_id>/), shared by the code that
writes it and the code that reads it."""

WAREHOUSE_NAME = "warehouse.duckdb"
REPORT_NAME = "report"
SUMMARY_NAME = "run_summary.json"
CATALOGUE_NAME = "catalogue"  # dbt's static catalogue of the models
