from airflow.sdk import Asset, AssetWatcher, dag, task

from airflow_provider_smartmca.triggers import ExecutionEventTrigger

watcher = ExecutionEventTrigger(workflow_type="wf_deal_onboarding", statuses=("completed",))
onboarded = Asset(
    "smartmca://workflows/wf_deal_onboarding/completed",
    watchers=[AssetWatcher(name="onboarded", trigger=watcher)],
)


@dag(schedule=[onboarded])
def fund_deal():
    @task
    def fund(triggering_asset_events=None):
        events = [e.extra["payload"] for e in triggering_asset_events.get(onboarded, [])]
        return sorted({p["executionId"] for p in events})  # once per execution, even if repeated

    fund()


fund_deal()
