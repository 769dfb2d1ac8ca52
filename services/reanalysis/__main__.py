"""``python -m services.reanalysis``: the reanalysis service, settings from the environment."""

from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.common.stations import load_network
from services.reanalysis.cds import make_fetcher
from services.reanalysis.service import run_reanalysis
from services.reanalysis.settings import ReanalysisSettings

settings = ReanalysisSettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
fetcher = make_fetcher(settings.cds.credentials(), settings.era5_timeout_s, sleep=stop.wait)
network = load_network(settings.network_file)
run_reanalysis(settings.stations(network), settings.kafka, settings.options(), stop, fetcher)
