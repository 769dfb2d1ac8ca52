"""``python -m services.alerts``: run the alerts service with settings from the environment."""

from services.alerts.service import run_alerts
from services.alerts.settings import AlertsSettings
from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.sink.service import make_writer

settings = AlertsSettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
writer = make_writer(settings.influx_target(), create_database=settings.influx_create_database)
run_alerts(settings.kafka, writer, settings.alerts_options(), stop)
writer.close()
