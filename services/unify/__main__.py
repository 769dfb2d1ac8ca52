"""``python -m services.unify``: the unify service, settings from the environment."""

from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.common.stations import load_network
from services.unify.service import run_unify
from services.unify.settings import UnifySettings

settings = UnifySettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
network = load_network(settings.network_file)
run_unify(network, settings.kafka, settings.options(), stop)
