"""The sink: unified minutes and status into InfluxDB, daily CSV/Parquet files, HTTP API."""
