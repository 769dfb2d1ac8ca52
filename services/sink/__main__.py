"""``python -m services.sink``: run the sink service with settings from the environment."""

from services.common.logging import configure_logging
from services.common.runtime import StopFlag, install_signal_handlers
from services.sink.files import DailyFiles
from services.sink.service import run_sink
from services.sink.settings import SinkSettings

settings = SinkSettings()
configure_logging(settings.log_level, settings.log_format, settings.secret_values())
stop = StopFlag()
install_signal_handlers(stop)
writer = settings.make_writer()
files = DailyFiles(settings.sink_out_dir, parquet=settings.sink_parquet)
run_sink(settings.kafka, writer, files, settings.options(), stop)
if writer is not None:
    writer.close()
