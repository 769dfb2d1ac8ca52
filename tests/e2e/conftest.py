"""The integration fixtures (server addresses from ``mingo infra env``) for end-to-end tests."""

from tests.integration.conftest import influx_url, kafka_admin, kafka_bootstrap

__all__ = ["influx_url", "kafka_admin", "kafka_bootstrap"]
