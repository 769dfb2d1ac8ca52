"""Reanalysis: ERA5 from the Copernicus CDS, decoded, interpolated at each station, derived."""
