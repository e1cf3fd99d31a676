"""One module per family of log formats; each turns a decoded line into event fields."""
