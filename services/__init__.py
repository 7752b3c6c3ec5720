"""gbsynth: machine-generated Game Boy music, as four services over Kafka."""

__version__ = "0.1.0"
