"""``python -m airflow_provider_smartmca.testing`` runs the emulator CLI."""

from airflow_provider_smartmca.testing.cli import main

raise SystemExit(main())
