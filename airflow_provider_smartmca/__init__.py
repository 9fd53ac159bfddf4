"""Apache Airflow provider for the SmartMCA public API.

Nothing heavy is imported here: every DAG file that imports an operator pays for this module.
"""

__version__ = "1.0.0"
