"""``python -m services.reconstruct``: the reconstruct service, settings from the environment."""

from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.common.stations import load_network
from services.reconstruct.service import run_reconstruct
from services.reconstruct.settings import ReconstructSettings

settings = ReconstructSettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
network = load_network(settings.network_file)
run_reconstruct(network, settings.kafka, settings.options(), stop)
