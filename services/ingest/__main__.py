"""``python -m services.ingest``: run the ingest service with settings from the environment."""

from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.common.stations import load_network
from services.ingest.service import run_ingest
from services.ingest.settings import IngestSettings

settings = IngestSettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
network = load_network(settings.network_file)
run_ingest(settings.stations(network), settings.kafka, settings.options(), stop)
