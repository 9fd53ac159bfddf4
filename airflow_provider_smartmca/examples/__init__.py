"""Example DAG files, installed with the package so that pip users get them too.

Nothing here is ever imported by the provider, and Airflow does not parse these files on its own:
the DAG processor reads only its DAG bundles (``[core] dags_folder`` by default). With
``[core] load_examples`` on, Airflow 3.3 also adds every provider's ``example_dags`` folder as a
bundle; this folder is named ``examples`` so that it never joins that set by accident (one of
these DAGs is ``@daily`` and would trigger workflows on whatever ``smartmca_default`` points at).

To use one, copy it into your DAGs folder::

    cp "$(python -c 'import airflow_provider_smartmca.examples as m; print(m.__path__[0])')"/example_*.py \\
        "$AIRFLOW_HOME/dags/"
"""
