"""Stage 2, prepare_data.py: what a valid record is and how samples are read (`records`), the
validate/deduplicate/measure/split pass (`prepare`), and a crude language guess (`language`)."""
