from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_smartmca.operators import TriggerWorkflowOperator

with DAG("onboard_deal", schedule=None, start_date=datetime(2026, 1, 1), params={"deal_id": "deal_456"}):
    onboard = TriggerWorkflowOperator(
        task_id="onboard",
        workflow_type="wf_deal_onboarding",  # the workflow definition id
        entity_type="deal",  # deal, application or merchant
        entity_id="{{ params.deal_id }}",
        deferrable=True,  # wait in the triggerer
        timeout=timedelta(hours=2),
        retries=2,
    )

    @task
    def report(execution: dict) -> None:
        print(execution["executionId"], execution["status"])  # "completed"

    report(onboard.output)
