import pytest


@pytest.mark.slow
def test_dag_runs_and_returns_xcom(run_dag):
    result = run_dag(
        """
        from airflow.sdk import DAG, task
        with DAG("{dag_id}", schedule=None) as dag:
            @task
            def five():
                return 5
            five()
        """
    )
    assert result.state == "success"
    assert result.task_states == {"five": "success"}
    assert result.xcom("five") == 5
