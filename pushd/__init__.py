"""pushd: a server for the ZKTeco Attendance PUSH (ADMS / iclock) protocol."""

__version__ = "0.1.0"
__all__ = ["__version__"]
